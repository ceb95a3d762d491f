//! Version parsing, resolution, the probe and its cache.

use super::*;

#[test]
fn parses_smolvm_style_output() {
    assert_eq!(parse("smolvm 0.8.0\n"), Some((0, 8, 0)));
    assert_eq!(parse("smolvm 0.8.1"), Some((0, 8, 1)));
    assert_eq!(parse("smolvm v1.4.0 (abc123)"), Some((1, 4, 0)));
    assert_eq!(parse("smolvm 0.8.1-rc.1"), Some((0, 8, 1)));
    assert_eq!(parse("smolvm 0.10.0+build"), Some((0, 10, 0)));
    assert_eq!(parse("smolvm"), None);
    assert_eq!(parse(""), None);
    assert_eq!(parse("version 1.2"), None);
    assert_eq!(parse("1.2.3.4"), None);
}

#[test]
fn native_from_0_8_1() {
    assert!(!is_native((0, 8, 0)));
    assert!(!is_native((0, 7, 99)));
    assert!(is_native((0, 8, 1)));
    assert!(is_native((0, 9, 0)));
    assert!(is_native((1, 0, 0)));
}

#[test]
fn cache_roundtrip_replaces_and_bounds() {
    let t = cache_update("", "k1", Some((0, 8, 0)));
    assert_eq!(cache_lookup(&t, "k1"), Some(Some((0, 8, 0))));
    assert_eq!(cache_lookup(&t, "k2"), None);
    let t = cache_update(&t, "k2", None);
    assert_eq!(cache_lookup(&t, "k2"), Some(None));
    let t = cache_update(&t, "k1", Some((0, 8, 1)));
    assert_eq!(cache_lookup(&t, "k1"), Some(Some((0, 8, 1))));
    assert_eq!(t.lines().count(), 2);
    let mut t = t;
    for i in 0..100 {
        t = cache_update(&t, &format!("x{i}"), None);
    }
    assert_eq!(t.lines().count(), 32);
    assert!(cache_lookup(&t, "x99").is_some());
}

#[test]
fn resolve_reports_missing_and_non_executable() {
    assert!(resolve("sh").is_ok());
    assert!(resolve("/definitely/not/here").is_err());
    assert!(resolve("no-such-program-pty-resize").is_err());
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("plain");
    std::fs::write(&f, "x").unwrap();
    // Root may execute-check differently only for files with an x bit; this has none.
    assert_eq!(
        resolve(f.to_str().unwrap()),
        Err(ResolveError::NotExecutable)
    );
    assert_eq!(
        resolve(dir.path().to_str().unwrap()),
        Err(ResolveError::NotRegular)
    );
    assert_eq!(resolve(""), Err(ResolveError::Empty));
    assert_eq!(
        resolve("/definitely/not/here"),
        Err(ResolveError::NotFound(false))
    );
    assert_eq!(
        ResolveError::NotFound(true).to_string(),
        "not found in PATH"
    );
}

/// A stub `smolvm` that counts its runs in `runs` and prints `answer`
/// (or sleeps when `answer` is `None`).
fn stub(dir: &Path, answer: Option<&str>) -> (PathBuf, PathBuf) {
    let runs = dir.join("runs");
    let prog = dir.join("smolvm");
    let body = match answer {
        Some(a) => format!("echo run >> {}; echo '{a}'", runs.display()),
        None => format!("echo run >> {}; exec sleep 30", runs.display()),
    };
    std::fs::write(&prog, format!("#!/bin/sh\n{body}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
    (prog, runs)
}

fn runs(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

#[test]
fn detect_queries_once_then_answers_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let (prog, count) = stub(dir.path(), Some("smolvm 0.8.1"));
    let cache = dir.path().join("c/versions");
    let t = Duration::from_secs(5);
    assert_eq!(
        detect(&prog, Some(&cache), t),
        (Probe::Version((0, 8, 1)), Source::Query)
    );
    assert_eq!(
        detect(&prog, Some(&cache), t),
        (Probe::Version((0, 8, 1)), Source::Cache)
    );
    assert_eq!(runs(&count), 1, "the second answer came from the cache");
    // Without a cache every call runs the program.
    assert_eq!(
        detect(&prog, None, t),
        (Probe::Version((0, 8, 1)), Source::Query)
    );
    assert_eq!(runs(&count), 2);
}

#[test]
fn a_hung_version_is_bounded_and_its_timeout_is_cached() {
    let dir = tempfile::tempdir().unwrap();
    let (prog, count) = stub(dir.path(), None);
    let cache = dir.path().join("versions");
    let started = std::time::Instant::now();
    let t = Duration::from_millis(300);
    assert_eq!(
        detect(&prog, Some(&cache), t),
        (Probe::Timeout, Source::Query)
    );
    assert!(started.elapsed() < Duration::from_secs(5), "bounded");
    assert_eq!(
        detect(&prog, Some(&cache), t),
        (Probe::NoVersion, Source::Cache)
    );
    assert_eq!(runs(&count), 1);
}

#[test]
fn no_version_in_the_output_is_cached_as_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let (prog, _) = stub(dir.path(), Some("smolvm dev"));
    let cache = dir.path().join("versions");
    let t = Duration::from_secs(5);
    assert_eq!(detect(&prog, Some(&cache), t).0, Probe::NoVersion);
    let text = std::fs::read_to_string(&cache).unwrap();
    assert!(text.ends_with("\tunknown\n"), "{text:?}");
    assert_eq!(detect(&prog, Some(&cache), t).1, Source::Cache);
}

#[test]
fn a_program_that_cannot_start_is_not_cached() {
    let dir = tempfile::tempdir().unwrap();
    let prog = dir.path().join("smolvm");
    // Executable, but its interpreter does not exist: spawn fails.
    std::fs::write(&prog, "#!/nonexistent/interpreter\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cache = dir.path().join("versions");
    let (p, s) = detect(&prog, Some(&cache), Duration::from_secs(5));
    assert!(matches!(p, Probe::Failed(_)), "{p:?}");
    assert_eq!(s, Source::Query);
    assert!(!cache.exists());
}

#[test]
fn resolve_searches_path_in_order_and_keeps_the_most_telling_error() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(a.join("prog"), "x").unwrap(); // not executable
    std::fs::write(b.join("prog"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(b.join("prog"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = |dirs: &[&Path]| Some(std::env::join_paths(dirs).unwrap());
    assert_eq!(resolve_in("prog", path(&[&a, &b])), Ok(b.join("prog")));
    assert_eq!(
        resolve_in("prog", path(&[&a])),
        Err(ResolveError::NotExecutable)
    );
    std::fs::create_dir_all(dir.path().join("prog")).unwrap();
    assert_eq!(
        resolve_in("prog", path(&[dir.path()])),
        Err(ResolveError::NotRegular),
        "a directory named like the program"
    );
    assert_eq!(
        resolve_in("nothing-here", path(&[&a])),
        Err(ResolveError::NotFound(true))
    );
    assert_eq!(resolve_in("sh", None).map(|p| p.is_absolute()), Ok(true));
}

#[test]
fn cache_path_rules() {
    let o = |s: &str| Some(OsString::from(s));
    let want = |p: &str| Some(PathBuf::from(p));
    assert_eq!(
        cache_path(None, o("/x"), o("/h")),
        want("/x/pty-resize/versions")
    );
    assert_eq!(
        cache_path(None, o(""), o("/h")),
        want("/h/.cache/pty-resize/versions")
    );
    assert_eq!(
        cache_path(None, None, o("/h")),
        want("/h/.cache/pty-resize/versions")
    );
    assert_eq!(cache_path(None, None, o("")), None);
    assert_eq!(cache_path(None, None, None), None);
    assert_eq!(cache_path(o("1"), o("/x"), o("/h")), None);
    assert_eq!(
        cache_path(o("0"), o("/x"), None),
        want("/x/pty-resize/versions")
    );
    assert_eq!(
        cache_path(o(""), o("/x"), None),
        want("/x/pty-resize/versions")
    );
}

#[test]
fn probe_versions_and_source_names() {
    assert_eq!(Probe::Version((0, 8, 0)).version(), Some((0, 8, 0)));
    assert_eq!(Probe::Timeout.version(), None);
    assert_eq!(Probe::NoVersion.version(), None);
    assert_eq!(Source::Cache.as_str(), "cache");
    assert_eq!(Source::Query.as_str(), "query");
}

#[test]
fn cache_key_changes_with_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("prog");
    std::fs::write(&f, "a").unwrap();
    let k1 = cache_key(&f).unwrap();
    std::fs::write(&f, "ab").unwrap();
    let k2 = cache_key(&f).unwrap();
    assert_ne!(k1, k2);
}
