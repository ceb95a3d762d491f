//! A workspace binary, built fresh once per test process.
//!
//! Tests run from `target/<profile>/deps/`, so the binaries live in
//! `target/<profile>/`. A test of one package (`cargo test -p e2e`) does not
//! build other packages' binaries, and a binary left from an older build
//! would silently test old code; so the first use of each binary runs
//! `cargo build -p <package> --bin <bin>` (a no-op when it is up to date;
//! cargo does not hold its build lock while tests run). A test of the
//! binary's own package needs none of this: cargo gives it
//! `CARGO_BIN_EXE_<bin>`, built for that run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// The workspace's root folder (this crate lives in `crates/testkit`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Path of binary `bin` of workspace package `package`, built (or found up
/// to date) by cargo at its first use in this process; panics with cargo's
/// output if the build fails.
pub fn fresh(package: &str, bin: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<(String, String), PathBuf>>> = OnceLock::new();
    let key = (package.to_string(), bin.to_string());
    // Held across the build: two threads asking for one binary build it once.
    let mut built = BUILT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    built
        .entry(key)
        .or_insert_with(|| build(package, bin))
        .clone()
}

/// `target/<profile>/`, from the running test executable's location.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("testkit: current_exe");
    let dir = exe.parent().expect("testkit: test executable has a folder");
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

/// Builds `bin` of `package` into this test's profile folder.
fn build(package: &str, bin: &str) -> PathBuf {
    let profile_dir = profile_dir();
    let target_dir = profile_dir.parent().expect("profile dir has a parent");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(&cargo)
        .current_dir(workspace_root())
        .args(["build", "--quiet", "-p", package, "--bin", bin])
        .args(profile_args(&profile_dir))
        .arg("--target-dir")
        .arg(target_dir)
        .output()
        .unwrap_or_else(|e| panic!("testkit: cannot run {cargo:?} to build {bin}: {e}"));
    if !output.status.success() {
        panic!(
            "testkit: `cargo build -p {package} --bin {bin}` failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let path = profile_dir.join(bin);
    assert!(
        path.is_file(),
        "testkit: built {bin} but {} is missing",
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

    #[test]
    fn the_profile_dir_holds_this_test_executable() {
        let exe = std::env::current_exe().unwrap();
        assert!(exe.starts_with(profile_dir()), "{}", exe.display());
        assert!(workspace_root().join("Cargo.toml").is_file());
    }

    #[test]
    fn a_binary_that_cannot_be_built_fails_with_cargos_words() {
        let err = std::panic::catch_unwind(|| fresh("testkit", "no-such-bin")).unwrap_err();
        let message = err.downcast_ref::<String>().unwrap();
        assert!(
            message.starts_with("testkit: `cargo build -p testkit --bin no-such-bin` failed"),
            "{message}"
        );
        assert!(message.contains("no-such-bin"), "{message}");
    }
}
