//! The exported libkrun C API: every symbol the 0.8.0 client requires
//! (`src/agent/krun.rs` 120-135 at v0.8.0). Configuration calls are recorded
//! in one [`VmConfig`] (the client makes one context per `_boot-vm`);
//! `krun_start_enter` writes it next to the agent socket and execs the boot
//! helper in place: the `_boot-vm` pid, which `machine stop` signals
//! (`manager.rs` 1276), becomes the helper's supervisor, single-threaded.
//! The optional symbols (egress, virtio-net, GPU) are not exported, so the
//! client sees them as absent.

use crate::config::{Disk, VmConfig, VsockPort};
use std::ffi::{c_char, c_int, CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Mutex;

/// The context id handed out by `krun_create_ctx`.
const CTX_ID: u32 = 1;

static CONFIG: Mutex<Option<VmConfig>> = Mutex::new(None);

/// The environment variable naming the boot helper, overriding the one next
/// to this library (for tests).
pub const HELPER_ENV: &str = "KRUN_STANDIN_HELPER";
/// The boot helper's file name, looked up next to `libkrun.so`.
pub const HELPER_NAME: &str = "krun-standin-boot";
/// The recorded configuration's file name in `<vm dir>/krun-standin/`.
pub const RECORD_NAME: &str = "boot.json";

fn with_config<R>(call: String, f: impl FnOnce(&mut VmConfig) -> R) -> R {
    let mut guard = CONFIG.lock().unwrap_or_else(|e| e.into_inner());
    let cfg = guard.get_or_insert_with(VmConfig::default);
    cfg.calls.push(call);
    f(cfg)
}

/// # Safety
/// `p` is null or a valid NUL-terminated string.
unsafe fn text(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: the caller promises a valid C string.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// # Safety
/// `list` is null or a NULL-terminated array of valid C strings.
unsafe fn text_list(list: *const *const c_char) -> Vec<String> {
    let mut out = Vec::new();
    if list.is_null() {
        return out;
    }
    let mut i = 0;
    loop {
        // SAFETY: NULL-terminated array per the caller.
        let p = unsafe { *list.add(i) };
        if p.is_null() {
            return out;
        }
        // SAFETY: as above.
        out.push(unsafe { text(p) });
        i += 1;
    }
}

/// `krun_set_log_level(level)`.
#[no_mangle]
pub extern "C" fn krun_set_log_level(level: u32) -> i32 {
    with_config(format!("set_log_level({level})"), |_| 0)
}

/// `krun_create_ctx()`: one context per process.
#[no_mangle]
pub extern "C" fn krun_create_ctx() -> i32 {
    with_config("create_ctx()".into(), |_| CTX_ID as i32)
}

/// `krun_free_ctx(ctx)`: forgets the recorded configuration.
#[no_mangle]
pub extern "C" fn krun_free_ctx(ctx: u32) {
    let mut guard = CONFIG.lock().unwrap_or_else(|e| e.into_inner());
    let _ = ctx;
    *guard = None;
}

/// `krun_set_vm_config(ctx, vcpus, ram_mib)`.
#[no_mangle]
pub extern "C" fn krun_set_vm_config(ctx: u32, vcpus: u8, ram_mib: u32) -> i32 {
    with_config(format!("set_vm_config({ctx}, {vcpus}, {ram_mib})"), |c| {
        c.vcpus = vcpus;
        c.ram_mib = ram_mib;
        0
    })
}

/// `krun_set_root(ctx, path)`.
///
/// # Safety
/// `path` is a valid C string.
#[no_mangle]
pub unsafe extern "C" fn krun_set_root(ctx: u32, path: *const c_char) -> i32 {
    // SAFETY: per the libkrun contract.
    let p = unsafe { text(path) };
    with_config(format!("set_root({ctx}, {p:?})"), |c| {
        c.root = Some(PathBuf::from(p));
        0
    })
}

/// `krun_set_workdir(ctx, path)`.
///
/// # Safety
/// `path` is a valid C string.
#[no_mangle]
pub unsafe extern "C" fn krun_set_workdir(ctx: u32, path: *const c_char) -> i32 {
    // SAFETY: per the libkrun contract.
    let p = unsafe { text(path) };
    with_config(format!("set_workdir({ctx}, {p:?})"), |c| {
        c.workdir = Some(p);
        0
    })
}

/// `krun_set_exec(ctx, path, argv, envp)`.
///
/// # Safety
/// `path` is a valid C string; `argv`/`envp` NULL-terminated string arrays or null.
#[no_mangle]
pub unsafe extern "C" fn krun_set_exec(
    ctx: u32,
    path: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> i32 {
    // SAFETY: per the libkrun contract.
    let (p, a, e) = unsafe { (text(path), text_list(argv), text_list(envp)) };
    with_config(format!("set_exec({ctx}, {p:?}, {a:?}, {e:?})"), |c| {
        c.exec_path = Some(p);
        c.argv = a;
        c.env = e;
        0
    })
}

/// `krun_set_port_map(ctx, list)`.
///
/// # Safety
/// `list` is a NULL-terminated string array or null.
#[no_mangle]
pub unsafe extern "C" fn krun_set_port_map(ctx: u32, list: *const *const c_char) -> i32 {
    // SAFETY: per the libkrun contract.
    let l = unsafe { text_list(list) };
    with_config(format!("set_port_map({ctx}, {l:?})"), |c| {
        c.port_map = l;
        0
    })
}

/// `krun_add_disk2(ctx, block_id, path, format, read_only)`.
///
/// # Safety
/// `block_id` and `path` are valid C strings.
#[no_mangle]
pub unsafe extern "C" fn krun_add_disk2(
    ctx: u32,
    block_id: *const c_char,
    path: *const c_char,
    format: u32,
    read_only: bool,
) -> i32 {
    // SAFETY: per the libkrun contract.
    let (b, p) = unsafe { (text(block_id), text(path)) };
    with_config(
        format!("add_disk2({ctx}, {b:?}, {p:?}, {format}, {read_only})"),
        |c| {
            c.disks.push(Disk {
                block_id: b,
                path: PathBuf::from(p),
                read_only,
            });
            0
        },
    )
}

/// `krun_add_vsock_port2(ctx, port, path, listen)`.
///
/// # Safety
/// `path` is a valid C string.
#[no_mangle]
pub unsafe extern "C" fn krun_add_vsock_port2(
    ctx: u32,
    port: u32,
    path: *const c_char,
    listen: bool,
) -> i32 {
    // SAFETY: per the libkrun contract.
    let p = unsafe { text(path) };
    with_config(
        format!("add_vsock_port2({ctx}, {port}, {p:?}, {listen})"),
        |c| {
            c.vsock_ports.push(VsockPort {
                port,
                path: PathBuf::from(p),
                listen,
            });
            0
        },
    )
}

/// `krun_add_virtiofs(ctx, tag, path)`: recorded; a boot with one is refused.
///
/// # Safety
/// `tag` and `path` are valid C strings.
#[no_mangle]
pub unsafe extern "C" fn krun_add_virtiofs(
    ctx: u32,
    tag: *const c_char,
    path: *const c_char,
) -> i32 {
    // SAFETY: per the libkrun contract.
    let (t, p) = unsafe { (text(tag), text(path)) };
    with_config(format!("add_virtiofs({ctx}, {t:?}, {p:?})"), |c| {
        c.virtiofs.push((t, PathBuf::from(p)));
        0
    })
}

/// `krun_disable_implicit_vsock(ctx)`.
#[no_mangle]
pub extern "C" fn krun_disable_implicit_vsock(ctx: u32) -> i32 {
    with_config(format!("disable_implicit_vsock({ctx})"), |_| 0)
}

/// `krun_add_vsock(ctx, tsi_features)`: recorded; the guest never gets a
/// network device whatever the features (it lives in a netns with only `lo`).
#[no_mangle]
pub extern "C" fn krun_add_vsock(ctx: u32, features: u32) -> i32 {
    with_config(format!("add_vsock({ctx}, {features})"), |c| {
        c.vsock_features = Some(features);
        0
    })
}

/// `krun_set_console_output(ctx, path)`: the agent's stdout/stderr go there.
///
/// # Safety
/// `path` is a valid C string.
#[no_mangle]
pub unsafe extern "C" fn krun_set_console_output(ctx: u32, path: *const c_char) -> i32 {
    // SAFETY: per the libkrun contract.
    let p = unsafe { text(path) };
    with_config(format!("set_console_output({ctx}, {p:?})"), |c| {
        c.console_output = Some(PathBuf::from(p));
        0
    })
}

/// The directory holding this library (via `dladdr` on one of its symbols).
fn library_dir() -> Option<PathBuf> {
    // SAFETY: dladdr only reads; the address is one of our own functions.
    unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        if libc::dladdr(krun_start_enter as *const libc::c_void, &mut info) == 0
            || info.dli_fname.is_null()
        {
            return None;
        }
        let file = PathBuf::from(
            CStr::from_ptr(info.dli_fname)
                .to_string_lossy()
                .into_owned(),
        );
        file.parent().map(PathBuf::from)
    }
}

fn start(ctx: u32) -> Result<std::convert::Infallible, String> {
    let cfg = with_config(format!("start_enter({ctx})"), |c| c.clone());
    cfg.validate()?;
    let vm_dir = cfg.vm_dir().ok_or("no vm dir")?.to_path_buf();
    let work = vm_dir.join("krun-standin");
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let record = work.join(RECORD_NAME);
    let json = serde_json::to_vec_pretty(&cfg).map_err(|e| e.to_string())?;
    std::fs::write(&record, json).map_err(|e| format!("{}: {e}", record.display()))?;
    let helper = match std::env::var_os(HELPER_ENV) {
        Some(h) => PathBuf::from(h),
        None => library_dir()
            .ok_or("cannot locate libkrun.so")?
            .join(HELPER_NAME),
    };
    let c = |s: &std::ffi::OsStr| CString::new(s.as_bytes()).map_err(|e| e.to_string());
    let helper_c = c(helper.as_os_str())?;
    let args = [
        c(helper.as_os_str())?,
        CString::new("boot").unwrap(),
        c(record.as_os_str())?,
    ];
    let mut argv: Vec<*const c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    // SAFETY: valid NUL-terminated argv; execv replaces the whole process (all
    // threads), so no fork-in-a-threaded-process hazard arises.
    unsafe { libc::execv(helper_c.as_ptr(), argv.as_ptr()) };
    Err(format!(
        "exec {}: {}",
        helper.display(),
        std::io::Error::last_os_error()
    ))
}

/// `krun_start_enter(ctx)`: never returns while the "VM" runs — the process
/// becomes the boot helper's supervisor (same pid, same start time). Returns
/// a negative value, with the reason on stderr (the client's
/// `agent-startup-error.log`), when it cannot start.
#[no_mangle]
pub extern "C" fn krun_start_enter(ctx: u32) -> i32 {
    match start(ctx) {
        Ok(never) => match never {},
        Err(e) => {
            eprintln!("krun-standin: cannot start: {e}");
            -(libc::EINVAL as c_int)
        }
    }
}
