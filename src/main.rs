//! `studio-intake`: see `studio_intake::cli` for the commands.
fn main() -> std::process::ExitCode {
    studio_intake::memory::tune_allocator();
    studio_intake::cli::main()
}
