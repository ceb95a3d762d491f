# Shared helpers for the scripts in this folder. Sourced, not run.
# Why a library: every script builds the same binaries and needs the same
# "a fake machine that is always cleaned up" dance.

repo_root() { cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd; }

# build_bins PROFILE: builds pty-resize, fake-smolvm and guest-tui; prints the bin dir.
build_bins() {
    local profile=${1:-debug} root
    root=$(repo_root)
    local flag=()
    [[ $profile == release ]] && flag=(--release)
    cargo build --quiet --locked "${flag[@]}" -p pty-resize -p fake-smolvm --bins \
        --manifest-path "$root/Cargo.toml" >&2 || return 1
    local target_dir=${CARGO_TARGET_DIR:-$root/target}
    echo "$target_dir/$profile"
}

# fake_machine_up BIN_DIR NAME: creates and starts a fake machine in a fresh
# FAKE_SMOLVM_HOME (exported), and registers its teardown on EXIT.
fake_machine_up() {
    local bin=$1 name=$2
    FAKE_SMOLVM_HOME=$(mktemp -d "${TMPDIR:-/tmp}/fake-smolvm-home.XXXXXX")
    export FAKE_SMOLVM_HOME
    _fake_bin=$bin _fake_name=$name
    trap fake_machine_down EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    "$bin/fake-smolvm" machine create "$name" >/dev/null
    "$bin/fake-smolvm" machine start --name "$name" >/dev/null 2>&1 ||
        { "$bin/fake-smolvm" machine start --name "$name"; return 1; }
}

fake_machine_down() {
    [[ -n ${FAKE_SMOLVM_HOME:-} ]] || return 0
    "$_fake_bin/fake-smolvm" machine stop --name "$_fake_name" >/dev/null 2>&1 || true
    rm -rf "$FAKE_SMOLVM_HOME"
}
