//! Link options for the proxy's binaries. Relative relocations are packed (`DT_RELR`): the
//! loader then reads a few kilobytes at start-up instead of a 450 KB relocation table, which
//! otherwise stays in every proxy's resident memory.

fn main() {
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let target_env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if target_os == "linux" && target_env == "gnu" {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
