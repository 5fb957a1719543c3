//! Starting a program in a running mount-engine instance: in the namespaces
//! of a live process of the instance, so it sees the mounts the controller
//! that made them serves; this controller only waits for its program.

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result};
use usvfs_control::Instance;
use usvfs_control::program::ProgramError;

pub struct JoinLaunch<'a> {
    pub instance: &'a Instance,
    pub argv: &'a [std::ffi::OsString],
    /// The view's working directory for the program (a virtual path).
    pub cwd: PathBuf,
    pub signals: &'a crate::signals::Forwarder,
}

/// Runs the program in one of the instance's mount namespaces and returns
/// its exit code (128+N when killed by signal N). `Ok(None)`: the instance
/// has no live namespace (its processes all ended): start one instead.
pub fn run_joined(l: JoinLaunch<'_>) -> Result<Option<i32>> {
    // A namespace can end between finding its process and opening it: try
    // the next one found.
    let join = loop {
        let Some((pid, mnt)) = l.instance.namespace_member() else {
            return Ok(None);
        };
        match usvfs_mount::join::Join::open(pid, mnt, &l.cwd) {
            Ok(j) => break j,
            Err(e) => {
                tracing::debug!(pid, error = %e, "namespace gone, looking again");
                if usvfs_control::mount_ns::ns_inode(pid, "mnt") == Some(mnt) {
                    // Still there, yet we cannot open it: say why.
                    return Err(e).context(format!("joining instance {:?}", l.instance.name));
                }
            }
        }
    };
    let join = std::sync::Arc::new(join);
    let mut cmd = Command::new(&l.argv[0]);
    cmd.args(&l.argv[1..]);
    // SAFETY: getpid cannot fail.
    let parent = unsafe { libc::getpid() };
    let child_join = join.clone();
    // SAFETY: child_setup and Join::enter make async-signal-safe calls only.
    unsafe {
        cmd.pre_exec(move || crate::signals::child_setup(parent));
        cmd.pre_exec(move || child_join.enter());
    }
    let spawned = l.signals.spawn(|| {
        let c = cmd.spawn()?;
        let pid = c.id() as libc::pid_t;
        Ok((c, pid))
    });
    drop(cmd);
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            let why = std::sync::Arc::try_unwrap(join)
                .ok()
                .and_then(|j| j.failure(e.raw_os_error()));
            if let Some(why) = why {
                return Err(anyhow::anyhow!(
                    "instance {:?}: {why}: start it again with its mapping",
                    l.instance.name
                ));
            }
            let shown = l.argv[0].to_string_lossy().into_owned();
            return Err(match e.kind() {
                std::io::ErrorKind::NotFound => anyhow::Error::new(ProgramError::NotFound(
                    format!("{shown}: not found in the view"),
                )),
                std::io::ErrorKind::PermissionDenied => {
                    anyhow::Error::new(ProgramError::NotExecutable(format!("{shown}: {e}")))
                }
                _ => anyhow::Error::new(e).context(format!("cannot start {shown}")),
            });
        }
    };
    tracing::debug!(
        pid = child.id(),
        "started in the instance's mount namespace"
    );
    l.signals.wait_exit(child.id() as libc::pid_t);
    let status = child.wait().context("waiting for the program")?;
    Ok(Some(
        status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
    ))
}
