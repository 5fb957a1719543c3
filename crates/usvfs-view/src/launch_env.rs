//! The environment a program needs to run in an instance with the preload
//! engine: the engine's library first in `LD_PRELOAD`, the instance directory,
//! and the virtual working directory. One builder for every launcher: the
//! CLI, the Python package and the preload engine's exec hooks.

/// Environment variable naming the instance directory of a hooked process.
pub const ENV_INSTANCE_DIR: &str = "USVFS_INSTANCE_DIR";
/// The virtual working directory a parent hands down (when it differs from
/// the physical one).
pub const ENV_VCWD: &str = "USVFS_VCWD";

/// The instance a child joins.
pub struct Join<'a> {
    pub instance_dir: &'a [u8],
    /// The virtual working directory to report, when it is virtual.
    pub vcwd: Option<&'a [u8]>,
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
    let mut preload: Option<Vec<u8>> = None;
    let mut out: Vec<Vec<u8>> = Vec::new();
    for e in envp {
        match key(&e) {
            b"LD_PRELOAD" => preload = Some(e[b"LD_PRELOAD=".len()..].to_vec()),
            k if k == ENV_INSTANCE_DIR.as_bytes() || k == ENV_VCWD.as_bytes() => {}
            _ => out.push(e),
        }
    }
    if let Some(v) = preload_value(lib, preload.as_deref(), join.is_some(), extra) {
        let mut e = b"LD_PRELOAD=".to_vec();
        e.extend(v);
        out.push(e);
    }
    if let Some(j) = join {
        let mut e = format!("{ENV_INSTANCE_DIR}=").into_bytes();
        e.extend_from_slice(j.instance_dir);
        out.push(e);
        if let Some(v) = j.vcwd {
            let mut e = format!("{ENV_VCWD}=").into_bytes();
            e.extend_from_slice(v);
            out.push(e);
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
            vcwd: Some(b"/game/data"),
        };
        let out = child_env(
            env(&[
                "A=1",
                "LD_PRELOAD=/x.so /l/usvfs.so",
                "USVFS_VCWD=/old",
                "USVFS_INSTANCE_DIR=/old",
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
                "USVFS_VCWD=/game/data",
            ])
        );
    }

    #[test]
    fn leaving_removes_our_variables() {
        let out = child_env(
            env(&["LD_PRELOAD=/l/usvfs.so", "USVFS_INSTANCE_DIR=/run/i", "B=2"]),
            b"/l/usvfs.so",
            None,
            &[],
        );
        assert_eq!(out, env(&["B=2"]));
    }
}
