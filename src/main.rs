//! `studio-intake`: see `studio_intake::cli` for the commands.
fn main() -> std::process::ExitCode {
    // Everything the daemon creates (the SQLite database and its journal, outbox `.eml`
    // files, the var/ folders, converter temp files) is for its own user only, whatever
    // umask it was started with (a shell's 022 gave 0644 databases): files 0600, folders 0700.
    #[cfg(unix)]
    // SAFETY: umask only sets this process's file-mode mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
    studio_intake::cli::main()
}
