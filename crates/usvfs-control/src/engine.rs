//! What each engine can run. The preload engine lives inside the program's
//! own C library calls, so it cannot see into statically linked programs
//! (they never load a shared library) nor set-id ones (the loader ignores
//! `LD_PRELOAD` for them).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::program::{ProgramError, inspect};

/// The engines of this build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Engine {
    /// `LD_PRELOAD` interposition of the C library's file functions.
    #[default]
    Preload,
}

impl Engine {
    /// Refuses a program this engine cannot show the view (exit code 125),
    /// following `#!` lines to the interpreter.
    pub fn check_program(self, phys: &Path, shown: &Path) -> Result<(), ProgramError> {
        match self {
            Engine::Preload => preload_can_run(phys, shown, 0),
        }
    }
}

fn preload_can_run(phys: &Path, shown: &Path, depth: u32) -> Result<(), ProgramError> {
    let info = inspect(phys, shown)?;
    if info.set_id {
        return Err(ProgramError::Unhookable(format!(
            "{} is set-user-ID or set-group-ID: the dynamic loader ignores LD_PRELOAD for it, so the \
             preload engine cannot show it the view; run it outside usvfs, or with the namespace engine once available",
            shown.display()
        )));
    }
    if let Some(interp) = &info.interpreter {
        if depth < 4 {
            let interp = Path::new(OsStr::from_bytes(interp.as_os_str().as_bytes()));
            return preload_can_run(interp, interp, depth + 1);
        }
        return Ok(());
    }
    if info.elf_static == Some(true) {
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
