//! The workspace's binaries the scenarios run, built fresh once per test
//! process (see [`testkit::bins`]: a binary left from an older build would
//! silently test old code), and the smolvm client they go through.

use std::path::{Path, PathBuf};

pub use testkit::bins::profile_dir;

/// Path of the `pty-resize` binary (package `pty-resize`).
pub fn pty_resize() -> PathBuf {
    testkit::bins::fresh("pty-resize", "pty-resize")
}

/// Path of the `fake-smolvm` binary (package `fake-smolvm`).
pub fn fake_smolvm() -> PathBuf {
    testkit::bins::fresh("fake-smolvm", "fake-smolvm")
}

/// Path of the `guest-tui` binary (package `fake-smolvm`).
pub fn guest_tui() -> PathBuf {
    testkit::bins::fresh("fake-smolvm", "guest-tui")
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
