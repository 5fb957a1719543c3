//! The program's private namespaces. The child that becomes the program
//! (between `fork` and `exec`, so everything here is async-signal-safe:
//! no allocation, raw system calls only) makes a user namespace (unless
//! root) and a mount namespace, mounts a FUSE file system over every mount
//! point, hands the `/dev/fuse` descriptors to the controller over a socket
//! and only then enters the working directory (a walk into a mount waits
//! for its server).
//!
//! The mounts die with the mount namespace, that is with its last process:
//! nothing is ever mounted outside it, so no stale mount can be left.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::Error;

/// The step of the namespace setup that failed, sent to the controller as
/// one byte so it can say why and what to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Step {
    UserNamespace = 1,
    IdMaps = 2,
    MountNamespace = 3,
    Private = 4,
    OpenFuse = 5,
    Mount = 6,
    Handover = 7,
    Chdir = 8,
}

impl Step {
    fn from_byte(b: u8) -> Option<Step> {
        Some(match b {
            1 => Step::UserNamespace,
            2 => Step::IdMaps,
            3 => Step::MountNamespace,
            4 => Step::Private,
            5 => Step::OpenFuse,
            6 => Step::Mount,
            7 => Step::Handover,
            8 => Step::Chdir,
            _ => return None,
        })
    }
}

/// Everything the child needs, prepared before `fork` (it must not allocate).
pub struct Namespace {
    user_ns: bool,
    uid_map: Vec<u8>,
    gid_map: Vec<u8>,
    points: Vec<CString>,
    /// Mount options after `fd=N`.
    opts_tail: Vec<u8>,
    cwd: Option<CString>,
    child_sock: OwnedFd,
}

/// The controller's end of the handover socket.
pub struct Receiver {
    sock: OwnedFd,
    count: usize,
}

/// A socket pair of datagrams: one message carries every descriptor.
fn socket_pair() -> Result<(OwnedFd, OwnedFd), Error> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two descriptors.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if r != 0 {
        return Err(Error::Io(
            "creating the descriptor handover socket".into(),
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

impl Namespace {
    /// Prepares the setup of a child that mounts the view over `points`
    /// (absolute directories) and starts in `cwd` (a path of the view).
    pub fn prepare(points: &[Vec<u8>], cwd: Option<&Path>) -> Result<(Namespace, Receiver), Error> {
        // SAFETY: these calls cannot fail.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        let user_ns = uid != 0;
        let (child_sock, sock) = {
            let (a, b) = socket_pair()?;
            (a, b)
        };
        let cstr = |b: &[u8]| CString::new(b).map_err(|_| Error::Nul(b.to_vec()));
        let points = points
            .iter()
            .map(|p| cstr(p))
            .collect::<Result<Vec<_>, _>>()?;
        let cwd = cwd.map(|c| cstr(c.as_os_str().as_bytes())).transpose()?;
        // The ids inside are the ids outside (one each): programs keep
        // running as the user, and the attributes the server reports (real
        // owners) mean the same inside.
        let opts_tail = format!(
            ",rootmode=40000,user_id={uid},group_id={gid},allow_other,default_permissions\0"
        )
        .into_bytes();
        let count = points.len();
        Ok((
            Namespace {
                user_ns,
                uid_map: format!("{uid} {uid} 1\n").into_bytes(),
                gid_map: format!("{gid} {gid} 1\n").into_bytes(),
                points,
                opts_tail,
                cwd,
                child_sock,
            },
            Receiver { sock, count },
        ))
    }

    /// Runs in the child between `fork` and `exec`. On failure the step is
    /// sent to the controller and the error returned (the spawn fails).
    pub fn enter(&self) -> std::io::Result<()> {
        let r = self.enter_steps();
        if let Err((step, _)) = &r {
            let b = [*step as u8];
            // SAFETY: a one-byte buffer; failure only loses the reason.
            unsafe { libc::send(self.child_sock.as_raw_fd(), b.as_ptr().cast(), 1, 0) };
        }
        r.map_err(|(_, e)| e)
    }

    fn enter_steps(&self) -> Result<(), (Step, std::io::Error)> {
        let last = |s: Step| (s, std::io::Error::last_os_error());
        // SAFETY: raw system calls on buffers prepared before the fork,
        // NUL-terminated where a C string is expected.
        unsafe {
            if self.user_ns {
                if libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) != 0 {
                    return Err(last(Step::UserNamespace));
                }
                if !write_file(c"/proc/self/setgroups", b"deny")
                    || !write_file(c"/proc/self/uid_map", &self.uid_map)
                    || !write_file(c"/proc/self/gid_map", &self.gid_map)
                {
                    return Err(last(Step::IdMaps));
                }
            } else if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(last(Step::MountNamespace));
            }
            // Our mounts must not propagate back to the parent namespace.
            if libc::mount(
                c"none".as_ptr(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
            {
                return Err(last(Step::Private));
            }
            let mut fds: [RawFd; 64] = [-1; 64];
            for (i, point) in self.points.iter().enumerate() {
                // Opened here, inside the user namespace: the kernel accepts
                // a FUSE descriptor only from the mounter's namespace.
                let fd = libc::open(c"/dev/fuse".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(last(Step::OpenFuse));
                }
                fds[i] = fd;
                let mut opts = [0u8; 256];
                let mut n = 0;
                for &c in b"fd=" {
                    opts[n] = c;
                    n += 1;
                }
                let mut digits = [0u8; 12];
                let mut d = 0;
                let mut v = fd as u32;
                loop {
                    digits[d] = b'0' + (v % 10) as u8;
                    d += 1;
                    v /= 10;
                    if v == 0 {
                        break;
                    }
                }
                while d > 0 {
                    d -= 1;
                    opts[n] = digits[d];
                    n += 1;
                }
                if n + self.opts_tail.len() > opts.len() {
                    return Err((Step::Mount, std::io::Error::from_raw_os_error(libc::E2BIG)));
                }
                opts[n..n + self.opts_tail.len()].copy_from_slice(&self.opts_tail);
                if libc::mount(
                    c"usvfs".as_ptr(),
                    point.as_ptr(),
                    c"fuse.usvfs".as_ptr(),
                    libc::MS_NODEV,
                    opts.as_ptr().cast(),
                ) != 0
                {
                    return Err(last(Step::Mount));
                }
            }
            if !send_fds(self.child_sock.as_raw_fd(), &fds[..self.points.len()]) {
                return Err(last(Step::Handover));
            }
            for &fd in &fds[..self.points.len()] {
                libc::close(fd);
            }
            // Into the view: the working directory is re-entered by path so a
            // directory below a mount point is the mounted one.
            if let Some(cwd) = &self.cwd
                && libc::chdir(cwd.as_ptr()) != 0
            {
                return Err(last(Step::Chdir));
            }
        }
        Ok(())
    }

    /// The number of mounts (at most 64 per program).
    pub const MAX_POINTS: usize = 64;
}

/// Writes all of `data` to `path` with raw calls.
///
/// # Safety
/// Async-signal-safe; `path` is a valid C string.
unsafe fn write_file(path: &std::ffi::CStr, data: &[u8]) -> bool {
    // SAFETY: per the contract; the buffer is valid for its length.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return false;
        }
        let n = libc::write(fd, data.as_ptr().cast(), data.len());
        libc::close(fd);
        n == data.len() as isize
    }
}

/// Sends `fds` in one message (SCM_RIGHTS), without allocating.
fn send_fds(sock: RawFd, fds: &[RawFd]) -> bool {
    const MAX: usize = Namespace::MAX_POINTS;
    // Room for the header and MAX descriptors, aligned for cmsghdr.
    #[repr(C, align(8))]
    struct Buf([u8; 16 + MAX * 4 + 8]);
    let mut cbuf = Buf([0; 16 + MAX * 4 + 8]);
    let byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_ptr() as *mut _,
        iov_len: 1,
    };
    // SAFETY: msghdr is plain data; every pointer set below outlives the call.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        let len = libc::CMSG_SPACE((fds.len() * 4) as u32) as usize;
        msg.msg_control = cbuf.0.as_mut_ptr().cast();
        msg.msg_controllen = len;
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN((fds.len() * 4) as u32) as usize;
        std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(c).cast(), fds.len());
        libc::sendmsg(sock, &msg, 0) == 1
    }
}

impl Receiver {
    /// Waits for the child's descriptors (one per mount point, in order), or
    /// the step that failed. Call after the spawn started; the child's end
    /// must be closed in this process first so a dead child ends the wait.
    pub fn receive(&self) -> Result<Vec<OwnedFd>, Option<Step>> {
        let mut byte = [0u8; 1];
        let mut iov = libc::iovec {
            iov_base: byte.as_mut_ptr().cast(),
            iov_len: 1,
        };
        let mut cbuf = vec![0u64; 2 + self.count];
        // SAFETY: msghdr is plain data; the buffers outlive the call.
        unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = cbuf.as_mut_ptr().cast();
            msg.msg_controllen = cbuf.len() * 8;
            let n = libc::recvmsg(self.sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC);
            if n <= 0 {
                return Err(None);
            }
            let c = libc::CMSG_FIRSTHDR(&msg);
            if c.is_null() || (*c).cmsg_type != libc::SCM_RIGHTS {
                return Err(Step::from_byte(byte[0]));
            }
            let count = ((*c).cmsg_len - libc::CMSG_LEN(0) as usize) / 4;
            let data = libc::CMSG_DATA(c).cast::<RawFd>();
            Ok((0..count)
                .map(|i| OwnedFd::from_raw_fd(data.add(i).read_unaligned()))
                .collect())
        }
    }
}

impl Namespace {
    /// Closes the child's end in this process once the child has it.
    pub fn close_child_end(self) {
        drop(self.child_sock);
    }
}

/// Why a step fails and what to do, for the error message.
pub fn explain(step: Option<Step>, errno: Option<i32>) -> String {
    let e = errno.map_or(String::new(), |e| {
        format!(" ({})", std::io::Error::from_raw_os_error(e))
    });
    match step {
        Some(Step::UserNamespace) | Some(Step::IdMaps) => format!(
            "cannot create a user namespace{e}: unprivileged user namespaces are not allowed here \
             (sysctl kernel.unprivileged_userns_clone=0, user.max_user_namespaces=0, or an \
             AppArmor restriction such as Ubuntu's kernel.apparmor_restrict_unprivileged_userns=1); \
             allow them (e.g. `sudo sysctl kernel.apparmor_restrict_unprivileged_userns=0`), \
             run usvfs as root, or use --engine preload"
        ),
        Some(Step::MountNamespace) | Some(Step::Private) => format!(
            "cannot create a private mount namespace{e}: run usvfs as root or as a user allowed \
             to create user namespaces, or use --engine preload"
        ),
        Some(Step::OpenFuse) if matches!(errno, Some(libc::EACCES) | Some(libc::EPERM)) => format!(
            "cannot open /dev/fuse{e}: it is not open to this user; make it readable and writable \
             for everyone (`chmod 0666 /dev/fuse`, as distributions ship it), run usvfs as root, \
             or use --engine preload"
        ),
        Some(Step::OpenFuse) => format!(
            "cannot open /dev/fuse{e}: load the fuse module (`modprobe fuse`) and make /dev/fuse \
             readable and writable, or use --engine preload"
        ),
        Some(Step::Mount) => format!(
            "cannot mount the view (FUSE){e}: the kernel refused the mount; use --engine preload"
        ),
        Some(Step::Handover) => format!("cannot hand the FUSE descriptors over{e}"),
        Some(Step::Chdir) => format!("cannot enter the working directory in the view{e}"),
        None => format!("the program's namespace setup failed{e}"),
    }
}
