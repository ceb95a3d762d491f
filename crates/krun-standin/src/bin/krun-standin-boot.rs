//! `krun-standin-boot boot RECORD`: the supervisor `krun_start_enter` execs
//! (see `krun::boot`). Exit codes: 0 the guest ended or was stopped, 1 the
//! boot failed (reason on stderr, the client's `agent-startup-error.log`),
//! 2 usage.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("boot") if args.len() == 3 => {
            std::process::exit(krun::boot::run(std::path::Path::new(&args[2])))
        }
        _ => {
            eprintln!("usage: krun-standin-boot boot RECORD (run by the stand-in libkrun.so, not by hand)");
            std::process::exit(2);
        }
    }
}
