//! The environment a program needs to run in an instance with the preload
//! engine: the engine's library first in `LD_PRELOAD`, the instance directory,
//! and the virtual working directory. One builder for every launcher: the
//! CLI, the Python package and the preload engine's exec hooks.

use std::borrow::Cow;

/// Environment variable naming the instance directory of a hooked process.
pub const ENV_INSTANCE_DIR: &str = "USVFS_INSTANCE_DIR";
/// The virtual working directory a parent hands down (when it differs from
/// the physical one).
pub const ENV_VCWD: &str = "USVFS_VCWD";
/// `N:DEV:INO`: descriptor N, inherited from the launcher, is the instance
/// directory (device DEV, inode INO). A process that cannot reach the
/// directory by its path (a container's private `/tmp`, another mount
/// namespace, a chroot) reaches it through `/proc/self/fd/N`.
pub const ENV_INSTANCE_FD: &str = "USVFS_INSTANCE_FD";

/// `N:DEV:INO`: descriptor N, left open across the exec that started this
/// process, is the parent's hold on the instance (its `procs` directory,
/// device DEV, inode INO). Kept until the process has taken its own, so the
/// instance is held without a gap from the parent's exec to the child's
/// start (a last other process leaving then cannot remove it).
pub const ENV_HOLD: &str = "USVFS_HOLD";

/// The value of [`ENV_INSTANCE_FD`] (and of [`ENV_HOLD`]).
pub fn instance_fd_spec(fd: i32, dev: u64, ino: u64) -> Vec<u8> {
    format!("{fd}:{dev}:{ino}").into_bytes()
}

/// Parses an [`ENV_INSTANCE_FD`] (or [`ENV_HOLD`]) value.
pub fn parse_instance_fd(v: &[u8]) -> Option<(i32, u64, u64)> {
    let s = std::str::from_utf8(v).ok()?;
    let mut it = s.split(':');
    let fd = it.next()?.parse().ok()?;
    let dev = it.next()?.parse().ok()?;
    let ino = it.next()?.parse().ok()?;
    it.next().is_none().then_some((fd, dev, ino))
}

/// The instance a child joins.
pub struct Join<'a> {
    pub instance_dir: &'a [u8],
    /// The [`ENV_INSTANCE_FD`] value to hand down, if any.
    pub instance_fd: Option<&'a [u8]>,
    /// The virtual working directory to report, when it is virtual.
    pub vcwd: Option<&'a [u8]>,
    /// The [`ENV_HOLD`] value, when the launcher's hold stays open across
    /// the exec.
    pub hold: Option<&'a [u8]>,
}

fn key(entry: &[u8]) -> &[u8] {
    entry.split(|&c| c == b'=').next().unwrap_or(entry)
}

/// `LD_PRELOAD`'s new value: `lib` first (or removed when not joining), then
/// `extra` libraries, then the others that were there, each once.
pub fn preload_value(
    lib: &[u8],
    current: Option<&[u8]>,
    join: bool,
    extra: &[&[u8]],
) -> Option<Vec<u8>> {
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

/// The child's environment (`KEY=VALUE` entries): `envp` with the engine
/// library `lib` first in `LD_PRELOAD` and our variables set when `join` is
/// given, or both removed when the child starts outside the view; `extra`
/// libraries are preloaded either way.
pub fn child_env(
    envp: impl IntoIterator<Item = Vec<u8>>,
    lib: &[u8],
    join: Option<&Join<'_>>,
    extra: &[&[u8]],
) -> Vec<Vec<u8>> {
    let envp: Vec<Vec<u8>> = envp.into_iter().collect();
    child_env_borrowed(envp.iter().map(Vec::as_slice), lib, join, extra)
        .into_iter()
        .map(Cow::into_owned)
        .collect()
}

/// [`child_env`] without copying the caller's entries: every entry kept is
/// the very slice given (`Cow::Borrowed`, so a preload engine can hand the
/// program's own C strings on), only entries of ours are new.
pub fn child_env_borrowed<'a>(
    envp: impl IntoIterator<Item = &'a [u8]>,
    lib: &[u8],
    join: Option<&Join<'_>>,
    extra: &[&[u8]],
) -> Vec<Cow<'a, [u8]>> {
    let mut preload: Option<&[u8]> = None;
    let envp = envp.into_iter();
    // Our variables on top: one allocation (an exec's child copies every
    // heap page it writes).
    let mut out: Vec<Cow<'a, [u8]>> = Vec::with_capacity(envp.size_hint().0 + 4);
    for e in envp {
        match key(e) {
            b"LD_PRELOAD" => preload = Some(&e[b"LD_PRELOAD=".len()..]),
            k if k == ENV_INSTANCE_DIR.as_bytes()
                || k == ENV_VCWD.as_bytes()
                || k == ENV_INSTANCE_FD.as_bytes()
                || k == ENV_HOLD.as_bytes() => {}
            _ => out.push(Cow::Borrowed(e)),
        }
    }
    let var = |name: &str, value: &[u8]| {
        let mut e = Vec::with_capacity(name.len() + 2 + value.len());
        e.extend_from_slice(name.as_bytes());
        e.push(b'=');
        e.extend_from_slice(value);
        Cow::Owned(e)
    };
    if let Some(v) = preload_value(lib, preload, join.is_some(), extra) {
        out.push(var("LD_PRELOAD", &v));
    }
    if let Some(j) = join {
        out.push(var(ENV_INSTANCE_DIR, j.instance_dir));
        if let Some(v) = j.instance_fd {
            out.push(var(ENV_INSTANCE_FD, v));
        }
        if let Some(v) = j.vcwd {
            out.push(var(ENV_VCWD, v));
        }
        if let Some(v) = j.hold {
            out.push(var(ENV_HOLD, v));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(v: &[&str]) -> Vec<Vec<u8>> {
        v.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn joins_with_library_first_once() {
        let j = Join {
            instance_dir: b"/run/i",
            instance_fd: Some(b"901:5:77"),
            vcwd: Some(b"/game/data"),
            hold: Some(b"860:5:78"),
        };
        let out = child_env(
            env(&[
                "A=1",
                "LD_PRELOAD=/x.so /l/usvfs.so",
                "USVFS_VCWD=/old",
                "USVFS_INSTANCE_DIR=/old",
                "USVFS_INSTANCE_FD=3:1:1",
                "USVFS_HOLD=861:1:1",
            ]),
            b"/l/usvfs.so",
            Some(&j),
            &[b"/force.so"],
        );
        assert_eq!(
            out,
            env(&[
                "A=1",
                "LD_PRELOAD=/l/usvfs.so:/force.so:/x.so",
                "USVFS_INSTANCE_DIR=/run/i",
                "USVFS_INSTANCE_FD=901:5:77",
                "USVFS_VCWD=/game/data",
                "USVFS_HOLD=860:5:78",
            ])
        );
        assert_eq!(parse_instance_fd(b"901:5:77"), Some((901, 5, 77)));
        assert_eq!(parse_instance_fd(b"901:5"), None);
    }

    #[test]
    fn leaving_removes_our_variables() {
        let out = child_env(
            env(&[
                "LD_PRELOAD=/l/usvfs.so",
                "USVFS_INSTANCE_DIR=/run/i",
                "USVFS_HOLD=860:5:78",
                "B=2",
            ]),
            b"/l/usvfs.so",
            None,
            &[],
        );
        assert_eq!(out, env(&["B=2"]));
    }
}
