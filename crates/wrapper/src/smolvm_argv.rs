//! Understanding the wrapped smolvm command line (pure).
//!
//! The wrapper needs four facts about `<smolvm> machine exec [OPTIONS] -- CMD…`:
//! is it an exec at all, does it ask for a TTY (`-t`, `--tty`, or a short
//! cluster such as `-it`), and where the guest command starts (after `--`), so
//! it can be started through the size prologue, and which machine (`--name`,
//! checked against MACHINE). Everything after `--` belongs
//! to the guest and is never inspected for flags.

/// What the wrapped argv asks smolvm to do, as far as the wrapper cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecArgv {
    /// `-t/--tty` was given before `--`.
    pub tty: bool,
    /// The `--name` value, if one was given.
    pub name: Option<String>,
    /// Index of the `--` that separates smolvm's options from the guest command.
    pub separator: Option<usize>,
    /// Index of the guest command's first word when it follows smolvm's
    /// options without a `--` (`exec -t top`, which smolvm accepts); see
    /// [`with_separator`].
    pub bare_command: Option<usize>,
}

impl ExecArgv {
    /// Whether a guest command follows the `--` (needed to insert the prologue).
    pub fn has_command(&self, argv: &[String]) -> bool {
        self.separator.is_some_and(|sep| sep + 1 < argv.len())
    }
}

/// Options of `machine exec` that take a value (long form and short letter).
const VALUE_LONG: &[&str] = &["name", "env", "workdir", "timeout"];
const VALUE_SHORT: &[char] = &['e', 'w'];

/// Parses `argv` (`argv[0]` is the smolvm program). `None` if it is not a
/// `machine exec` / `vm exec` invocation.
pub fn parse(argv: &[String]) -> Option<ExecArgv> {
    let mut i = 1;
    // Global flags before the subcommand are skipped; the first word must be
    // `machine` (or its alias `vm`) and the next one `exec`.
    while i < argv.len() && argv[i].starts_with('-') && argv[i] != "--" {
        i += 1;
    }
    if !matches!(argv.get(i).map(String::as_str), Some("machine" | "vm")) {
        return None;
    }
    i += 1;
    if argv.get(i).map(String::as_str) != Some("exec") {
        return None;
    }
    i += 1;
    let mut out = ExecArgv {
        tty: false,
        name: None,
        separator: None,
        bare_command: None,
    };
    while i < argv.len() {
        let arg = argv[i].as_str();
        if arg == "--" {
            out.separator = Some(i);
            break;
        }
        if let Some(long) = arg.strip_prefix("--") {
            let (key, inline) = match long.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (long, None),
            };
            match key {
                "tty" => out.tty = true,
                k if VALUE_LONG.contains(&k) => {
                    let value = match inline {
                        Some(v) => Some(v.to_string()),
                        None => {
                            i += 1;
                            argv.get(i).cloned()
                        }
                    };
                    if key == "name" {
                        out.name = value;
                    }
                }
                _ => {}
            }
        } else if let Some(cluster) = arg.strip_prefix('-').filter(|c| !c.is_empty()) {
            for (pos, c) in cluster.char_indices() {
                match c {
                    't' => out.tty = true,
                    c if VALUE_SHORT.contains(&c) => {
                        // `-eK=V` carries its value inline; `-e K=V` in the next word.
                        if pos + c.len_utf8() == cluster.len() {
                            i += 1;
                        }
                        break;
                    }
                    _ => {}
                }
            }
        } else {
            // A bare word before any `--`: the command starts here without a
            // separator (smolvm's clap takes the rest as the command, flags
            // included). Every value-taking option of `machine exec` has
            // consumed its value above, so this is the command, not a value.
            out.bare_command = Some(i);
            break;
        }
        i += 1;
    }
    Some(out)
}

/// `argv` with a `--` inserted before a command given without one (`exec
/// -t top` → `exec -t -- top`: the same to smolvm), so the prologue and the
/// marker apply to that form too; `argv` unchanged otherwise.
pub fn with_separator(argv: &[String]) -> Vec<String> {
    match parse(argv).and_then(|e| e.bare_command) {
        Some(at) => {
            let mut out = argv.to_vec();
            out.insert(at, "--".into());
            out
        }
        None => argv.to_vec(),
    }
}

/// Rewrites `argv` so the guest runs `sh -c <prologue> sh CMD…` instead of
/// `CMD…`. `separator` is the index of the `--`; the caller checked that a
/// command follows it.
pub fn with_prologue(argv: &[String], separator: usize, prologue: &str) -> Vec<String> {
    let mut out = Vec::with_capacity(argv.len() + 4);
    out.extend_from_slice(&argv[..=separator]);
    out.extend(["sh", "-c", prologue, "sh"].map(String::from));
    out.extend_from_slice(&argv[separator + 1..]);
    out
}

/// Inserts `-e KEY=VALUE` just before the `--` at `separator`, where
/// smolvm's options end (the environment of the guest command).
pub fn with_env(argv: &[String], separator: usize, key: &str, value: &str) -> Vec<String> {
    let mut out = Vec::with_capacity(argv.len() + 2);
    out.extend_from_slice(&argv[..separator]);
    out.push("-e".into());
    out.push(format!("{key}={value}"));
    out.extend_from_slice(&argv[separator..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn plain_interactive_exec() {
        let argv = v("smolvm machine exec --name bottle -t -- claude --resume");
        let p = parse(&argv).unwrap();
        assert!(p.tty);
        assert_eq!(p.name.as_deref(), Some("bottle"));
        assert_eq!(p.separator, Some(6));
        assert!(p.has_command(&argv));
    }

    #[test]
    fn combined_short_flags_and_long_tty() {
        for s in [
            "smolvm machine exec -it --name m -- sh",
            "smolvm machine exec -ti -- sh",
            "smolvm machine exec --tty -- sh",
            "smolvm machine exec -i --tty -- sh",
        ] {
            assert!(parse(&v(s)).unwrap().tty, "{s}");
        }
    }

    #[test]
    fn vm_alias_and_name_with_equals() {
        let p = parse(&v("smolvm vm exec --name=bottle -t -- top")).unwrap();
        assert_eq!(p.name.as_deref(), Some("bottle"));
        assert!(p.tty);
    }

    #[test]
    fn flags_after_the_separator_belong_to_the_guest() {
        let argv = v("smolvm machine exec --name m -- ls -t --tty -it");
        let p = parse(&argv).unwrap();
        assert!(!p.tty);
        assert_eq!(p.separator, Some(5));
    }

    #[test]
    fn option_values_are_not_mistaken_for_flags() {
        // `-t` as the value of --workdir / -e is not a tty request.
        let p = parse(&v("smolvm machine exec --workdir -t -e -t -- sh")).unwrap();
        assert!(!p.tty);
        let p = parse(&v("smolvm machine exec -e A=1 -w /x --timeout 5m -t -- sh")).unwrap();
        assert!(p.tty);
        // Inline value in a cluster: `-iwfoo` is -i plus workdir "foo" (no t).
        let p = parse(&v("smolvm machine exec -iwtt -- sh")).unwrap();
        assert!(!p.tty);
        assert_eq!(p.separator, Some(4));
        // A flag without a value (`--stream`) does not swallow the next word.
        let p = parse(&v("smolvm machine exec --stream -t -- sh")).unwrap();
        assert!(p.tty);
        assert_eq!(p.separator, Some(5));
        // A value-taking letter ending the cluster consumes the next word.
        let p = parse(&v("smolvm machine exec -te -t -- sh")).unwrap();
        assert!(p.tty);
        assert_eq!(p.separator, Some(5));
    }

    #[test]
    fn no_separator_or_no_command() {
        let argv = v("smolvm machine exec -t --name m");
        let p = parse(&argv).unwrap();
        assert!(p.tty);
        assert_eq!(p.separator, None);
        assert!(!p.has_command(&argv));

        let argv = v("smolvm machine exec -t --");
        let p = parse(&argv).unwrap();
        assert_eq!(p.separator, Some(4));
        assert!(!p.has_command(&argv));

        // A bare command without `--` stops option parsing; no separator.
        let argv = v("smolvm machine exec -t top -t");
        let p = parse(&argv).unwrap();
        assert_eq!(p.separator, None);
        assert_eq!(p.bare_command, Some(4));
    }

    #[test]
    fn a_command_without_a_separator_gets_one() {
        let argv = v("smolvm machine exec --name m -e A=1 -t top -t --x");
        let out = with_separator(&argv);
        assert_eq!(
            out,
            v("smolvm machine exec --name m -e A=1 -t -- top -t --x")
        );
        let p = parse(&out).unwrap();
        assert!(p.tty);
        assert_eq!(p.separator, Some(8));
        assert!(p.has_command(&out));
        assert_eq!(p.bare_command, None);
        // With a `--` already, or not an exec: unchanged.
        for s in [
            "smolvm machine exec -t -- top",
            "smolvm machine ls x",
            "sudo smolvm machine exec -t top",
            "smolvm machine exec -t",
        ] {
            assert_eq!(with_separator(&v(s)), v(s), "{s}");
        }
    }

    #[test]
    fn not_an_exec() {
        for s in [
            "smolvm",
            "smolvm machine ls",
            "smolvm machine",
            "smolvm container exec -t -- sh",
            "smolvm -- machine exec -t -- sh",
            "bash -c smolvm",
        ] {
            assert_eq!(parse(&v(s)), None, "{s}");
        }
        // A global flag before the subcommand is skipped.
        assert!(parse(&v("smolvm -v machine exec -t -- sh")).unwrap().tty);
    }

    #[test]
    fn env_is_inserted_before_the_separator() {
        let argv = v("smolvm machine exec --name m -t -- top -e x");
        let out = with_env(&argv, 6, "K", "v1");
        assert_eq!(
            out,
            v("smolvm machine exec --name m -t -e K=v1 -- top -e x")
        );
        let p = parse(&out).unwrap();
        assert!(p.tty);
        assert_eq!(p.separator, Some(8));
    }

    #[test]
    fn prologue_is_inserted_after_the_separator() {
        let argv = v("smolvm machine exec --name m -t -- claude --resume");
        let out = with_prologue(&argv, 6, "PROLOGUE");
        assert_eq!(
            out,
            v("smolvm machine exec --name m -t -- sh -c PROLOGUE sh claude --resume")
        );
    }
}
