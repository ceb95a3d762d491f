//! The machine registry: smolvm 0.8.0's SQLite database, read by the real
//! client at every exec (smolvm v0.8.0 `src/db.rs`).
//!
//! Table `vms(name TEXT PRIMARY KEY, data BLOB)`, `data` = the JSON of the
//! record. The client takes the image path (`query` + `run`, the path with
//! the 0×0 bug) when the record has an `image`, the bare path (`vm_exec`)
//! otherwise. A record stored as TEXT is not found by the real client, so
//! data is always bound as a BLOB.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::fail::{fail, Fail, Res};

/// How long a writer waits for another's lock, as smolvm does (`db.rs`: 5 s).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A machine's lifecycle state, spelled as smolvm's `RecordState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Created, never started.
    #[default]
    Created,
    /// The guest runs.
    Running,
    /// Stopped.
    Stopped,
    /// Start failed.
    Failed,
}

impl State {
    /// The word `ls` and `status` print.
    pub fn word(self) -> &'static str {
        match self {
            State::Created => "created",
            State::Running => "running",
            State::Stopped => "stopped",
            State::Failed => "failed",
        }
    }
}

/// One machine's record (the fields the fake and the real client use;
/// smolvm's other fields take their defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The machine name.
    pub name: String,
    /// Seconds since the Unix epoch.
    #[serde(default)]
    pub created_at: u64,
    /// Lifecycle state.
    #[serde(default)]
    pub state: State,
    /// The agent front's pid while running.
    #[serde(default)]
    pub pid: Option<i32>,
    /// The container image; `None` is a bare machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// vCPUs (shown by the real `machine ls`).
    #[serde(default = "one")]
    pub cpus: u8,
    /// Memory, MiB.
    #[serde(default = "default_mem")]
    pub mem: u32,
}

fn one() -> u8 {
    1
}

fn default_mem() -> u32 {
    512
}

impl Record {
    /// A fresh record in state `created`.
    pub fn new(name: &str, image: Option<String>, created_at: u64) -> Record {
        Record {
            name: name.to_string(),
            created_at,
            state: State::Created,
            pid: None,
            image,
            cpus: one(),
            mem: default_mem(),
        }
    }
}

/// An open registry.
pub struct Registry {
    path: PathBuf,
    conn: Connection,
}

impl Registry {
    /// Opens (creating if needed) the database at `path`. Every failure is
    /// one message naming the file.
    pub fn open(path: &Path) -> Res<Registry> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| {
                fail(format!(
                    "cannot create state directory {}: {e}",
                    parent.display()
                ))
            })?;
        }
        let err = |e: rusqlite::Error| db_fail(path, e);
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS vms (name TEXT PRIMARY KEY NOT NULL, data BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS config (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);",
        )
        .map_err(err)?;
        Ok(Registry {
            path: path.to_path_buf(),
            conn,
        })
    }

    fn fail(&self, e: rusqlite::Error) -> Fail {
        db_fail(&self.path, e)
    }

    /// The record of `name`, if any.
    pub fn get(&self, name: &str) -> Res<Option<Record>> {
        let data: Option<Vec<u8>> = self
            .conn
            .query_row("SELECT data FROM vms WHERE name = ?1", params![name], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.fail(e))?;
        data.map(|d| self.decode(&d)).transpose()
    }

    /// The record of `name`, or smolvm's `vm not found: NAME`.
    pub fn require(&self, name: &str) -> Res<Record> {
        self.get(name)?
            .ok_or_else(|| fail(format!("vm not found: {name}")))
    }

    /// Inserts or replaces a record.
    pub fn put(&self, rec: &Record) -> Res<()> {
        let data = serde_json::to_vec(rec).expect("a record serializes");
        self.conn
            .execute(
                "INSERT OR REPLACE INTO vms (name, data) VALUES (?1, ?2)",
                params![rec.name, data],
            )
            .map_err(|e| self.fail(e))?;
        Ok(())
    }

    /// Removes a record.
    pub fn delete(&self, name: &str) -> Res<()> {
        self.conn
            .execute("DELETE FROM vms WHERE name = ?1", params![name])
            .map_err(|e| self.fail(e))?;
        Ok(())
    }

    /// Every record, by name.
    pub fn all(&self) -> Res<Vec<Record>> {
        let mut stmt = self
            .conn
            .prepare("SELECT data FROM vms ORDER BY name")
            .map_err(|e| self.fail(e))?;
        let rows = stmt
            .query_map([], |r| r.get::<_, Vec<u8>>(0))
            .map_err(|e| self.fail(e))?;
        let mut out = Vec::new();
        for row in rows {
            out.push(self.decode(&row.map_err(|e| self.fail(e))?)?);
        }
        Ok(out)
    }

    fn decode(&self, data: &[u8]) -> Res<Record> {
        serde_json::from_slice(data).map_err(|e| {
            fail(format!(
                "registry {}: a machine record is not valid JSON: {e}",
                self.path.display()
            ))
        })
    }
}

/// One line naming the database and what SQLite said.
fn db_fail(path: &Path, e: rusqlite::Error) -> Fail {
    fail(format!("registry {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_as_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("smolvm.db");
        let reg = Registry::open(&path).unwrap();
        assert_eq!(reg.get("m").unwrap(), None);
        let rec = Record::new("m", Some("alpine".into()), 7);
        reg.put(&rec).unwrap();
        assert_eq!(reg.get("m").unwrap(), Some(rec));
        let kind: String = reg
            .conn
            .query_row("SELECT typeof(data) FROM vms", [], |r| r.get(0))
            .unwrap();
        assert_eq!(kind, "blob", "the real client does not find TEXT data");
        reg.delete("m").unwrap();
        assert!(reg.all().unwrap().is_empty());
    }

    #[test]
    fn a_missing_machine_is_smolvms_message() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(&dir.path().join("smolvm.db")).unwrap();
        assert_eq!(reg.require("x").unwrap_err().message, "vm not found: x");
    }

    #[test]
    fn a_corrupt_database_is_one_line_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("smolvm.db");
        std::fs::write(&path, "this is not a database, just text".repeat(200)).unwrap();
        let e = Registry::open(&path).err().expect("corrupt db fails");
        assert!(e.message.contains(&path.display().to_string()), "{e}");
        assert!(!e.message.contains('\n'), "{e}");
    }
}
