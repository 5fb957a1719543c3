//! The program inspector: finding the program to start (in the view), what
//! it is (script, static or dynamic ELF, set-id), and the command line that
//! starts it. Shared by every controller (the CLI, the Python package); what
//! an engine can run is decided in [`crate::engine`].

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::Snapshot;
use crate::path::{self, PathBuffer};
use crate::resolve::resolve;
use usvfs_view::SysFs;
use usvfs_view::program::Unfollowable;
use usvfs_view::semantics::exec;

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
    resolve(snap, &SysFs, &n, true, &mut v, &mut ph).ok()?;
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
        exec::path_candidates(name, p.as_bytes())
            .map(|c| PathBuf::from(OsString::from_vec(c)))
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
    let (interp, arg) = exec::shebang(head)?;
    Some((
        PathBuf::from(OsString::from_vec(interp)),
        arg.map(OsString::from_vec),
    ))
}

/// What to execute for a program found in the view, by the exec semantics
/// the engines use: a script whose file lives in a layer runs through its
/// interpreter with its *virtual* path, so `$0` and paths relative to it stay
/// in the view. Returns (executable, argv).
pub fn command_line(virt: &Path, phys: &Path, argv: &[OsString]) -> (PathBuf, Vec<OsString>) {
    let located = if virt != phys {
        let cwd = std::env::current_dir().unwrap_or_default();
        exec::Located::Physical {
            phys: phys.as_os_str().as_bytes().to_vec(),
            virt: path::normalize(virt.as_os_str().as_bytes(), cwd.as_os_str().as_bytes()),
        }
    } else {
        exec::Located::AsGiven
    };
    let mut head = |p: &[u8]| {
        let mut buf = vec![0u8; 256];
        let n = std::fs::File::open(OsStr::from_bytes(p))
            .and_then(|mut f| f.read(&mut buf))
            .ok()?;
        buf.truncate(n);
        Some(buf)
    };
    let args: Vec<Vec<u8>> = argv.iter().map(|a| a.as_bytes().to_vec()).collect();
    // The controller starts the program itself: no blacklist applies, and an
    // interpreter is taken as its `#!` line names it.
    let plan = exec::plan(
        phys.as_os_str().as_bytes(),
        located,
        args,
        &exec::ExecRules::default(),
        &|_| false,
        &mut |_| Ok(exec::Located::AsGiven),
        &mut head,
    );
    match plan {
        Ok(p) => (
            PathBuf::from(OsString::from_vec(p.program)),
            p.argv.into_iter().map(OsString::from_vec).collect(),
        ),
        Err(_) => (phys.to_path_buf(), argv.to_vec()),
    }
}

/// What a program file is, as far as engines care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramInfo {
    /// Set-user-ID or set-group-ID for the caller (the loader then ignores
    /// `LD_PRELOAD`).
    pub set_id: bool,
    /// The `#!` interpreter, for scripts.
    pub interpreter: Option<PathBuf>,
    /// `Some(true)`: a statically linked ELF; `Some(false)`: a dynamic one;
    /// `None`: not a 64-bit little-endian ELF.
    pub elf_static: Option<bool>,
    /// Why the preload engine cannot follow it, if it cannot (the check the
    /// preload engine makes at each exec, `usvfs_view::program`).
    pub unfollowable: Option<Unfollowable>,
}

/// Reads what `phys` is. Errors are (126/127-style) [`ProgramError`]s that
/// name `shown`.
pub fn inspect(phys: &Path, shown: &Path) -> Result<ProgramInfo, ProgramError> {
    let mut f = std::fs::File::open(phys).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ProgramError::NotFound(format!(
            "{}: {e}: check the path (for a script, its #! line names the interpreter)",
            shown.display()
        )),
        _ => ProgramError::NotExecutable(format!("{}: cannot read it: {e}", shown.display())),
    })?;
    let mut head = vec![0u8; 256];
    let n = f.read(&mut head).map_err(|e| {
        ProgramError::NotExecutable(format!("{}: cannot read it: {e}", shown.display()))
    })?;
    head.truncate(n);
    use std::os::fd::AsFd;
    let unfollowable = usvfs_view::program::unfollowable_fd(f.as_fd(), phys.as_os_str().as_bytes());
    Ok(ProgramInfo {
        set_id: unfollowable == Some(Unfollowable::SetId),
        interpreter: shebang(&head).map(|(i, _)| i),
        elf_static: usvfs_view::program::elf_info(f.as_fd()).map(|i| i.is_static),
        unfollowable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inspects_a_dynamic_program() {
        let info = inspect(Path::new("/bin/ls"), Path::new("/bin/ls")).unwrap();
        assert_eq!(info.elf_static, Some(false));
        assert!(!info.set_id);
        assert_eq!(info.unfollowable, None);
    }
}
