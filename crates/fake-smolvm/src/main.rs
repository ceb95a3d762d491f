//! `fake-smolvm`: see the crate README.

fn main() {
    std::process::exit(fake_smolvm::cli::main());
}
