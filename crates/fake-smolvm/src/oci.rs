//! Fault 2: the one `config.json` every exec rewrites, and the bring-up ledger
//! that decides, deterministically, how concurrent writes land.
//!
//! Model: smolvm 0.8.0's guest agent truncates and rewrites the bundle's
//! `config.json` (no lock) at the start of each exec's bring-up and loads it at
//! the end. When a second exec starts its bring-up while one is in flight, its
//! truncate lands before the first writer's write, so the file ends up holding
//! both documents one after the other and every load in the overlap fails with
//! "trailing garbage". Without overlap the file holds exactly one document.

use std::collections::BTreeMap;

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

/// The set of execs whose bring-up is in flight on one machine.
#[derive(Debug, Default)]
pub struct Ledger {
    in_flight: BTreeMap<u64, bool>,
}

/// How a bring-up must write the file, decided by [`Ledger::begin`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Alone: truncate and write.
    Truncate,
    /// Overlapping: the document ends up after the in-flight writer's.
    Append,
}

impl Ledger {
    /// Registers exec `id`'s bring-up start; marks every in-flight bring-up
    /// (and this one) as overlapped when there is more than one.
    pub fn begin(&mut self, id: u64) -> WriteMode {
        if self.in_flight.is_empty() {
            self.in_flight.insert(id, false);
            WriteMode::Truncate
        } else {
            self.in_flight.values_mut().for_each(|o| *o = true);
            self.in_flight.insert(id, true);
            WriteMode::Append
        }
    }

    /// Ends exec `id`'s bring-up; returns whether it overlapped another.
    pub fn end(&mut self, id: u64) -> bool {
        self.in_flight.remove(&id).unwrap_or(false)
    }
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
    fn ledger_alone_never_overlaps() {
        let mut l = Ledger::default();
        for id in 0..10 {
            assert_eq!(l.begin(id), WriteMode::Truncate);
            assert!(!l.end(id));
        }
    }

    #[test]
    fn ledger_overlap_marks_both_sides_and_chains() {
        let mut l = Ledger::default();
        assert_eq!(l.begin(1), WriteMode::Truncate);
        assert_eq!(l.begin(2), WriteMode::Append);
        assert!(l.end(1));
        // 3 starts while 2 is still in flight: it overlaps 2.
        assert_eq!(l.begin(3), WriteMode::Append);
        assert!(l.end(2));
        assert!(l.end(3));
        assert_eq!(l.begin(4), WriteMode::Truncate);
        assert!(!l.end(4));
    }
}
