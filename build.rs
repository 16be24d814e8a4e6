//! Release binaries keep their line tables (file:line in backtraces, `debug =
//! "line-tables-only"` in Cargo.toml) but compressed: uncompressed, the debug sections were
//! half of a 57 MB binary. The standard library's backtrace reads zlib-compressed sections.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let release = std::env::var("PROFILE").as_deref() == Ok("release");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux");
    if release && linux {
        println!("cargo:rustc-link-arg-bins=-Wl,--compress-debug-sections=zlib");
    }
}
