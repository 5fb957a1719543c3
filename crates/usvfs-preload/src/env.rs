//! The environment a child needs to join the view, built by the shared
//! launcher (`usvfs_view::launch_env`) from this process's state: this library
//! in `LD_PRELOAD`, the instance directory, the logical working directory.

use std::ffi::CStr;

use libc::c_char;

use crate::state::{self, State};
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
/// exec so a controller can change them while the instance runs. Usually
/// there are none: then this is one system call on a path built on the
/// stack (an exec runs in a freshly forked child, where every heap page
/// written is a copy).
pub fn exec_rules(st: &State) -> ExecRules {
    // The path was made when the state was loaded: no path buffer on the
    // stack of a forked child (see `hooks::exec::Prepared`).
    let Ok(fd) = rustix::fs::openat(
        rustix::fs::CWD,
        st.exec_rules_path.as_c_str(),
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    ) else {
        return ExecRules::default();
    };
    let mut bytes = Vec::new();
    match std::io::Read::read_to_end(&mut std::fs::File::from(fd), &mut bytes) {
        Ok(_) => ExecRules::decode(&bytes),
        Err(_) => ExecRules::default(),
    }
}

/// The virtual working directory to hand down, when it is virtual.
fn vcwd() -> Option<&'static [u8]> {
    state::cwd().filter(|c| c.is_virtual).map(|c| &*c.path)
}

/// The child's environment: `envp` with our variables set (`join`) or
/// removed, `extra` libraries preloaded, and `hold` (the `USVFS_HOLD`
/// value) when this process's hold stays open across the exec. The caller's entries are
/// handed on as they are (see `launch_env::child_env_borrowed`).
pub fn for_child<'a>(
    st: &State,
    envp: Vec<&'a [u8]>,
    join: bool,
    extra: &[&[u8]],
    hold: Option<&[u8]>,
) -> Vec<std::borrow::Cow<'a, [u8]>> {
    let fd = getenv(launch_env::ENV_INSTANCE_FD.as_bytes());
    // The path the launcher gave (this process may have reached the
    // instance through the descriptor instead): children try it first too.
    let given = fd
        .as_ref()
        .and_then(|_| getenv(ENV_INSTANCE_DIR.as_bytes()));
    let j = Join {
        instance_dir: given.as_deref().unwrap_or(st.instance_dir.to_bytes()),
        instance_fd: fd.as_deref(),
        vcwd: vcwd(),
        hold,
    };
    launch_env::child_env_borrowed(envp, st.lib_path.to_bytes(), join.then_some(&j), extra)
}

/// `v` as one single-quoted shell word.
fn quoted(out: &mut Vec<u8>, v: &[u8]) {
    out.push(b'\'');
    for &c in v {
        if c == b'\'' {
            out.extend_from_slice(b"'\\''");
        } else {
            out.push(c);
        }
    }
    out.push(b'\'');
}

/// For `system` and `popen`, whose shell inherits `environ` inside libc:
/// when the program changed our variables, the command to run instead, which
/// sets them in the shell and starts the caller's command in a shell of the
/// view (`$0` stays `sh`). The caller's own environment is never touched
/// (another thread may be reading it). `None`: the environment is right.
pub fn shell_command(st: &State, cmd: &[u8]) -> Option<Vec<u8>> {
    let cur = getenv(b"LD_PRELOAD");
    let preload = launch_env::preload_value(st.lib_path.to_bytes(), cur.as_deref(), true, &[])?;
    let vcwd = vcwd();
    if cur.as_deref() == Some(&preload[..])
        && getenv(ENV_INSTANCE_DIR.as_bytes()).as_deref() == Some(st.instance_dir.to_bytes())
        && getenv(ENV_VCWD.as_bytes()).as_deref() == vcwd
    {
        return None;
    }
    let mut s = b"export LD_PRELOAD=".to_vec();
    quoted(&mut s, &preload);
    s.extend_from_slice(b" ");
    s.extend_from_slice(ENV_INSTANCE_DIR.as_bytes());
    s.push(b'=');
    quoted(&mut s, st.instance_dir.to_bytes());
    match vcwd {
        Some(c) => {
            s.extend_from_slice(b" ");
            s.extend_from_slice(ENV_VCWD.as_bytes());
            s.push(b'=');
            quoted(&mut s, c);
            s.extend_from_slice(b"; ");
        }
        None => {
            s.extend_from_slice(b"; unset ");
            s.extend_from_slice(ENV_VCWD.as_bytes());
            s.extend_from_slice(b"; ");
        }
    }
    s.extend_from_slice(b"exec /bin/sh -c ");
    quoted(&mut s, cmd);
    s.extend_from_slice(b" sh");
    Some(s)
}
