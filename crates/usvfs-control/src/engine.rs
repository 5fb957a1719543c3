//! What each engine can run. The preload engine lives inside the program's
//! own C library calls, so it cannot see into statically linked programs
//! (they never load a shared library), Go programs (raw system calls), nor
//! set-id ones or ones with file capabilities (the loader ignores
//! `LD_PRELOAD` for them). The check is `usvfs_view::program`'s, the one
//! the preload engine makes when a hooked process starts a program.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::program::{ProgramError, inspect};
use usvfs_view::program::Unfollowable;

/// The engines of this build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Engine {
    /// `LD_PRELOAD` interposition of the C library's file functions.
    #[default]
    Preload,
    /// FUSE mounts over the destinations in a private mount namespace
    /// (`usvfs-mount`): it follows every program.
    Mount,
}

impl Engine {
    /// The name `--engine`, profiles and instances use.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Preload => "preload",
            Engine::Mount => "mount",
        }
    }

    /// Whether this engine can serve `mapping` as given: the mount engine
    /// shows the view to every program in its namespace, so it refuses a
    /// blacklist rather than ignore it.
    pub fn check_mapping(self, mapping: &crate::mapping::Mapping) -> crate::Result<()> {
        if self == Engine::Mount && !mapping.blacklist.is_empty() {
            let names: Vec<_> = mapping
                .blacklist
                .iter()
                .map(|b| b.to_string_lossy())
                .collect();
            return Err(crate::Error::BlacklistWithMount {
                names: names.join(", "),
            });
        }
        Ok(())
    }

    /// The engine of a name (`preload`, `mount`).
    pub fn from_name(name: &str) -> Option<Engine> {
        match name {
            "preload" => Some(Engine::Preload),
            "mount" => Some(Engine::Mount),
            _ => None,
        }
    }

    /// Refuses a program this engine cannot show the view (exit code 125),
    /// following `#!` lines to the interpreter.
    pub fn check_program(self, phys: &Path, shown: &Path) -> Result<(), ProgramError> {
        match self {
            Engine::Preload => preload_can_run(phys, shown, 0),
            // The kernel shows the view to whatever runs: only a program
            // that cannot run at all is refused.
            Engine::Mount => inspect(phys, shown).map(|_| ()),
        }
    }
}

fn preload_can_run(phys: &Path, shown: &Path, depth: u32) -> Result<(), ProgramError> {
    let info = inspect(phys, shown)?;
    if let Some(interp) = &info.interpreter {
        if depth < 4 {
            let interp = Path::new(OsStr::from_bytes(interp.as_os_str().as_bytes()));
            return preload_can_run(interp, interp, depth + 1);
        }
        return Ok(());
    }
    let why = match info.unfollowable {
        None => return Ok(()),
        Some(Unfollowable::SetId) => {
            "is set-user-ID or set-group-ID: the dynamic loader ignores LD_PRELOAD for it, so the \
             preload engine cannot show it the view"
        }
        Some(Unfollowable::Capabilities) => {
            "has file capabilities: the dynamic loader ignores LD_PRELOAD for it, so the preload \
             engine cannot show it the view"
        }
        Some(Unfollowable::Static) => {
            "is statically linked: it makes system calls without the C library, so the preload \
             engine cannot hook it"
        }
        Some(Unfollowable::Go) => {
            "is a Go program: it makes system calls without the C library, so the preload engine \
             cannot hook it"
        }
        Some(Unfollowable::Bits32) => {
            "is a 32-bit program: the dynamic loader ignores the 64-bit preload library, so the \
             preload engine cannot show it the view"
        }
    };
    Err(ProgramError::Unhookable(format!(
        "{} {why}; run it with the mount engine (`usvfs run --engine mount`), or outside usvfs",
        shown.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_programs_and_scripts_run_under_preload() {
        let ls = Path::new("/bin/ls");
        assert!(Engine::Preload.check_program(ls, ls).is_ok());
        let t = tempfile::tempdir().unwrap();
        let script = t.path().join("s.sh");
        std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
        assert!(Engine::Preload.check_program(&script, &script).is_ok());
        let bad = t.path().join("bad.sh");
        std::fs::write(&bad, "#!/no/such/interp\n").unwrap();
        assert!(matches!(
            Engine::Preload.check_program(&bad, &bad),
            Err(ProgramError::NotFound(_))
        ));
    }
}
