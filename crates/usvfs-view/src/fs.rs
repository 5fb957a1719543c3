//! The physical file system as the semantics see it: a small trait with one
//! implementation on raw system calls ([`SysFs`], through `rustix`, which never
//! goes through the C library, so an engine's own calls never re-enter its
//! hooks and never touch `errno`; the one exception, `realpath(3)`, calls
//! the function an engine sets with [`set_realpath`]) and an in-memory fake ([`crate::fake::FakeFs`])
//! for unit tests. Paths are absolute physical paths, as bytes.

use crate::path::PathBuffer;

/// An `errno` value.
pub type Errno = i32;

/// What kind of file a physical entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Dir,
    File,
    Symlink,
    Other,
}

impl FileKind {
    /// The `d_type` a directory listing reports for this kind.
    pub fn d_type(self) -> u8 {
        match self {
            FileKind::Dir => libc::DT_DIR,
            FileKind::File => libc::DT_REG,
            FileKind::Symlink => libc::DT_LNK,
            FileKind::Other => libc::DT_UNKNOWN,
        }
    }

    /// The index/journal kind code (`index::format::KIND_*`).
    pub fn code(self) -> u8 {
        use crate::index::format::{KIND_DIR, KIND_FILE, KIND_OTHER, KIND_SYMLINK};
        match self {
            FileKind::Dir => KIND_DIR,
            FileKind::File => KIND_FILE,
            FileKind::Symlink => KIND_SYMLINK,
            FileKind::Other => KIND_OTHER,
        }
    }

    fn from_mode(mode: u32) -> Self {
        match mode & libc::S_IFMT {
            libc::S_IFDIR => FileKind::Dir,
            libc::S_IFREG => FileKind::File,
            libc::S_IFLNK => FileKind::Symlink,
            _ => FileKind::Other,
        }
    }
}

/// The attributes of a physical entry the semantics decide on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub kind: FileKind,
    /// `st_mode` (type and permission bits).
    pub mode: u32,
    pub ino: u64,
    pub dev: u64,
    /// `d_type` as a listing shows it (finer than `kind` for devices etc.).
    pub d_type: u8,
}

impl Meta {
    pub fn is_dir(&self) -> bool {
        self.kind == FileKind::Dir
    }
}

/// Physical file-system access. Every method takes absolute physical paths.
pub trait Fs {
    fn lstat(&self, path: &[u8]) -> Result<Meta, Errno>;
    fn stat(&self, path: &[u8]) -> Result<Meta, Errno>;
    /// Reads the target of symlink `path` into `out`; returns its length.
    fn readlink(&self, path: &[u8], out: &mut [u8]) -> Result<usize, Errno>;
    /// Canonicalizes a physical path (symlinks followed, it must exist).
    fn realpath(&self, path: &[u8], out: &mut PathBuffer) -> Result<(), Errno>;
    fn mkdir(&self, path: &[u8], mode: u32) -> Result<(), Errno>;
    fn rmdir(&self, path: &[u8]) -> Result<(), Errno>;
    fn unlink(&self, path: &[u8]) -> Result<(), Errno>;
    /// `renameat2` with its flags (`RENAME_NOREPLACE`, `RENAME_EXCHANGE`).
    fn rename(&self, from: &[u8], to: &[u8], flags: u32) -> Result<(), Errno>;
    fn symlink(&self, target: &[u8], at: &[u8]) -> Result<(), Errno>;
    /// Calls `each(name, d_type, ino)` for every entry but `.` and `..`.
    fn read_dir(&self, path: &[u8], each: &mut dyn FnMut(&[u8], u8, u64)) -> Result<(), Errno>;
    /// Copies a regular file's data, permissions and times to a new file `to`
    /// (which must not exist), durably.
    fn copy_file(&self, from: &[u8], to: &[u8]) -> Result<(), Errno>;
    /// The process the calls are made for (its pid; 0: unknown). A path a
    /// process deleted or renamed away and creates again goes back to its
    /// place.
    fn caller(&self) -> u32 {
        0
    }
}

/// The real file system, on raw system calls.
#[derive(Debug, Clone, Copy, Default)]
pub struct SysFs;

fn errno(e: rustix::io::Errno) -> Errno {
    e.raw_os_error()
}

fn meta(st: &rustix::fs::Stat) -> Meta {
    let mode = st.st_mode;
    let kind = FileKind::from_mode(mode);
    let d_type = match mode & libc::S_IFMT {
        libc::S_IFIFO => libc::DT_FIFO,
        libc::S_IFSOCK => libc::DT_SOCK,
        libc::S_IFCHR => libc::DT_CHR,
        libc::S_IFBLK => libc::DT_BLK,
        _ => kind.d_type(),
    };
    Meta {
        kind,
        mode,
        ino: st.st_ino,
        dev: st.st_dev,
        d_type,
    }
}

impl Fs for SysFs {
    /// This process (an engine in the process making the call).
    fn caller(&self) -> u32 {
        std::process::id()
    }

    fn lstat(&self, path: &[u8]) -> Result<Meta, Errno> {
        use rustix::fs::{AtFlags, CWD, statat};
        statat(CWD, path, AtFlags::SYMLINK_NOFOLLOW)
            .map(|s| meta(&s))
            .map_err(errno)
    }

    fn stat(&self, path: &[u8]) -> Result<Meta, Errno> {
        use rustix::fs::{AtFlags, CWD, statat};
        statat(CWD, path, AtFlags::empty())
            .map(|s| meta(&s))
            .map_err(errno)
    }

    fn readlink(&self, path: &[u8], out: &mut [u8]) -> Result<usize, Errno> {
        use rustix::fs::{CWD, readlinkat_raw};
        readlinkat_raw(CWD, path, &mut *out)
            .map(|n: usize| n)
            .map_err(errno)
    }

    /// Answers from a small per-thread cache for up to a second: the
    /// resolver canonicalizes a symlinked prefix (Wine's `dosdevices/z:`)
    /// on every call through it, which costs a `readlink` per component.
    fn realpath(&self, path: &[u8], out: &mut PathBuffer) -> Result<(), Errno> {
        realpath_cache::lookup(path, out).unwrap_or_else(|| {
            let r = realpath_uncached(path, out);
            realpath_cache::store(path, r.map(|()| out.as_bytes()));
            r
        })
    }

    fn mkdir(&self, path: &[u8], mode: u32) -> Result<(), Errno> {
        use rustix::fs::{CWD, Mode, mkdirat};
        mkdirat(CWD, path, Mode::from_raw_mode(mode)).map_err(errno)
    }

    fn rmdir(&self, path: &[u8]) -> Result<(), Errno> {
        use rustix::fs::{AtFlags, CWD, unlinkat};
        unlinkat(CWD, path, AtFlags::REMOVEDIR).map_err(errno)
    }

    fn unlink(&self, path: &[u8]) -> Result<(), Errno> {
        use rustix::fs::{AtFlags, CWD, unlinkat};
        unlinkat(CWD, path, AtFlags::empty()).map_err(errno)
    }

    fn rename(&self, from: &[u8], to: &[u8], flags: u32) -> Result<(), Errno> {
        use rustix::fs::{CWD, RenameFlags, renameat_with};
        renameat_with(CWD, from, CWD, to, RenameFlags::from_bits_retain(flags)).map_err(errno)
    }

    fn symlink(&self, target: &[u8], at: &[u8]) -> Result<(), Errno> {
        use rustix::fs::{CWD, symlinkat};
        symlinkat(target, CWD, at).map_err(errno)
    }

    fn read_dir(&self, path: &[u8], each: &mut dyn FnMut(&[u8], u8, u64)) -> Result<(), Errno> {
        use rustix::fs::{CWD, Mode, OFlags, RawDir, openat};
        let fd = openat(
            CWD,
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno)?;
        let mut buf: Vec<std::mem::MaybeUninit<u8>> = Vec::with_capacity(32 * 1024);
        buf.resize(32 * 1024, std::mem::MaybeUninit::uninit());
        let mut dir = RawDir::new(&fd, &mut buf);
        while let Some(e) = dir.next() {
            let e = e.map_err(errno)?;
            let name = e.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            // d_type is the file-type nibble of st_mode; rustix reports an
            // unknown type as all of S_IFMT, which must stay DT_UNKNOWN.
            let d_type = match e.file_type() {
                rustix::fs::FileType::Unknown => libc::DT_UNKNOWN,
                t => (t.as_raw_mode() >> 12) as u8,
            };
            each(name, d_type, e.ino());
        }
        Ok(())
    }

    fn copy_file(&self, from: &[u8], to: &[u8]) -> Result<(), Errno> {
        use rustix::fs::{AtFlags, CWD, Mode, OFlags, Timespec, Timestamps, fstat, openat};
        let ifd =
            openat(CWD, from, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).map_err(errno)?;
        let st = fstat(&ifd).map_err(errno)?;
        let perm = Mode::from_raw_mode(st.st_mode & 0o7777);
        let ofd = openat(
            CWD,
            to,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
            perm,
        )
        .map_err(errno)?;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = rustix::io::read(&ifd, &mut buf).map_err(errno)?;
            if n == 0 {
                break;
            }
            let mut off = 0;
            while off < n {
                off += rustix::io::write(&ofd, &buf[off..n]).map_err(errno)?;
            }
        }
        let times = Timestamps {
            last_access: Timespec {
                tv_sec: st.st_atime,
                tv_nsec: st.st_atime_nsec as _,
            },
            last_modification: Timespec {
                tv_sec: st.st_mtime,
                tv_nsec: st.st_mtime_nsec as _,
            },
        };
        let _ = rustix::fs::utimensat(&ofd, c"", &times, AtFlags::EMPTY_PATH);
        let _ = rustix::fs::fchmod(&ofd, perm);
        rustix::fs::fsync(&ofd).map_err(errno)
    }
}

/// The C signature of `realpath(3)`.
pub type RealpathFn =
    unsafe extern "C" fn(*const libc::c_char, *mut libc::c_char) -> *mut libc::c_char;

/// The `realpath(3)` [`SysFs`] calls, when set (0: the C library's by name).
static REALPATH: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Makes [`SysFs`] call `f` for `realpath(3)`. An engine that exports a
/// `realpath` of its own (an interposing library) passes the original here:
/// a call by name from inside it would bind to its own hook again.
pub fn set_realpath(f: RealpathFn) {
    REALPATH.store(f as usize, std::sync::atomic::Ordering::Release);
}

/// `realpath(3)`. Heap buffers: engines call this on small thread stacks.
fn realpath_uncached(path: &[u8], out: &mut PathBuffer) -> Result<(), Errno> {
    let p = std::ffi::CString::new(path).map_err(|_| libc::EINVAL)?;
    let mut buf = vec![0u8; crate::path::PATH_MAX + 1];
    let f = match REALPATH.load(std::sync::atomic::Ordering::Acquire) {
        0 => libc::realpath as RealpathFn,
        // SAFETY: only `set_realpath` stores a non-zero value: a `RealpathFn`.
        a => unsafe { std::mem::transmute::<usize, RealpathFn>(a) },
    };
    // SAFETY: `p` is NUL-terminated and `buf` holds PATH_MAX+1 bytes, the
    // most realpath(3) writes.
    let r = unsafe { f(p.as_ptr(), buf.as_mut_ptr().cast()) };
    if r.is_null() {
        return Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO));
    }
    let len = buf.iter().position(|&c| c == 0).unwrap_or(0);
    out.set(&buf[..len]).map_err(|_| libc::ENAMETOOLONG)
}

/// Recent `realpath` answers of this thread (successes and failures), each
/// trusted for [`realpath_cache::TTL_NS`]. Per thread: no lock, no sharing.
mod realpath_cache {
    use super::Errno;
    use crate::path::PathBuffer;
    use std::cell::RefCell;

    const SLOTS: usize = 8;
    pub const TTL_NS: u64 = 1_000_000_000;

    struct Slot {
        key: Vec<u8>,
        answer: Result<Vec<u8>, Errno>,
        at: u64,
    }

    thread_local! {
        static CACHE: RefCell<(Vec<Slot>, usize)> = const { RefCell::new((Vec::new(), 0)) };
    }

    fn now_ns() -> u64 {
        let mut t = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: t is a valid timespec to fill in; the coarse clock is
        // served by the vDSO (no system call).
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut t) };
        t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
    }

    /// A fresh cached answer for `path`, written to `out`.
    pub fn lookup(path: &[u8], out: &mut PathBuffer) -> Option<Result<(), Errno>> {
        let now = now_ns();
        CACHE
            .try_with(|c| {
                let c = c.try_borrow().ok()?;
                let s = c.0.iter().find(|s| s.key == path)?;
                if now.saturating_sub(s.at) > TTL_NS {
                    return None;
                }
                Some(match &s.answer {
                    Ok(p) => out.set(p).map_err(|_| libc::ENAMETOOLONG),
                    Err(e) => Err(*e),
                })
            })
            .ok()
            .flatten()
    }

    /// Remembers the answer for `path`, replacing the oldest entry.
    pub fn store(path: &[u8], answer: Result<&[u8], Errno>) {
        let at = now_ns();
        let _ = CACHE.try_with(|c| {
            let Ok(mut c) = c.try_borrow_mut() else {
                return;
            };
            let slot = Slot {
                key: path.to_vec(),
                answer: answer.map(|p| p.to_vec()),
                at,
            };
            let (slots, next) = &mut *c;
            if let Some(s) = slots.iter_mut().find(|s| s.key == path) {
                *s = slot;
            } else if slots.len() < SLOTS {
                slots.push(slot);
            } else {
                slots[*next] = slot;
                *next = (*next + 1) % SLOTS;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    /// The real file system reports the kernel's types: listing types match
    /// `lstat`'s, and errors are the raw errno.
    #[test]
    fn sysfs_reports_kinds_and_errno() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        std::fs::write(root.join("f"), b"data").unwrap();
        std::fs::create_dir(root.join("d")).unwrap();
        std::os::unix::fs::symlink("f", root.join("l")).unwrap();
        let b = |n: &str| root.join(n).as_os_str().as_bytes().to_vec();
        let fs = SysFs;
        let mut seen = Vec::new();
        fs.read_dir(&b(""), &mut |n, t, _| seen.push((n.to_vec(), t)))
            .unwrap();
        seen.sort();
        assert_eq!(
            seen,
            [
                (b"d".to_vec(), libc::DT_DIR),
                (b"f".to_vec(), libc::DT_REG),
                (b"l".to_vec(), libc::DT_LNK)
            ]
        );
        assert_eq!(fs.lstat(&b("l")).unwrap().kind, FileKind::Symlink);
        assert_eq!(fs.stat(&b("l")).unwrap().kind, FileKind::File);
        let mut buf = [0u8; 16];
        assert_eq!(fs.readlink(&b("l"), &mut buf), Ok(1));
        assert_eq!(fs.lstat(&b("missing")), Err(libc::ENOENT));
        assert_eq!(fs.rmdir(&b("f")), Err(libc::ENOTDIR));
        fs.copy_file(&b("f"), &b("g")).unwrap();
        assert_eq!(std::fs::read(root.join("g")).unwrap(), b"data");
        assert_eq!(fs.copy_file(&b("f"), &b("g")), Err(libc::EEXIST));
    }
}
