//! Entering a running program's namespaces: a controller joining a
//! mount-engine instance starts its program in the user namespace (unless
//! it is ours, as for root) and the mount namespace of a live process of
//! the instance, so the program sees the same mounts, served by the
//! controller that made them. The descriptors are opened before `fork`;
//! the child only calls `setns` and `chdir` (async-signal-safe).
//!
//! `setns` into a user namespace needs a single-threaded caller (the
//! child after `fork` is) and the namespace's capabilities, which its
//! owner (the same user) has; then the mount namespace's.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::Error;

/// What the child needs to enter the namespaces.
pub struct Join {
    user: Option<OwnedFd>,
    mnt: OwnedFd,
    cwd: CString,
    /// The child writes the failed step here (1: user, 2: mount, 3: chdir).
    failed: (OwnedFd, OwnedFd),
}

fn open_ns(pid: i32, kind: &str) -> Result<OwnedFd, Error> {
    let path = format!("/proc/{pid}/ns/{kind}");
    rustix::fs::open(
        path.as_str(),
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| Error::Io(format!("opening {path}"), e.into()))
}

impl Join {
    /// Opens the namespaces of process `pid`, checking its mount namespace
    /// is still `mnt_inode` (the pid may have exited and been reused).
    pub fn open(pid: i32, mnt_inode: u64, cwd: &Path) -> Result<Join, Error> {
        let user = open_ns(pid, "user")?;
        let mnt = open_ns(pid, "mnt")?;
        let ino = |fd: &OwnedFd| rustix::fs::fstat(fd).map(|s| s.st_ino).ok();
        if ino(&mnt) != Some(mnt_inode) {
            return Err(Error::Instance(format!(
                "the mount namespace of process {pid} ended"
            )));
        }
        let ours = open_ns(std::process::id() as i32, "user")?;
        // Our own user namespace (root, or the joiner runs inside it
        // already) cannot be entered again (EINVAL): only the mounts.
        let user = (ino(&user) != ino(&ours)).then_some(user);
        let cwd = CString::new(cwd.as_os_str().as_bytes())
            .map_err(|_| Error::Nul(cwd.as_os_str().as_bytes().to_vec()))?;
        let mut fds = [0; 2];
        // SAFETY: fds has room for the two descriptors.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
            return Err(Error::Io(
                "creating a pipe".into(),
                std::io::Error::last_os_error(),
            ));
        }
        // SAFETY: both were just created and belong to nobody else.
        let failed = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok(Join {
            user,
            mnt,
            cwd,
            failed,
        })
    }

    /// Runs in the child between `fork` and `exec`: enters the namespaces
    /// and the working directory (by path: the mounted one).
    pub fn enter(&self) -> std::io::Result<()> {
        let fail = |step: u8| {
            let e = std::io::Error::last_os_error();
            // SAFETY: a one-byte buffer; failure only loses the reason.
            unsafe { libc::write(self.failed.1.as_raw_fd(), [step].as_ptr().cast(), 1) };
            Err(e)
        };
        // SAFETY: raw system calls on descriptors and a C string prepared
        // before the fork.
        unsafe {
            if let Some(user) = &self.user
                && libc::setns(user.as_raw_fd(), libc::CLONE_NEWUSER) != 0
            {
                return fail(1);
            }
            if libc::setns(self.mnt.as_raw_fd(), libc::CLONE_NEWNS) != 0 {
                return fail(2);
            }
            if libc::chdir(self.cwd.as_ptr()) != 0 {
                return fail(3);
            }
        }
        Ok(())
    }

    /// After a failed spawn: why entering failed, or `None` when it did
    /// not (the exec itself failed). Consumes the parent's pipe ends.
    pub fn failure(self, errno: Option<i32>) -> Option<String> {
        drop(self.failed.1);
        let mut b = [0u8; 1];
        // SAFETY: reads one byte; non-blocking (the child wrote its byte
        // before it exited, if it failed here).
        let n = unsafe { libc::read(self.failed.0.as_raw_fd(), b.as_mut_ptr().cast(), 1) };
        if n != 1 {
            return None;
        }
        let e = errno.map_or(String::new(), |e| {
            format!(" ({})", std::io::Error::from_raw_os_error(e))
        });
        Some(match b[0] {
            1 => format!("cannot enter the instance's user namespace{e}"),
            2 => format!("cannot enter the instance's mount namespace{e}"),
            _ => format!(
                "cannot enter the working directory {} in the view{e}",
                self.cwd.to_string_lossy()
            ),
        })
    }
}
