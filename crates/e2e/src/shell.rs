//! Quoting an argv into one `sh` command line (what a tmux pane runs).

/// `argv` as a POSIX shell command line: each word in single quotes, with
/// embedded single quotes written as `'\''`.
pub fn join(argv: &[String]) -> String {
    argv.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ")
}

/// One word in single quotes.
pub fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_survive_a_round_trip_through_sh() {
        let argv: Vec<String> = ["printf", "%s|", "a b", "it's", "$HOME", ""]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(join(&argv))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "a b|it's|$HOME||");
    }
}
