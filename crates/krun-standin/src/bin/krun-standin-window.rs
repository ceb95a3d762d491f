//! `krun-standin-window STORAGE WORKLOAD -- CMD...`: measures one crun window
//! of the real agent: from the agent's write of the machine's main container
//! id (`STORAGE/overlays/WORKLOAD/main_container_id` closed after writing,
//! smolvm v0.8.0 `main.rs` 3198-3207) to the moment crun's status file for
//! that id exists (`STORAGE/containers/crun/<id>/status`) — the window in
//! which a second exec deletes the container or tears its config.json.
//! STORAGE is the agent's `/storage` seen from the host
//! (`/proc/<agent pid>/root/storage`). It watches with inotify (file times
//! are only 4 ms coarse here), runs CMD (a `-t` session that creates the
//! main container), prints the window in ms on stdout and exits with 0, or
//! 1 with a reason when nothing was seen within 10 s or both events were
//! read in one batch (no figure); 2 on usage.

use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const ID_FILE: &str = "main_container_id";

struct Inotify(libc::c_int);

impl Inotify {
    fn new() -> std::io::Result<Self> {
        // SAFETY: plain syscall.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Inotify(fd))
    }

    fn watch(&self, dir: &Path, mask: u32) -> std::io::Result<libc::c_int> {
        let c = CString::new(dir.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
        // SAFETY: valid path.
        let wd = unsafe { libc::inotify_add_watch(self.0, c.as_ptr(), mask) };
        if wd < 0 {
            let e = std::io::Error::last_os_error();
            return Err(std::io::Error::new(
                e.kind(),
                format!("watch {}: {e}", dir.display()),
            ));
        }
        Ok(wd)
    }

    /// Events (watch descriptor, mask, name) arriving within `wait`.
    fn events(&self, wait: Duration) -> Vec<(libc::c_int, u32, String)> {
        let mut pfd = libc::pollfd {
            fd: self.0,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd.
        unsafe { libc::poll(&mut pfd, 1, wait.as_millis() as libc::c_int) };
        let mut buf = [0u8; 8192];
        // SAFETY: read into our buffer.
        let n = unsafe { libc::read(self.0, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
        let mut out = Vec::new();
        let mut off = 0usize;
        let head = std::mem::size_of::<libc::inotify_event>();
        while n > 0 && off + head <= n as usize {
            // SAFETY: the kernel wrote whole events; read unaligned.
            let ev: libc::inotify_event =
                unsafe { std::ptr::read_unaligned(buf.as_ptr().add(off) as *const _) };
            let name = if ev.len > 0 {
                let bytes = &buf[off + head..off + head + ev.len as usize];
                CStr::from_bytes_until_nul(bytes)
                    .map(|c| c.to_string_lossy().into_owned())
                    .unwrap_or_default()
            } else {
                String::new()
            };
            out.push((ev.wd, ev.mask, name));
            off += head + ev.len as usize;
        }
        out
    }
}

fn run(storage: &Path, workload: &str, cmd: &[String]) -> Result<f64, String> {
    let ino = Inotify::new().map_err(|e| e.to_string())?;
    let overlay = storage.join("overlays").join(workload);
    let crun_root = storage.join("containers/crun");
    let wd_overlay = ino
        .watch(&overlay, libc::IN_CLOSE_WRITE)
        .map_err(|e| e.to_string())?;
    let wd_crun = ino
        .watch(&crun_root, libc::IN_CREATE)
        .map_err(|e| e.to_string())?;
    let mut child = std::process::Command::new(&cmd[0])
        .args(&cmd[1..])
        .stdout(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("{}: {e}", cmd[0]))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut written: Option<(Instant, String)> = None;
    let mut wd_status = -1;
    let mut status_dir: PathBuf;
    let mut result = Err("no main container id written within 10 s".to_string());
    let mut batch = 0u64;
    let mut written_batch = 0u64;
    'outer: while Instant::now() < deadline {
        batch += 1;
        for (wd, _mask, name) in ino.events(Duration::from_millis(100)) {
            let now = Instant::now();
            if wd == wd_overlay && name == ID_FILE && written.is_none() {
                let id = std::fs::read_to_string(overlay.join(ID_FILE)).unwrap_or_default();
                written = Some((now, id.trim().to_string()));
                written_batch = batch;
                result = Err("crun's status file never appeared within 10 s".into());
            } else if wd == wd_crun {
                if let Some((t0, id)) = &written {
                    if &name == id && wd_status < 0 {
                        status_dir = crun_root.join(&name);
                        wd_status = ino
                            .watch(&status_dir, libc::IN_CREATE | libc::IN_MOVED_TO)
                            .unwrap_or(-1);
                        if status_dir.join("status").exists() {
                            result = Ok(t0.elapsed().as_secs_f64() * 1000.0);
                            break 'outer;
                        }
                    }
                }
            } else if wd == wd_status && name == "status" {
                if let Some((t0, _)) = &written {
                    result = Ok(now.duration_since(*t0).as_secs_f64() * 1000.0);
                    break 'outer;
                }
            }
        }
    }
    let _ = child.wait();
    // Both ends read in one batch: this process was not scheduled in between
    // and the figure would be too small; the caller runs again.
    if result.is_ok() && batch == written_batch {
        return Err("events read in one batch (measurer descheduled); run again".into());
    }
    result
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 || args[3] != "--" {
        eprintln!("usage: krun-standin-window STORAGE WORKLOAD -- CMD...");
        std::process::exit(2);
    }
    match run(Path::new(&args[1]), &args[2], &args[4..]) {
        Ok(ms) => println!("{ms:.1}"),
        Err(e) => {
            eprintln!("krun-standin-window: {e}");
            std::process::exit(1);
        }
    }
}
