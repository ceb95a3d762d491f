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

/// The real 0.8.0 client, relative to the workspace root: the real-agent
/// backend's default client.
pub const REAL_CLIENT: &str = "../shared/smolvm-0.8.0/smolvm";

/// The smolvm client the scenarios run `machine exec` with — the wrapped
/// session and the wrapper's side channels alike: `$E2E_SMOLVM` when set
/// (e.g. `../shared/smolvm-0.8.0/smolvm`, the real 0.8.0 client, or a user's
/// own smolvm to check before an upgrade), else the fake's own client — or,
/// on the real-agent backend, [`REAL_CLIENT`]. `machine create/start/stop`
/// go through the fake (or `scripts/real-machine`).
pub fn smolvm_client() -> PathBuf {
    let chosen = std::env::var_os(CLIENT_VAR)
        .filter(|v| !v.is_empty())
        .or_else(|| crate::backend::real_agent().then(|| REAL_CLIENT.into()));
    match chosen {
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

/// Where guest-tui lives in the real agent's image (see [`guest_tui_layer`]).
pub const GUEST_TUI_IN_IMAGE: &str = "/usr/local/bin/guest-tui";

/// A folder holding a static guest-tui at `usr/local/bin/guest-tui`: the
/// layer `scripts/real-machine up --layer` adds to the real agent's image.
///
/// Why static: the image is the Alpine guest root (musl, no glibc), not the
/// host's. Built once per test process with `+crt-static` for
/// `x86_64-unknown-linux-gnu` into `target/static` (its own target folder,
/// so the normal build is not invalidated by the flag). The first build
/// compiles fake-smolvm's dependencies again (minutes); later ones are
/// no-ops.
///
/// `E2E_GUEST_TUI_LAYER=DIR` names a layer made beforehand instead (e.g. by
/// an earlier run: `target/static/guest-tui-layer`), skipping the build.
pub fn guest_tui_layer() -> PathBuf {
    static LAYER: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    LAYER
        .get_or_init(
            || match std::env::var_os(LAYER_VAR).filter(|v| !v.is_empty()) {
                Some(dir) => {
                    let dir = PathBuf::from(dir);
                    assert!(
                        dir.join("usr/local/bin/guest-tui").is_file(),
                        "e2e: {LAYER_VAR}={} has no usr/local/bin/guest-tui",
                        dir.display()
                    );
                    dir
                }
                None => build_guest_tui_layer(),
            },
        )
        .clone()
}

/// The variable naming a ready-made guest-tui layer (see [`guest_tui_layer`]).
pub const LAYER_VAR: &str = "E2E_GUEST_TUI_LAYER";

fn build_guest_tui_layer() -> PathBuf {
    let target = profile_dir()
        .parent()
        .expect("profile dir has a parent")
        .join("static");
    let triple = "x86_64-unknown-linux-gnu";
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = std::process::Command::new(&cargo)
        .current_dir(testkit::bins::workspace_root())
        .args([
            "build",
            "--quiet",
            "-p",
            "fake-smolvm",
            "--bin",
            "guest-tui",
        ])
        .args(["--target", triple, "--target-dir"])
        .arg(&target)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .output()
        .unwrap_or_else(|e| panic!("e2e: cannot run {cargo:?} to build a static guest-tui: {e}"));
    if !output.status.success() {
        panic!(
            "e2e: building a static guest-tui failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let built = target.join(triple).join("debug/guest-tui");
    let layer = target.join("guest-tui-layer");
    let bin_dir = layer.join("usr/local/bin");
    std::fs::create_dir_all(&bin_dir).expect("e2e: layer folder");
    // Copy then rename: a reader never sees half a binary.
    let partial = bin_dir.join(format!(".guest-tui.{}", std::process::id()));
    std::fs::copy(&built, &partial)
        .unwrap_or_else(|e| panic!("e2e: copying {}: {e}", built.display()));
    std::fs::rename(&partial, bin_dir.join("guest-tui")).expect("e2e: layer's guest-tui");
    layer
}
