//! `pty-resize`: `main → run(parse())`, and the one place an error becomes
//! an exit code (see `pty_resize::error`).

use std::process::ExitCode;

use pty_resize::entry;

fn main() -> ExitCode {
    entry::ensure_std_fds();
    let code = match entry::parse().and_then(entry::run) {
        Ok(ending) => entry::die_by(ending),
        Err(e) => {
            eprintln!("pty-resize: {e}");
            e.exit_code()
        }
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
