# Shared helpers for the scripts in this folder. Sourced, not run.
# Why a library: every script builds the same binaries and needs the same
# fake machine in private smolvm state folders. Nothing here installs a
# trap: each script owns its own cleanup (trap fake_machine_down EXIT).

repo_root() { cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd; }

# usage SCRIPT: prints the script's leading comment block (its help).
usage() {
    sed -n '2,/^[^#]/{/^#/!q;s/^# \{0,1\}//p}' "$1"
}

# build_bins PROFILE: builds pty-resize, fake-smolvm and guest-tui, with
# cargo's progress on stderr; prints the bin dir.
build_bins() {
    local profile=${1:-debug} root
    root=$(repo_root)
    local flag=()
    [[ $profile == release ]] && flag=(--release)
    echo "building pty-resize, fake-smolvm and guest-tui ($profile; the first build takes a few minutes)..." >&2
    cargo build --locked "${flag[@]}" -p pty-resize -p fake-smolvm --bins \
        --manifest-path "$root/Cargo.toml" >&2 || return 1
    local target_dir=${CARGO_TARGET_DIR:-$root/target}
    echo "$target_dir/$profile"
}

# record_or_run FILE CMD...: runs CMD, recorded as an asciicast v2 file
# (asciinema rec) when FILE is not empty, so a session can be handed on and
# replayed with `asciinema play FILE`.
record_or_run() {
    local file=$1; shift
    if [[ -z $file ]]; then
        "$@"
        return
    fi
    command -v asciinema >/dev/null ||
        { echo "--record needs asciinema (apt-get install asciinema)" >&2; return 2; }
    local line
    printf -v line '%q ' "$@"
    asciinema rec --quiet --overwrite --command "$line" "$file"
    echo "recorded: $file (replay: asciinema play $file)" >&2
}

# fake_machine_up BIN_DIR NAME: creates and starts an image machine in fresh
# smolvm state folders under FAKE_STATE (exported with XDG_CACHE_HOME,
# XDG_DATA_HOME, XDG_RUNTIME_DIR and XDG_STATE_HOME, so this run shares no
# machine, lock, version cache or default pty-resize log with any other). The caller cleans up: trap fake_machine_down EXIT.
fake_machine_up() {
    local bin=$1 name=$2
    FAKE_STATE=$(mktemp -d "${TMPDIR:-/tmp}/fake-smolvm-state.XXXXXX")
    export FAKE_STATE XDG_CACHE_HOME=$FAKE_STATE/cache XDG_DATA_HOME=$FAKE_STATE/data \
        XDG_RUNTIME_DIR=$FAKE_STATE/run XDG_STATE_HOME=$FAKE_STATE/state
    _fake_bin=$bin _fake_name=$name
    "$bin/fake-smolvm" machine create "$name" --image alpine >/dev/null
    "$bin/fake-smolvm" machine start --name "$name" >/dev/null 2>&1 ||
        { "$bin/fake-smolvm" machine start --name "$name"; return 1; }
}

# machine_dir NAME: the machine's folder (exec.log, agent.log), where smolvm keeps it.
machine_dir() {
    echo "$XDG_CACHE_HOME/smolvm/vms/$(printf %s "$1" | sha256sum | cut -c1-16)"
}

fake_machine_down() {
    [[ -n ${FAKE_STATE:-} ]] || return 0
    "$_fake_bin/fake-smolvm" machine stop --name "$_fake_name" >/dev/null 2>&1 || true
    rm -rf "$FAKE_STATE"
}
