//! The OCI bundle's `config.json`: the document each exec writes, crun's
//! load of it, and crun's message when another exec's write tore it (who
//! tears whom is decided by `agent::timeline`).

/// One exec's OCI runtime config, written single-line like smolvm's agent does.
pub fn config_document(
    machine: &str,
    exec_id: &str,
    argv: &[String],
    env: &[String],
    cwd: &str,
    terminal: bool,
) -> String {
    format!(
        "{{ \"ociVersion\": \"1.0.2\", \"process\": {{ \"terminal\": {terminal}, \"args\": {}, \"env\": {}, \"cwd\": {} }}, \"root\": {{ \"path\": \"rootfs\" }}, \"hostname\": {}, \"annotations\": {{ \"fake-smolvm.exec\": {} }} }}\n",
        json(argv),
        json(env),
        json(cwd),
        json(machine),
        json(exec_id),
    )
}

fn json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).expect("plain data always serializes")
}

/// Loads `config.json` as the OCI runtime would: exactly one JSON document.
/// Returns the document's `fake-smolvm.exec` annotation, or the runtime's message.
pub fn load_config(text: &str) -> Result<String, String> {
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<serde_json::Value>();
    let first = match stream.next() {
        Some(Ok(v)) => v,
        Some(Err(e)) => return Err(format!("load `config.json`: parse error: {e}")),
        None => return Err("load `config.json`: parse error: empty file".into()),
    };
    let rest = &text[stream.byte_offset()..];
    if !rest.trim().is_empty() {
        return Err(format!(
            "load `config.json`: parse error: trailing garbage {}",
            garbage_excerpt(rest)
        ));
    }
    first
        .pointer("/annotations/fake-smolvm.exec")
        .and_then(|v| v.as_str())
        .map(str::to_owned)
        .ok_or_else(|| "load `config.json`: missing annotations".to_string())
}

/// The start of the trailing text as runc-style runtimes quote it:
/// whitespace collapsed, cut after the last `,` within 40 characters, then ` … }`.
pub fn garbage_excerpt(rest: &str) -> String {
    let collapsed = rest.split_whitespace().collect::<Vec<_>>().join(" ");
    let head: String = collapsed.chars().take(40).collect();
    let cut = match head.rfind(',') {
        Some(i) => &head[..=i],
        None => head.as_str(),
    };
    format!("{cut} … }}")
}

/// What crun prints when it read `mine` while another exec rewrote the file
/// with `theirs` (truncate, then write: crun's reader sees a complete
/// document followed by more).
pub fn tear_message(mine: &str, theirs: &str) -> String {
    load_config(&format!("{mine}{theirs}"))
        .err()
        .unwrap_or_else(|| "load `config.json`: parse error: trailing garbage".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(id: &str) -> String {
        config_document(
            "m1",
            id,
            &["sh".into(), "-c".into(), "echo \"hi\"".into()],
            &["PATH=/bin".into()],
            "/",
            true,
        )
    }

    #[test]
    fn document_is_oci_shaped_and_single_line() {
        let text = doc("7");
        assert_eq!(text.lines().count(), 1);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["ociVersion"], "1.0.2");
        assert_eq!(v["process"]["terminal"], true);
        assert_eq!(v["process"]["args"][2], "echo \"hi\"");
        assert_eq!(v["hostname"], "m1");
        assert!(text.starts_with("{ \"ociVersion\": \"1.0.2\", \"process\": {"));
        assert_ne!(doc("7"), doc("8"));
    }

    #[test]
    fn one_document_loads_as_its_own() {
        assert_eq!(load_config(&doc("7")).unwrap(), "7");
    }

    #[test]
    fn two_documents_give_the_exact_seed_message() {
        let torn = format!("{}{}", doc("1"), doc("2"));
        assert_eq!(
            load_config(&torn).unwrap_err(),
            "load `config.json`: parse error: trailing garbage { \"ociVersion\": \"1.0.2\", … }"
        );
    }

    #[test]
    fn excerpt_without_comma_is_cut_at_40_chars() {
        let e = garbage_excerpt(&"x".repeat(100));
        assert_eq!(e, format!("{} … }}", "x".repeat(40)));
        assert_eq!(
            garbage_excerpt("  {\n  \"a\":   1,\n \"b\": 2 }"),
            "{ \"a\": 1, … }"
        );
    }

    #[test]
    fn a_tear_is_the_seeds_message() {
        assert_eq!(
            tear_message(&doc("1"), &doc("2")),
            "load `config.json`: parse error: trailing garbage { \"ociVersion\": \"1.0.2\", … }"
        );
    }
}
