//! The workspace's binaries, built fresh once per test process.
//!
//! Tests run from `target/<profile>/deps/`, so the binaries live in
//! `target/<profile>/`. A test of this crate alone (`cargo test -p e2e`) does
//! not build other packages' binaries, and a binary left from an older build
//! would silently test old code; so the first use of each binary runs
//! `cargo build -p <pkg> --bin <name>` (a no-op when it is up to date; cargo
//! does not hold its build lock while tests run).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Path of the `pty-resize` binary (package `pty-resize`).
pub fn pty_resize() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build("pty-resize", "pty-resize"))
        .clone()
}

/// Path of the `fake-smolvm` binary (package `fake-smolvm`).
pub fn fake_smolvm() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build("fake-smolvm", "fake-smolvm"))
        .clone()
}

/// Path of the `guest-tui` binary (package `fake-smolvm`).
pub fn guest_tui() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build("fake-smolvm", "guest-tui"))
        .clone()
}

/// The variable that picks the smolvm client every `exec` goes through.
pub const CLIENT_VAR: &str = "E2E_SMOLVM";

/// The smolvm client the scenarios run `machine exec` with — the wrapped
/// session and the wrapper's side channels alike: `$E2E_SMOLVM` when set
/// (e.g. `../shared/smolvm-0.8.0/smolvm`, the real 0.8.0 client, or a user's
/// own smolvm to check before an upgrade), else the fake's own client.
/// `machine create/start/stop` always go through the fake.
pub fn smolvm_client() -> PathBuf {
    match std::env::var_os(CLIENT_VAR).filter(|v| !v.is_empty()) {
        Some(path) => {
            let path = PathBuf::from(path);
            let path = if path.is_relative() {
                // Relative to the workspace root, where scripts/test runs.
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../..")
                    .join(path)
            } else {
                path
            };
            assert!(
                path.is_file(),
                "e2e: {CLIENT_VAR}={} is not a file",
                path.display()
            );
            path
        }
        None => fake_smolvm(),
    }
}

/// Whether the scenarios run against a client other than the fake's own.
pub fn real_client() -> bool {
    smolvm_client() != fake_smolvm()
}

/// Path of `scripts/naive-bridge`: the naive bash bridge the scenarios
/// reproduce the seed bugs with (a script, nothing to build).
pub fn naive_bridge() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/naive-bridge")
}

/// `target/<profile>/`, from the running test executable's location.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("e2e: current_exe");
    let dir = exe.parent().expect("e2e: test executable has a folder");
    // Test executables live in target/<profile>/deps; examples and
    // doctests elsewhere, where the folder itself is taken.
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().expect("deps has a parent").to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// The cargo flags that select the profile whose folder is `profile_dir`.
fn profile_args(profile_dir: &Path) -> Vec<String> {
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => vec![],
        Some("release") => vec!["--release".into()],
        Some(other) => vec!["--profile".into(), other.into()],
    }
}

/// Builds `bin` of `package` into this test's profile folder; panics with
/// cargo's output if the build fails.
fn build(package: &str, bin: &str) -> PathBuf {
    let profile_dir = profile_dir();
    let target_dir = profile_dir.parent().expect("profile dir has a parent");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let output = Command::new(&cargo)
        .current_dir(&workspace)
        .args(["build", "--quiet", "-p", package, "--bin", bin])
        .args(profile_args(&profile_dir))
        .arg("--target-dir")
        .arg(target_dir)
        .output()
        .unwrap_or_else(|e| panic!("e2e: cannot run {cargo:?} to build {bin}: {e}"));
    if !output.status.success() {
        panic!(
            "e2e: `cargo build -p {package} --bin {bin}` failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let path = profile_dir.join(bin);
    assert!(
        path.is_file(),
        "e2e: built {bin} but {} is missing",
        path.display()
    );
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_flags() {
        assert!(profile_args(Path::new("/t/debug")).is_empty());
        assert_eq!(profile_args(Path::new("/t/release")), ["--release"]);
        assert_eq!(profile_args(Path::new("/t/bench")), ["--profile", "bench"]);
    }
}
