//! `--record FILE`: one JSON line per frame, so a benchmark in another
//! process can see when each frame was drawn and at which size.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use serde::Serialize;

use crate::view::Size;

/// One line of the record file.
#[derive(Debug, Serialize)]
pub struct FrameRecord {
    /// The frame number, from 1.
    pub frame: u64,
    /// Columns the frame was drawn at.
    pub cols: u16,
    /// Rows the frame was drawn at.
    pub rows: u16,
    /// `CLOCK_MONOTONIC` milliseconds, comparable across processes.
    pub ms: f64,
}

/// An open record file.
pub struct Recorder {
    file: File,
}

impl Recorder {
    /// Opens (creating if needed) `path` for appending.
    pub fn open(path: &Path) -> io::Result<Recorder> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Recorder { file })
    }

    /// Appends the record of one frame, stamped now.
    pub fn frame(&mut self, frame: u64, size: Size) -> io::Result<()> {
        let record = FrameRecord {
            frame,
            cols: size.cols,
            rows: size.rows,
            ms: fake_smolvm::exec_log::monotonic_ms(),
        };
        let mut line = serde_json::to_vec(&record).map_err(io::Error::other)?;
        line.push(b'\n');
        // One write per line on an O_APPEND fd: a reader never sees half a line
        // from us interleaved with another writer's.
        self.file.write_all(&line)
    }
}
