//! guest-tui
fn main() {}
