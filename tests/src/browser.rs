//! A real browser for the tests: Debian's Chromium, headless, loading a page as a user would
//! (its DOM after load, or a screenshot kept as a test artifact under
//! `target/test-artifacts/`). Each call uses a profile directory of its own, removed after.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Whether Chromium is installed (test.sh installs it).
pub fn available() -> bool {
    Command::new("sh").args(["-c", "command -v chromium"]).output().is_ok_and(|output| output.status.success())
}

fn chromium(args: &[String]) -> std::process::Output {
    let profile = tempfile::tempdir().expect("a profile directory");
    let mut command = Command::new("timeout");
    command
        .arg(Duration::from_secs(90).as_secs().to_string())
        .args(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args);
    command.output().expect("chromium runs")
}

/// The page's DOM after it loaded.
pub fn dom(url: &str) -> String {
    let output = chromium(&["--virtual-time-budget=5000".into(), "--dump-dom".into(), url.to_string()]);
    assert!(output.status.success(), "chromium on {url}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Where the tests' artifacts go: `target/test-artifacts/<group>/`.
pub fn artifacts(group: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("test-artifacts").join(group);
    std::fs::create_dir_all(&dir).expect("artifact directory");
    dir
}

/// A screenshot of the page, `width`×`height`, written to `path`.
pub fn screenshot(url: &str, path: &Path, (width, height): (u32, u32)) {
    let output = chromium(&[
        format!("--window-size={width},{height}"),
        format!("--screenshot={}", path.display()),
        url.to_string(),
    ]);
    assert!(
        output.status.success() && path.metadata().is_ok_and(|meta| meta.len() > 0),
        "chromium screenshot of {url}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
