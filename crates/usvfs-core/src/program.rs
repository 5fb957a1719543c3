//! Finding the program to start (in the view), checking that the preload
//! engine can hook it, and the command line that starts it. Shared by every
//! controller (the CLI, the Python package).

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::Snapshot;
use crate::path::{self, PathBuffer};
use crate::resolve::{LibcFs, resolve};

/// Why a program cannot be started (`env`'s exit codes: 127, 126, 125).
#[derive(Debug, thiserror::Error)]
pub enum ProgramError {
    /// Not found (127).
    #[error("{0}")]
    NotFound(String),
    /// Found but not executable (126).
    #[error("{0}")]
    NotExecutable(String),
    /// Exists and runs, but the preload engine cannot see into it (125).
    #[error("{0}")]
    Unhookable(String),
}

/// Resolves a path of the view to its physical path.
pub fn physical(snap: &Snapshot<'_>, p: &Path) -> Option<PathBuf> {
    let cwd = std::env::current_dir().ok()?;
    let n = path::normalize(p.as_os_str().as_bytes(), cwd.as_os_str().as_bytes());
    let (mut v, mut ph) = (PathBuffer::new(), PathBuffer::new());
    resolve(snap, &LibcFs, &n, true, &mut v, &mut ph).ok()?;
    Some(PathBuf::from(OsStr::from_bytes(ph.as_bytes())))
}

/// Finds `program` like `execvp`, looking up every candidate in the view.
/// Returns (virtual path, physical path).
pub fn locate(snap: &Snapshot<'_>, program: &OsStr) -> Result<(PathBuf, PathBuf), ProgramError> {
    let name = program.as_bytes();
    let shown = program.to_string_lossy().into_owned();
    let candidates: Vec<PathBuf> = if name.contains(&b'/') {
        vec![PathBuf::from(program)]
    } else {
        let p = std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/usr/bin:/bin"));
        p.as_bytes()
            .split(|&c| c == b':')
            .map(|d| {
                let mut v = if d.is_empty() {
                    b".".to_vec()
                } else {
                    d.to_vec()
                };
                v.push(b'/');
                v.extend_from_slice(name);
                PathBuf::from(OsString::from_vec(v))
            })
            .collect()
    };
    let mut non_exec = None;
    for c in candidates {
        let Some(phys) = physical(snap, &c) else {
            continue;
        };
        let Ok(meta) = std::fs::metadata(&phys) else {
            continue;
        };
        if meta.is_dir() || meta.permissions().mode() & 0o111 == 0 {
            non_exec.get_or_insert(c);
            continue;
        }
        return Ok((c, phys));
    }
    match non_exec {
        Some(c) => Err(ProgramError::NotExecutable(format!(
            "{} is not an executable file: check its permissions (chmod +x)",
            c.display()
        ))),
        None => Err(ProgramError::NotFound(format!(
            "program {shown:?} not found{}: check the name, or give its path",
            if name.contains(&b'/') { "" } else { " in PATH" }
        ))),
    }
}

/// The interpreter (and its optional argument) of a `#!` script.
fn shebang(head: &[u8]) -> Option<(PathBuf, Option<OsString>)> {
    let line = head
        .strip_prefix(b"#!")?
        .split(|&c| c == b'\n')
        .next()?
        .trim_ascii();
    let mut parts = line.splitn(2, |c| c.is_ascii_whitespace());
    let interp = parts.next().filter(|i| !i.is_empty())?;
    let arg = parts
        .next()
        .map(|a| a.trim_ascii())
        .filter(|a| !a.is_empty());
    Some((
        PathBuf::from(OsStr::from_bytes(interp)),
        arg.map(|a| OsString::from_vec(a.to_vec())),
    ))
}

/// What to execute for a program found in the view: a script whose file lives
/// in a layer runs through its interpreter with its *virtual* path, so `$0`
/// and paths relative to it stay in the view. Returns (executable, argv).
pub fn command_line(virt: &Path, phys: &Path, argv: &[OsString]) -> (PathBuf, Vec<OsString>) {
    if virt != phys {
        let mut head = [0u8; 256];
        let n = std::fs::File::open(phys)
            .and_then(|mut f| f.read(&mut head))
            .unwrap_or(0);
        if let Some((interp, arg)) = shebang(&head[..n]) {
            let mut args = vec![interp.clone().into_os_string()];
            args.extend(arg);
            let cwd = std::env::current_dir().unwrap_or_default();
            let abs = path::normalize(virt.as_os_str().as_bytes(), cwd.as_os_str().as_bytes());
            args.push(OsString::from_vec(abs));
            args.extend(argv.iter().skip(1).cloned());
            return (interp, args);
        }
    }
    (phys.to_path_buf(), argv.to_vec())
}

fn elf_is_static(bytes: &[u8]) -> Option<bool> {
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 || bytes[5] != 1 {
        return None;
    }
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]) as usize;
    let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().unwrap()) as usize;
    let (phoff, phentsize, phnum) = (u64_at(32), u16_at(54), u16_at(56));
    for i in 0..phnum {
        let o = phoff + i * phentsize;
        if o + 4 > bytes.len() {
            return None;
        }
        if u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap()) == 3 {
            return Some(false); // PT_INTERP: the dynamic loader will preload us
        }
    }
    Some(true)
}

/// Refuses programs the preload engine cannot hook: statically linked ones
/// (they never load a shared library) and set-id ones (the loader ignores
/// `LD_PRELOAD` for them). Follows `#!` to the interpreter.
pub fn check_hookable(phys: &Path, shown: &Path, depth: u32) -> Result<(), ProgramError> {
    let meta = std::fs::metadata(phys).map_err(|e| {
        ProgramError::NotFound(format!(
            "{}: {e}: check the path (for a script, its #! line names the interpreter)",
            shown.display()
        ))
    })?;
    // SAFETY: trivial getters.
    let (euid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let mode = meta.mode();
    if (mode & 0o4000 != 0 && meta.uid() != euid) || (mode & 0o2000 != 0 && meta.gid() != egid) {
        return Err(ProgramError::Unhookable(format!(
            "{} is set-user-ID or set-group-ID: the dynamic loader ignores LD_PRELOAD for it, so the \
             preload engine cannot show it the view; run it outside usvfs, or with the namespace engine once available",
            shown.display()
        )));
    }
    let mut head = vec![0u8; 64 * 1024];
    let n = std::fs::File::open(phys)
        .and_then(|mut f| f.read(&mut head))
        .map_err(|e| {
            ProgramError::NotExecutable(format!("{}: cannot read it: {e}", shown.display()))
        })?;
    head.truncate(n);
    if head.starts_with(b"#!") && depth < 4 {
        let line = head[2..]
            .split(|&c| c == b'\n')
            .next()
            .unwrap_or(b"")
            .trim_ascii();
        let interp = line
            .split(|c| c.is_ascii_whitespace())
            .next()
            .unwrap_or(b"");
        let interp = Path::new(OsStr::from_bytes(interp));
        return check_hookable(interp, interp, depth + 1);
    }
    if elf_is_static(&head) == Some(true) {
        return Err(ProgramError::Unhookable(format!(
            "{} is statically linked: it makes system calls without the C library, so the preload \
             engine cannot hook it; run it outside usvfs, or with the namespace engine once available",
            shown.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_programs_are_hookable() {
        assert!(check_hookable(Path::new("/bin/ls"), Path::new("/bin/ls"), 0).is_ok());
        let head = std::fs::read("/bin/ls").unwrap();
        assert_eq!(elf_is_static(&head), Some(false));
    }
}
