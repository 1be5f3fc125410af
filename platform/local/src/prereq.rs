//! What the local platform needs from the host, checked before anything is touched: root
//! (network namespaces, iptables, mounts) and the `ip` and `iptables` programs.

/// Programs the platform runs.
pub const REQUIRED_PROGRAMS: [(&str, &str); 3] =
    [("ip", "iproute2"), ("iptables", "iptables"), ("iptables-restore", "iptables")];

/// Every missing prerequisite, as a sentence; empty when the host is ready.
pub fn missing() -> Vec<String> {
    let mut problems = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        problems.push(
            "the local platform needs root: pods are network namespaces with iptables rules and mounts".to_string(),
        );
    }
    for (program, package) in REQUIRED_PROGRAMS {
        if find_program(program).is_none() {
            problems.push(format!("`{program}` is not installed (Debian package {package})"));
        }
    }
    problems
}

/// Fails with every missing prerequisite named.
pub fn check() -> anyhow::Result<()> {
    let problems = missing();
    if problems.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("cannot run the local platform:\n  - {}", problems.join("\n  - "))
    }
}

/// The path of a program on `PATH` (or the usual sbin directories).
pub fn find_program(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(std::path::PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}
