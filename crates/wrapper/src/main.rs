//! `pty-resize`: see the library for everything; this only exits with its code.

fn main() {
    std::process::exit(pty_resize::run::main());
}
