//! The environment a child needs to join the view: this library in
//! `LD_PRELOAD`, the instance directory, and the logical working directory.

use std::ffi::CStr;

use libc::c_char;

use crate::state::{self, State};
use usvfs_core::instance::ENV_INSTANCE_DIR;

pub const ENV_VCWD: &str = "USVFS_VCWD";

mod c {
    unsafe extern "C" {
        pub static mut environ: *const *const libc::c_char;
    }
}

pub fn environ() -> *const *const c_char {
    // SAFETY: reading the pointer value of the process environment.
    unsafe { c::environ }
}

pub fn getenv(name: &[u8]) -> Option<Vec<u8>> {
    let mut n = name.to_vec();
    n.push(0);
    // SAFETY: NUL-terminated name.
    let v = unsafe { libc::getenv(n.as_ptr().cast()) };
    // SAFETY: getenv returns a C string or NULL.
    (!v.is_null()).then(|| unsafe { CStr::from_ptr(v) }.to_bytes().to_vec())
}

fn key(entry: &[u8]) -> &[u8] {
    entry.split(|&c| c == b'=').next().unwrap_or(entry)
}

/// The instance's exec rules (blacklist and forced libraries), read at each
/// exec so a controller can change them while the instance runs.
pub fn exec_rules(st: &State) -> usvfs_core::instance::ExecRules {
    let dir = std::path::Path::new(
        <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(st.instance_dir.to_bytes()),
    );
    usvfs_core::instance::Instance::from_dir(dir).read_exec_rules()
}

/// `LD_PRELOAD` value with this library first (or removed when `join` is
/// false), then `extra` libraries, then what was there.
fn preload_value(
    st: &State,
    current: Option<&[u8]>,
    join: bool,
    extra: &[&[u8]],
) -> Option<Vec<u8>> {
    let lib = st.lib_path.to_bytes();
    let others: Vec<&[u8]> = current
        .unwrap_or(b"")
        .split(|&c| c == b':' || c == b' ')
        .filter(|s| !s.is_empty() && *s != lib && !extra.contains(s))
        .collect();
    let mut v: Vec<u8> = Vec::new();
    if join {
        v.extend_from_slice(lib);
    }
    for o in extra.iter().copied().chain(others) {
        if !v.is_empty() {
            v.push(b':');
        }
        v.extend_from_slice(o);
    }
    (!v.is_empty()).then_some(v)
}

/// The child's environment: `envp` with our variables set (`join`) or removed.
pub fn for_child(st: &State, envp: Vec<Vec<u8>>, join: bool) -> Vec<Vec<u8>> {
    for_child_with(st, envp, join, &[])
}

/// Like [`for_child`], also preloading `extra` libraries.
pub fn for_child_with(st: &State, envp: Vec<Vec<u8>>, join: bool, extra: &[&[u8]]) -> Vec<Vec<u8>> {
    let mut preload: Option<Vec<u8>> = None;
    let mut out: Vec<Vec<u8>> = Vec::with_capacity(envp.len() + 3);
    for e in envp {
        match key(&e) {
            b"LD_PRELOAD" => preload = Some(e[b"LD_PRELOAD=".len()..].to_vec()),
            k if k == ENV_INSTANCE_DIR.as_bytes() || k == ENV_VCWD.as_bytes() => {}
            _ => out.push(e),
        }
    }
    if let Some(v) = preload_value(st, preload.as_deref(), join, extra) {
        let mut e = b"LD_PRELOAD=".to_vec();
        e.extend(v);
        out.push(e);
    }
    if join {
        let mut e = format!("{ENV_INSTANCE_DIR}=").into_bytes();
        e.extend_from_slice(st.instance_dir.to_bytes());
        out.push(e);
        if let Some(c) = state::cwd()
            && c.is_virtual
        {
            let mut e = format!("{ENV_VCWD}=").into_bytes();
            e.extend_from_slice(&c.path);
            out.push(e);
        }
    }
    out
}

fn setenv(k: &[u8], v: &[u8]) {
    let (mut k, mut v) = (k.to_vec(), v.to_vec());
    k.push(0);
    v.push(0);
    // SAFETY: NUL-terminated strings.
    unsafe { libc::setenv(k.as_ptr().cast(), v.as_ptr().cast(), 1) };
}

/// For `system` and `popen`, whose shell inherits `environ` inside libc: put
/// our variables back if the program removed them.
pub fn ensure_own_environ(st: &State) {
    let cur = getenv(b"LD_PRELOAD");
    if let Some(v) = preload_value(st, cur.as_deref(), true, &[])
        && cur.as_deref() != Some(&v[..])
    {
        setenv(b"LD_PRELOAD", &v);
    }
    setenv(ENV_INSTANCE_DIR.as_bytes(), st.instance_dir.to_bytes());
    match state::cwd() {
        Some(c) if c.is_virtual => setenv(ENV_VCWD.as_bytes(), &c.path),
        _ => {
            // SAFETY: NUL-terminated name.
            unsafe { libc::unsetenv(c"USVFS_VCWD".as_ptr()) };
        }
    }
}
