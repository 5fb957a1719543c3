//! The environment a child needs to join the view, built by the shared
//! launcher (`usvfs_view::launch_env`) from this process's state: this library
//! in `LD_PRELOAD`, the instance directory, the logical working directory.

use std::ffi::CStr;

use libc::c_char;

use crate::state::{self, State};
use usvfs_view::instance_dir::InstanceDir;
use usvfs_view::launch_env::{self, ENV_INSTANCE_DIR, ENV_VCWD, Join};
use usvfs_view::semantics::exec::ExecRules;

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

/// The instance's exec rules (blacklist and forced libraries), read at each
/// exec so a controller can change them while the instance runs.
pub fn exec_rules(st: &State) -> ExecRules {
    InstanceDir::from_bytes(st.instance_dir.to_bytes()).read_exec_rules()
}

/// The virtual working directory to hand down, when it is virtual.
fn vcwd() -> Option<&'static [u8]> {
    state::cwd().filter(|c| c.is_virtual).map(|c| &*c.path)
}

/// The child's environment: `envp` with our variables set (`join`) or
/// removed, and `extra` libraries preloaded.
pub fn for_child(st: &State, envp: Vec<Vec<u8>>, join: bool, extra: &[&[u8]]) -> Vec<Vec<u8>> {
    let j = Join {
        instance_dir: st.instance_dir.to_bytes(),
        vcwd: vcwd(),
    };
    launch_env::child_env(envp, st.lib_path.to_bytes(), join.then_some(&j), extra)
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
    if let Some(v) = launch_env::preload_value(st.lib_path.to_bytes(), cur.as_deref(), true, &[])
        && cur.as_deref() != Some(&v[..])
    {
        setenv(b"LD_PRELOAD", &v);
    }
    setenv(ENV_INSTANCE_DIR.as_bytes(), st.instance_dir.to_bytes());
    match vcwd() {
        Some(c) => setenv(ENV_VCWD.as_bytes(), c),
        None => {
            // SAFETY: NUL-terminated name.
            unsafe { libc::unsetenv(c"USVFS_VCWD".as_ptr()) };
        }
    }
}
