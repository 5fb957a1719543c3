//! The FUSE file system: kernel requests on inodes become `View` calls on
//! virtual paths. The server runs in the controller, outside the program's
//! mount namespace, so every physical path the semantics choose (a layer,
//! the create target, the destination's own real contents) is the real disk
//! as it is: no descriptor to the covered directory is needed.
//!
//! Inode numbers are ours: one per virtual path, kept for the server's life
//! (a rename moves the path of the inode and of everything below it).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    BackingId, Errno as FErrno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, InitFlags, KernelConfig, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite,
    ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use rustix::fs::{AtFlags, CWD, Mode, OFlags, Stat};
use usvfs_view::View;
use usvfs_view::fs::{Errno, FileKind, Fs, Meta, SysFs};
use usvfs_view::path::{self, PathBuffer};
use usvfs_view::semantics::{Change, Probe};
use usvfs_view::semantics::{Listing, Resolved};
use usvfs_view::source_events::SourceChange;

use crate::descriptors::Descriptors;
use crate::fast_hash::FastMap;
use crate::state::Loaded;

/// How long the kernel may keep entries, attributes and misses. The view
/// changes through this server (the kernel updates its caches itself), by
/// the source monitor (which invalidates what it reports, see
/// [`Invalidator`]) or from outside unseen (contents edited in a source
/// nobody monitors, a preload-engine process of the same instance): a
/// minute bounds how stale that can look, and is long enough that a
/// program walking or reading the same files again within it asks nothing.
const TTL: Duration = Duration::from_secs(60);

/// How opens are served (`USVFS_MOUNT_OPENS`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Opens {
    /// No `OPEN`/`RELEASE` (answered `ENOSYS` once): one descriptor per
    /// inode serves every open of it, and pages stay cached across opens.
    Stateless,
    /// A descriptor per open; data through the server.
    PerOpen,
    /// A descriptor per open; reads, writes and `mmap` go straight to the
    /// physical file when the kernel allows FUSE passthrough (root).
    Passthrough,
}

impl Opens {
    /// `USVFS_MOUNT_OPENS=stateless|per-open|passthrough`, default stateless.
    pub fn from_env() -> Opens {
        match std::env::var_os("USVFS_MOUNT_OPENS").as_deref() {
            Some(v) if v == "per-open" => Opens::PerOpen,
            Some(v) if v == "passthrough" => Opens::Passthrough,
            Some(v) if v != "stateless" => {
                tracing::warn!(value = ?v, "USVFS_MOUNT_OPENS: expected stateless, per-open or passthrough; using stateless");
                Opens::Stateless
            }
            _ => Opens::Stateless,
        }
    }
}

/// `USVFS_MOUNT_XATTRS=off` turns extended attributes off (anything else,
/// or unset: on).
fn xattrs_from_env() -> bool {
    match std::env::var_os("USVFS_MOUNT_XATTRS").as_deref() {
        Some(v) if v == "off" => false,
        Some(v) if v != "on" => {
            tracing::warn!(value = ?v, "USVFS_MOUNT_XATTRS: expected on or off; using on");
            true
        }
        _ => true,
    }
}

/// The physical file system on behalf of the process that made a request:
/// the semantics put a path a process deleted and creates again back in its
/// place, by pid.
struct Caller(u32);

impl Fs for Caller {
    fn lstat(&self, p: &[u8]) -> Result<Meta, Errno> {
        SysFs.lstat(p)
    }
    fn stat(&self, p: &[u8]) -> Result<Meta, Errno> {
        SysFs.stat(p)
    }
    fn readlink(&self, p: &[u8], out: &mut [u8]) -> Result<usize, Errno> {
        SysFs.readlink(p, out)
    }
    fn realpath(&self, p: &[u8], out: &mut PathBuffer) -> Result<(), Errno> {
        SysFs.realpath(p, out)
    }
    fn mkdir(&self, p: &[u8], mode: u32) -> Result<(), Errno> {
        SysFs.mkdir(p, mode)
    }
    fn rmdir(&self, p: &[u8]) -> Result<(), Errno> {
        SysFs.rmdir(p)
    }
    fn unlink(&self, p: &[u8]) -> Result<(), Errno> {
        SysFs.unlink(p)
    }
    fn rename(&self, from: &[u8], to: &[u8], flags: u32) -> Result<(), Errno> {
        SysFs.rename(from, to, flags)
    }
    fn symlink(&self, target: &[u8], at: &[u8]) -> Result<(), Errno> {
        SysFs.symlink(target, at)
    }
    fn read_dir(&self, p: &[u8], each: &mut dyn FnMut(&[u8], u8, u64)) -> Result<(), Errno> {
        SysFs.read_dir(p, each)
    }
    fn copy_file(&self, from: &[u8], to: &[u8]) -> Result<(), Errno> {
        SysFs.copy_file(from, to)
    }
    fn caller(&self) -> u32 {
        self.0
    }
}

/// Node ids: one per virtual path for the server's life. In a
/// case-insensitive view a path spelled two ways is one file, so it is keyed
/// by its folded form and both spellings get the same node id (the kernel
/// then keeps one dentry per directory, renamed to the latest spelling).
#[derive(Default)]
struct Inodes {
    paths: Vec<Vec<u8>>,
    by_path: FastMap<Vec<u8>, u64>,
    fold: bool,
}

impl Inodes {
    /// The map key of `virt`: itself, or folded name by name.
    fn key<'a>(&self, virt: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        if !self.fold {
            return std::borrow::Cow::Borrowed(virt);
        }
        let mut k = Vec::with_capacity(virt.len() + 8);
        for (n, name) in virt.split(|&b| b == b'/').enumerate() {
            if n > 0 {
                k.push(b'/');
            }
            k.extend(usvfs_view::fold::folded(name));
        }
        std::borrow::Cow::Owned(k)
    }

    fn known(&self, virt: &[u8]) -> Option<u64> {
        self.by_path.get(&*self.key(virt)).copied()
    }

    fn ino(&mut self, virt: &[u8]) -> u64 {
        let key = self.key(virt);
        if let Some(&i) = self.by_path.get(&*key) {
            return i;
        }
        let key = key.into_owned();
        self.paths.push(virt.to_vec());
        let i = self.paths.len() as u64;
        self.by_path.insert(key, i);
        i
    }

    /// `virt` is gone from the view: a new entry there gets a new inode
    /// (the kernel may still hold the old one, open or cached, and one node
    /// id must never name a file and then a directory).
    fn removed(&mut self, virt: &[u8]) {
        let key = self.key(virt).into_owned();
        if let Some(gone) = self.by_path.remove(&key) {
            self.paths[gone as usize - 1] = b"\0usvfs-removed".to_vec();
        }
    }

    /// `old` (and everything below it) is now `new`; returns the inodes
    /// moved.
    fn moved(&mut self, old: &[u8], new: &[u8]) -> Vec<u64> {
        let old_key = self.key(old).into_owned();
        let below: Vec<(Vec<u8>, u64)> = self
            .by_path
            .iter()
            .filter(|(p, _)| path::strip_prefix(p, &old_key).is_some())
            .map(|(p, &i)| (p.clone(), i))
            .collect();
        let mut moved = Vec::with_capacity(below.len());
        for (p, i) in below {
            self.by_path.remove(&p);
            // The stored spelling's part below `old` (folding keeps the
            // number of names, so it is the part after as many names).
            let stored = &self.paths[i as usize - 1];
            let depth = old.split(|&b| b == b'/').count();
            let rest_at = stored
                .iter()
                .enumerate()
                .filter(|&(_, &b)| b == b'/')
                .map(|(n, _)| n)
                .nth(depth - 1)
                .unwrap_or(stored.len());
            let mut q = new.to_vec();
            q.extend_from_slice(&stored[rest_at..]);
            let key = self.key(&q).into_owned();
            self.paths[i as usize - 1] = q;
            self.by_path.insert(key, i);
            moved.push(i);
        }
        moved
    }
}

enum Handle {
    /// An open file, and the kernel's passthrough reference to it when reads
    /// and writes bypass this server (held until release: dropping it
    /// closes the kernel's reference).
    File(
        OwnedFd,
        #[allow(dead_code)] Option<Arc<BackingId>>,
        /// The inode it was opened as.
        u64,
    ),
    Dir(Listing),
}

/// One mount point's file system.
pub struct MountFs {
    root: Vec<u8>,
    state: &'static crate::state::Shared,
    opens: Opens,
    inodes: Arc<Mutex<Inodes>>,
    /// Stateless opens' descriptors, by inode.
    descs: Arc<Descriptors>,
    /// Stateless directory reads: the listing a read from offset 0 took, for
    /// the reads that continue it (dropped at its end).
    dirs: Mutex<FastMap<u64, Arc<Listing>>>,
    /// Per-open handles (and files made by `create`, which always has one).
    handles: Mutex<HashMap<u64, Arc<Handle>>>,
    next_fh: AtomicU64,
    /// Reads and writes go straight to the physical file (FUSE passthrough,
    /// Linux 6.9+, needs CAP_SYS_ADMIN in the initial user namespace).
    passthrough: AtomicBool,
    /// Extended attributes are served (`USVFS_MOUNT_XATTRS=off`: every
    /// xattr call is answered `ENOSYS` once, so the kernel stops asking and
    /// callers get `EOPNOTSUPP`; the kernel caches no xattrs for FUSE, and
    /// Wine asks for `user.DOSATTRIB` twice per file it lists).
    xattrs: bool,
    /// How long the kernel may keep a name (and the attributes that come
    /// with it): [`TTL`], or nothing in a case-insensitive view, where the
    /// kernel caches each spelling as its own name and no change made
    /// through one spelling (or by the monitor) would reach the others.
    entry_ttl: Duration,
    /// One backing reference per inode: the kernel refuses a second one for
    /// an inode while files are open on the first.
    backing: Mutex<HashMap<u64, Weak<BackingId>>>,
}

fn err(e: Errno) -> FErrno {
    FErrno::from_i32(e)
}

fn io_errno(e: rustix::io::Errno) -> Errno {
    e.raw_os_error()
}

fn time(sec: i64, nsec: i64) -> SystemTime {
    if sec >= 0 {
        UNIX_EPOCH + Duration::new(sec as u64, nsec as u32)
    } else {
        UNIX_EPOCH - Duration::from_secs(sec.unsigned_abs())
    }
}

fn file_type(mode: u32) -> FileType {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => FileType::Directory,
        libc::S_IFLNK => FileType::Symlink,
        libc::S_IFIFO => FileType::NamedPipe,
        libc::S_IFCHR => FileType::CharDevice,
        libc::S_IFBLK => FileType::BlockDevice,
        libc::S_IFSOCK => FileType::Socket,
        _ => FileType::RegularFile,
    }
}

fn dtype_kind(d: u8) -> FileType {
    match d {
        libc::DT_DIR => FileType::Directory,
        libc::DT_LNK => FileType::Symlink,
        libc::DT_FIFO => FileType::NamedPipe,
        libc::DT_CHR => FileType::CharDevice,
        libc::DT_BLK => FileType::BlockDevice,
        libc::DT_SOCK => FileType::Socket,
        _ => FileType::RegularFile,
    }
}

fn attr(ino: u64, st: &Stat) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size: st.st_size as u64,
        blocks: st.st_blocks as u64,
        atime: time(st.st_atime, st.st_atime_nsec as i64),
        mtime: time(st.st_mtime, st.st_mtime_nsec as i64),
        ctime: time(st.st_ctime, st.st_ctime_nsec as i64),
        crtime: UNIX_EPOCH,
        kind: file_type(st.st_mode),
        perm: (st.st_mode & 0o7777) as u16,
        nlink: st.st_nlink as u32,
        uid: st.st_uid,
        gid: st.st_gid,
        rdev: st.st_rdev as u32,
        blksize: st.st_blksize as u32,
        flags: 0,
    }
}

fn lstat(p: &[u8]) -> Result<Stat, Errno> {
    rustix::fs::statat(CWD, p, AtFlags::SYMLINK_NOFOLLOW).map_err(io_errno)
}

/// Physical directories opened once for the `lstat`s of one directory
/// read: the kernel then walks one component per entry instead of the
/// whole path (the walk dominated the server's time).
#[derive(Default)]
struct ParentDirs(Vec<(Vec<u8>, Option<OwnedFd>)>);

impl ParentDirs {
    /// At most this many (a merged directory draws from a few layers).
    const MAX: usize = 32;

    fn lstat(&mut self, phys: &[u8]) -> Result<Stat, Errno> {
        let Some(i) = phys.iter().rposition(|&c| c == b'/') else {
            return lstat(phys);
        };
        let (dir, name) = (&phys[..i.max(1)], &phys[i + 1..]);
        if name.is_empty() || name == b"." || name == b".." {
            return lstat(phys);
        }
        let j = match self.0.iter().position(|(d, _)| d == dir) {
            Some(j) => j,
            None if self.0.len() < Self::MAX => {
                let fd = rustix::fs::openat(
                    CWD,
                    dir,
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .ok();
                self.0.push((dir.to_vec(), fd));
                self.0.len() - 1
            }
            None => return lstat(phys),
        };
        match &self.0[j].1 {
            Some(fd) => rustix::fs::statat(fd, name, AtFlags::SYMLINK_NOFOLLOW).map_err(io_errno),
            None => lstat(phys),
        }
    }
}

fn open_flags(flags: i32) -> OFlags {
    // The kernel handled O_CREAT/O_EXCL (lookup + create); the rest is the
    // program's, applied to the physical file.
    let keep = libc::O_ACCMODE
        | libc::O_APPEND
        | libc::O_TRUNC
        | libc::O_SYNC
        | libc::O_DSYNC
        | libc::O_NOATIME
        | libc::O_DIRECT;
    OFlags::from_bits_retain((flags & keep) as u32) | OFlags::CLOEXEC | OFlags::NOFOLLOW
}

impl MountFs {
    pub fn new(root: Vec<u8>, state: &'static crate::state::Shared, opens: Opens) -> MountFs {
        // Sized for the index's paths (up to 65,536, a few MiB): a first
        // walk of a view that size never rehashes.
        let n = state.snapshot().node_count().min(1 << 16);
        let fold = state.snapshot().case_insensitive();
        let mut inodes = Inodes {
            paths: Vec::with_capacity(n),
            by_path: FastMap::with_capacity_and_hasher(n, Default::default()),
            fold,
        };
        inodes.ino(&root);
        MountFs {
            root,
            state,
            opens,
            inodes: Arc::new(Mutex::new(inodes)),
            descs: Arc::new(Descriptors::default()),
            dirs: Mutex::new(FastMap::default()),
            handles: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            passthrough: AtomicBool::new(false),
            xattrs: xattrs_from_env(),
            entry_ttl: if fold { Duration::ZERO } else { TTL },
            backing: Mutex::new(HashMap::new()),
        }
    }

    fn path(&self, ino: INodeNo) -> Result<Vec<u8>, Errno> {
        let i = self.inodes.lock().unwrap_or_else(|e| e.into_inner());
        i.paths.get(ino.0 as usize - 1).cloned().ok_or(libc::ESTALE)
    }

    fn child(&self, parent: INodeNo, name: &OsStr) -> Result<Vec<u8>, Errno> {
        let mut p = PathBuffer::from_bytes(&self.path(parent)?).map_err(|_| libc::ENAMETOOLONG)?;
        p.push_component(name.as_bytes())
            .map_err(|_| libc::ENAMETOOLONG)?;
        Ok(p.as_bytes().to_vec())
    }

    fn ino(&self, virt: &[u8]) -> u64 {
        self.inodes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .ino(virt)
    }

    fn with_view<T>(&self, req: &Request, f: impl FnOnce(&View<'_>) -> T) -> T {
        let loaded: &Loaded = self.state.get();
        let fs = Caller(req.pid());
        let v = View {
            snap: &loaded.snap,
            journal: loaded.journal.as_ref(),
            fs: &fs,
        };
        f(&v)
    }

    /// The physical path of virtual `virt` (the last component not followed).
    fn phys(&self, req: &Request, virt: &[u8]) -> Result<Vec<u8>, Errno> {
        self.with_phys(req, virt, |p| Ok(p.to_vec()))
    }

    /// Calls `f` with the physical path of virtual `virt` (the last
    /// component not followed), resolved in this thread's buffers (no
    /// allocation per request). `f` must not resolve again.
    fn with_phys<T>(
        &self,
        req: &Request,
        virt: &[u8],
        f: impl FnOnce(&[u8]) -> Result<T, Errno>,
    ) -> Result<T, Errno> {
        thread_local! {
            static RESOLVED: std::cell::RefCell<Box<Resolved>> =
                std::cell::RefCell::new(Resolved::boxed());
        }
        RESOLVED.with_borrow_mut(|r| {
            self.with_view(req, |v| v.resolve(virt, false, r))?;
            f(r.phys.as_bytes())
        })
    }

    /// Attributes of `virt`, with our inode number.
    fn getattr_virt(&self, req: &Request, virt: &[u8]) -> Result<FileAttr, Errno> {
        self.getattr_in(req, virt, None)
    }

    /// [`MountFs::getattr_virt`], `lstat` relative to the physical parent
    /// directories `parents` holds when given (a listing's entries share a
    /// few; for one name, opening its parent would cost more).
    fn getattr_in(
        &self,
        req: &Request,
        virt: &[u8],
        parents: Option<&mut ParentDirs>,
    ) -> Result<FileAttr, Errno> {
        let st = self.with_phys(req, virt, |p| match parents {
            Some(d) => d.lstat(p),
            None => lstat(p),
        })?;
        let ino = self.ino(virt);
        if st.st_mode & libc::S_IFMT == libc::S_IFREG {
            self.descs.check(ino, (st.st_dev, st.st_ino));
        }
        Ok(attr(ino, &st))
    }

    fn entry(&self, req: &Request, virt: &[u8], reply: ReplyEntry) {
        match self.getattr_virt(req, virt) {
            Ok(a) => reply.entry(&self.entry_ttl, &a, Generation(0)),
            Err(e) => reply.error(err(e)),
        }
    }

    /// Like [`MountFs::entry`], for a lookup: a missing name is cached as
    /// missing for the TTL too (node id 0), so repeated misses cost nothing.
    fn lookup_entry(&self, req: &Request, virt: &[u8], reply: ReplyEntry) {
        match self.getattr_virt(req, virt) {
            Ok(a) => reply.entry(&self.entry_ttl, &a, Generation(0)),
            Err(libc::ENOENT) => {
                // SAFETY: Stat is plain data; all zeros is a valid value.
                let st: Stat = unsafe { std::mem::zeroed() };
                reply.entry(&self.entry_ttl, &attr(0, &st), Generation(0))
            }
            Err(e) => reply.error(err(e)),
        }
    }

    fn forget_path(&self, virt: &[u8]) {
        self.inodes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .removed(virt);
    }

    fn add_handle(&self, h: Handle) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(fh, Arc::new(h));
        fh
    }

    fn handle(&self, fh: FileHandle) -> Result<Arc<Handle>, Errno> {
        self.handles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&fh.0)
            .cloned()
            .ok_or(libc::EBADF)
    }

    fn file(&self, fh: FileHandle) -> Result<Arc<Handle>, Errno> {
        let h = self.handle(fh)?;
        match *h {
            Handle::File(..) => Ok(h),
            Handle::Dir(_) => Err(libc::EISDIR),
        }
    }

    /// Creates entry `virt` where the semantics place it; `make` creates it
    /// at a physical path. Returns what `make` returned.
    fn create_at<T>(
        &self,
        req: &Request,
        virt: &[u8],
        kind: FileKind,
        make: impl FnOnce(&[u8]) -> Result<T, Errno>,
    ) -> Result<T, Errno> {
        self.with_view(req, |v| match v.probe(virt, false, kind) {
            Probe::Outside => make(virt),
            Probe::Fail(e) => Err(e),
            Probe::Exists(_) => Err(libc::EEXIST),
            Probe::New(place) => match make(place.loc.as_bytes()) {
                Ok(t) => {
                    place.commit(v, kind);
                    Ok(t)
                }
                Err(e) => {
                    place.abort(v);
                    Err(e)
                }
            },
        })
    }

    /// The passthrough reference for inode `ino` opened as `fd`: the one
    /// already in use for the inode, else a new one (`None`: passthrough is
    /// off, or the kernel refused it, which turns it off).
    fn backing_for(
        &self,
        ino: u64,
        fd: &OwnedFd,
        open: impl FnOnce(&OwnedFd) -> std::io::Result<BackingId>,
    ) -> Option<Arc<BackingId>> {
        if !self.passthrough.load(Ordering::Relaxed) {
            return None;
        }
        let mut map = self.backing.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = map.get(&ino).and_then(Weak::upgrade) {
            return Some(b);
        }
        match open(fd) {
            Ok(b) => {
                let b = Arc::new(b);
                map.insert(ino, Arc::downgrade(&b));
                Some(b)
            }
            Err(e) => {
                tracing::info!(error = %e, "FUSE passthrough refused: reads and writes go through the server");
                self.passthrough.store(false, Ordering::Relaxed);
                None
            }
        }
    }

    /// Opens inode `ino`'s physical file for the descriptor table:
    /// read-only, or read-write when `write` (write-only when reading is
    /// refused). A path that left the view cannot be reopened.
    fn open_ino(&self, req: &Request, ino: u64, write: bool) -> Result<OwnedFd, Errno> {
        let virt = self.path(INodeNo(ino))?;
        if virt.starts_with(b"\0") {
            return Err(libc::EBADF);
        }
        let phys = self.phys(req, &virt)?;
        open_phys(&phys, write)
    }

    /// The descriptor for a read or write on `ino` with handle `fh`: the
    /// handle's own (per-open, `create`), else the inode's (stateless).
    fn data_fd(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        write: bool,
    ) -> Result<Fd, Errno> {
        if fh.0 != 0 {
            return Ok(Fd::Handle(self.file(fh)?));
        }
        self.descs
            .get(ino.0, write, |w| self.open_ino(req, ino.0, w))
            .map(Fd::Table)
    }

    /// `virt` (a regular file the kernel knows) is about to leave the view:
    /// a program may still have it open, and stateless opens serve it from
    /// the descriptor table, so one is opened now and kept until the kernel
    /// forgets the inode.
    fn pin_before_removal(
        &self,
        req: &Request,
        virt: &[u8],
    ) -> Option<(u64, Option<(OwnedFd, bool)>)> {
        if self.opens != Opens::Stateless {
            return None;
        }
        let ino = self
            .inodes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .known(virt)?;
        let phys = self.phys(req, virt).ok()?;
        let st = lstat(&phys).ok()?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Some((ino, None));
        }
        let fd = open_phys(&phys, true)
            .map(|f| (f, true))
            .or_else(|_| open_phys(&phys, false).map(|f| (f, false)))
            .ok();
        Some((ino, fd))
    }

    fn pin(&self, pinned: Option<(u64, Option<(OwnedFd, bool)>)>) {
        if let Some((ino, fd)) = pinned {
            self.descs.pin(ino, fd);
        }
    }

    /// The listing of directory `ino`, as getdents64 on one descriptor sees
    /// one directory state.
    fn take_listing(&self, req: &Request, ino: INodeNo) -> Result<Listing, Errno> {
        let virt = self.path(ino)?;
        self.with_view(req, |v| {
            let r = v.resolve_boxed(&virt, true)?;
            let m = SysFs.stat(r.phys.as_bytes());
            if !v.is_merged_dir(r.res.node) {
                match m {
                    Ok(m) if !m.is_dir() => return Err(libc::ENOTDIR),
                    Err(e) => return Err(e),
                    Ok(_) => {}
                }
            }
            Ok(v.listing(r.res.node, r.virt.as_bytes(), r.phys.as_bytes(), ino.0))
        })
    }

    /// Calls `f` with the listing a directory read continues: the open
    /// handle's (per-open), else (stateless) a new one for a read from
    /// offset 0, kept for the reads that follow until one reaches the end.
    fn with_listing<T>(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        f: impl FnOnce(&Listing) -> T,
    ) -> Result<T, Errno> {
        if fh.0 != 0 {
            let h = self.handle(fh)?;
            let Handle::Dir(l) = &*h else {
                return Err(libc::ENOTDIR);
            };
            return Ok(f(l));
        }
        let dirs = || self.dirs.lock().unwrap_or_else(|e| e.into_inner());
        let kept = if offset == 0 {
            None
        } else {
            dirs().get(&ino.0).cloned()
        };
        let l = match kept {
            Some(l) => l,
            None => {
                let l = Arc::new(self.take_listing(req, ino)?);
                dirs().insert(ino.0, l.clone());
                l
            }
        };
        if offset as usize >= l.entries.len() {
            dirs().remove(&ino.0);
        }
        Ok(f(&l))
    }

    fn fill_dir(
        &self,
        l: &Listing,
        ino: INodeNo,
        dir: &[u8],
        offset: u64,
        reply: &mut ReplyDirectory,
    ) {
        let mut p = dir.to_vec();
        p.push(b'/');
        for (i, e) in l.entries.iter().enumerate().skip(offset as usize) {
            let name = l.name(e);
            let child_ino = match name {
                b"." | b".." => ino.0,
                _ => {
                    p.truncate(dir.len() + 1);
                    p.extend_from_slice(name);
                    self.ino(&p)
                }
            };
            if reply.add(
                INodeNo(child_ino),
                i as u64 + 1,
                dtype_kind(e.d_type),
                OsStr::from_bytes(name),
            ) {
                break;
            }
        }
    }

    fn fill_dir_plus(
        &self,
        req: &Request,
        l: &Listing,
        dir: &[u8],
        offset: u64,
        reply: &mut ReplyDirectoryPlus,
    ) {
        let mut parents = ParentDirs::default();
        let mut p = dir.to_vec();
        p.push(b'/');
        for (i, e) in l.entries.iter().enumerate().skip(offset as usize) {
            let name = l.name(e);
            let a = match name {
                // The kernel skips these; any attributes do.
                b"." | b".." => self.getattr_virt(req, dir),
                _ => {
                    p.truncate(dir.len() + 1);
                    p.extend_from_slice(name);
                    self.getattr_in(req, &p, Some(&mut parents))
                }
            };
            // An entry gone since the listing: no attributes (node id 0),
            // the kernel looks it up when it is used.
            let a = a.unwrap_or_else(|_| {
                // SAFETY: Stat is plain data; all zeros is a valid value.
                let st: Stat = unsafe { std::mem::zeroed() };
                attr(0, &st)
            });
            if reply.add(
                a.ino,
                i as u64 + 1,
                OsStr::from_bytes(name),
                &self.entry_ttl,
                &a,
                Generation(0),
            ) {
                break;
            }
        }
    }

    /// What the kernel must drop when a monitored source changes.
    pub fn invalidator(&self) -> Invalidator {
        Invalidator {
            inodes: self.inodes.clone(),
            descs: self.descs.clone(),
        }
    }

    fn done(change: Change<()>, outside: impl FnOnce() -> Result<(), Errno>) -> Result<(), Errno> {
        match change {
            Change::Outside => outside(),
            Change::Done(()) => Ok(()),
            Change::Fail(e) => Err(e),
        }
    }
}

/// A descriptor to read or write through.
enum Fd {
    Handle(Arc<Handle>),
    Table(Arc<OwnedFd>),
}

impl Fd {
    fn fd(&self) -> Result<&OwnedFd, Errno> {
        match self {
            Fd::Table(fd) => Ok(fd),
            Fd::Handle(h) => match &**h {
                Handle::File(fd, ..) => Ok(fd),
                Handle::Dir(_) => Err(libc::EISDIR),
            },
        }
    }
}

/// Opens a physical file for the descriptor table (see
/// [`MountFs::open_ino`]).
fn open_phys(phys: &[u8], write: bool) -> Result<OwnedFd, Errno> {
    let base = OFlags::CLOEXEC | OFlags::NOFOLLOW;
    let open = |f: OFlags| rustix::fs::openat(CWD, phys, base | f, Mode::empty()).map_err(io_errno);
    if !write {
        return open(OFlags::RDONLY);
    }
    match open(OFlags::RDWR) {
        Err(libc::EACCES | libc::EPERM) => open(OFlags::WRONLY),
        r => r,
    }
}

/// Drops the kernel's cached entries, attributes and pages for source
/// changes the monitor reports (`usvfs_view::source_events`), so a file
/// added to or removed from a monitored source shows at once.
pub struct Invalidator {
    inodes: Arc<Mutex<Inodes>>,
    descs: Arc<Descriptors>,
}

impl Invalidator {
    pub fn changed(&self, notifier: &fuser::Notifier, virt: &[u8], what: SourceChange) {
        let (parent_path, name) = match virt.iter().rposition(|&c| c == b'/') {
            Some(i) => (if i == 0 { &virt[..1] } else { &virt[..i] }, &virt[i + 1..]),
            None => return,
        };
        let (parent, ino) = {
            let mut i = self.inodes.lock().unwrap_or_else(|e| e.into_inner());
            let parent = i.known(parent_path);
            let ino = i.known(virt);
            if what == SourceChange::Entry && ino.is_some() {
                // The name names something else now: a new inode for it;
                // a program holding the old one open keeps its descriptor.
                i.removed(virt);
            }
            (parent, ino)
        };
        if let Some(ino) = ino {
            if what == SourceChange::Entry {
                self.descs.pin(ino, None);
            }
            let _ = notifier.inval_inode(INodeNo(ino), 0, 0);
        }
        if let Some(p) = parent {
            if what == SourceChange::Entry {
                let _ = notifier.inval_entry(INodeNo(p), OsStr::from_bytes(name));
            }
            // The directory's attributes and cached listing.
            let _ = notifier.inval_inode(INodeNo(p), 0, 0);
        }
    }
}

fn reply_empty(reply: ReplyEmpty, r: Result<(), Errno>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(err(e)),
    }
}

impl Filesystem for MountFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Cached pages stay across opens; the kernel drops them when the
        // attributes show the file changed (size or mtime).
        let _ = config.add_capabilities(InitFlags::FUSE_AUTO_INVAL_DATA);
        // A listing brings its entries' attributes (a walk then makes no
        // lookup per entry); the kernel picks plain or plus per directory.
        let _ = config
            .add_capabilities(InitFlags::FUSE_DO_READDIRPLUS | InitFlags::FUSE_READDIRPLUS_AUTO);
        // Symlink targets cached like pages; lookups in one directory may
        // run in parallel.
        let _ = config
            .add_capabilities(InitFlags::FUSE_CACHE_SYMLINKS | InitFlags::FUSE_PARALLEL_DIROPS);
        // SAFETY: geteuid cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        if self.opens == Opens::Passthrough
            && root
            && config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
            && config.set_max_stack_depth(2).is_ok()
        {
            self.passthrough.store(true, Ordering::Relaxed);
        }
        Ok(())
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.child(parent, name) {
            Ok(virt) => self.lookup_entry(req, &virt, reply),
            Err(e) => reply.error(err(e)),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, _nlookup: u64) {
        // The kernel holds no file open on the inode any more (it keeps the
        // inode while one is): its descriptor and listing can go. The inode
        // number stays the path's (a later lookup gets the same one).
        self.descs.drop_ino(ino.0, true);
        self.dirs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&ino.0);
    }

    fn getattr(&self, req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        // An open file answers from its descriptor (it may be unlinked).
        if let Some(fh) = fh
            && let Ok(h) = self.file(fh)
            && let Handle::File(fd, ..) = &*h
        {
            match rustix::fs::fstat(fd) {
                Ok(st) => reply.attr(&TTL, &attr(ino.0, &st)),
                Err(e) => reply.error(err(io_errno(e))),
            }
            return;
        }
        let path = self.path(ino);
        if path.as_ref().is_ok_and(|p| p.starts_with(b"\0")) {
            // Removed from the view but still open somewhere (`fstat` of an
            // unlinked file): any descriptor of the inode answers.
            if let Some(fd) = self.descs.existing(ino.0) {
                return match rustix::fs::fstat(&*fd) {
                    Ok(st) => reply.attr(&TTL, &attr(ino.0, &st)),
                    Err(e) => reply.error(err(io_errno(e))),
                };
            }
            let fds: Vec<Arc<Handle>> = self
                .handles
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .filter(|h| matches!(***h, Handle::File(_, _, i) if i == ino.0))
                .cloned()
                .collect();
            return match fds.first().map(|h| &**h) {
                Some(Handle::File(fd, ..)) => match rustix::fs::fstat(fd) {
                    Ok(st) => reply.attr(&TTL, &attr(ino.0, &st)),
                    Err(e) => reply.error(err(io_errno(e))),
                },
                _ => reply.error(err(libc::ENOENT)),
            };
        }
        match path.and_then(|virt| self.getattr_virt(req, &virt)) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(err(e)),
        }
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let r = (|| -> Result<FileAttr, Errno> {
            let virt = self.path(ino)?;
            if virt.starts_with(b"\0") {
                // Left the view, still open: only through its descriptor.
                let fd = self.descs.existing(ino.0).ok_or(libc::ENOENT)?;
                if let Some(size) = size {
                    rustix::fs::ftruncate(&*fd, size).map_err(io_errno)?;
                }
                if let Some(m) = mode {
                    rustix::fs::fchmod(&*fd, Mode::from_raw_mode(m)).map_err(io_errno)?;
                }
                return Ok(attr(ino.0, &rustix::fs::fstat(&*fd).map_err(io_errno)?));
            }
            let phys = self.phys(req, &virt)?;
            if let Some(m) = mode {
                rustix::fs::chmodat(CWD, &phys[..], Mode::from_raw_mode(m), AtFlags::empty())
                    .map_err(io_errno)?;
            }
            if uid.is_some() || gid.is_some() {
                rustix::fs::chownat(
                    CWD,
                    &phys[..],
                    uid.map(rustix::fs::Uid::from_raw),
                    gid.map(rustix::fs::Gid::from_raw),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(io_errno)?;
            }
            if let Some(size) = size {
                let h = fh.and_then(|fh| self.file(fh).ok());
                match h.as_deref() {
                    Some(Handle::File(fd, ..)) => {
                        rustix::fs::ftruncate(fd, size).map_err(io_errno)?
                    }
                    // Stateless: the inode's descriptor, writable (opened
                    // here when it has none: a write usually follows).
                    _ if self.opens == Opens::Stateless => {
                        let fd = self
                            .descs
                            .get(ino.0, true, |w| self.open_ino(req, ino.0, w))?;
                        rustix::fs::ftruncate(&*fd, size).map_err(io_errno)?
                    }
                    _ => {
                        let fd = rustix::fs::openat(
                            CWD,
                            &phys[..],
                            OFlags::WRONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
                            Mode::empty(),
                        )
                        .map_err(io_errno)?;
                        rustix::fs::ftruncate(&fd, size).map_err(io_errno)?;
                    }
                }
            }
            if atime.is_some() || mtime.is_some() {
                let ts = |t: Option<TimeOrNow>| match t {
                    None => rustix::fs::Timespec {
                        tv_sec: 0,
                        tv_nsec: rustix::fs::UTIME_OMIT,
                    },
                    Some(TimeOrNow::Now) => rustix::fs::Timespec {
                        tv_sec: 0,
                        tv_nsec: rustix::fs::UTIME_NOW,
                    },
                    Some(TimeOrNow::SpecificTime(t)) => {
                        let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
                        rustix::fs::Timespec {
                            tv_sec: d.as_secs() as i64,
                            tv_nsec: d.subsec_nanos() as _,
                        }
                    }
                };
                let times = rustix::fs::Timestamps {
                    last_access: ts(atime),
                    last_modification: ts(mtime),
                };
                rustix::fs::utimensat(CWD, &phys[..], &times, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(io_errno)?;
            }
            Ok(attr(self.ino(&virt), &lstat(&phys)?))
        })();
        match r {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(err(e)),
        }
    }

    fn readlink(&self, req: &Request, ino: INodeNo, reply: ReplyData) {
        let r = self
            .path(ino)
            .and_then(|v| self.phys(req, &v))
            .and_then(|p| {
                let mut buf = vec![0u8; path::PATH_MAX];
                let n = SysFs.readlink(&p, &mut buf)?;
                buf.truncate(n);
                Ok(buf)
            });
        match r {
            Ok(b) => reply.data(&b),
            Err(e) => reply.error(err(e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let r = self.child(parent, name).and_then(|virt| {
            let kind = if mode & libc::S_IFMT == libc::S_IFREG {
                FileKind::File
            } else {
                FileKind::Other
            };
            self.create_at(req, &virt, kind, |p| {
                let c = std::ffi::CString::new(p).map_err(|_| libc::EINVAL)?;
                // SAFETY: c is a valid C string.
                let r = unsafe { libc::mknod(c.as_ptr(), mode & !umask, rdev as libc::dev_t) };
                if r == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error()
                        .raw_os_error()
                        .unwrap_or(libc::EIO))
                }
            })
            .map(|()| virt)
        });
        match r {
            Ok(virt) => self.entry(req, &virt, reply),
            Err(e) => reply.error(err(e)),
        }
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let r = self.child(parent, name).and_then(|virt| {
            self.create_at(req, &virt, FileKind::Dir, |p| {
                SysFs.mkdir(p, mode & !umask & 0o7777)
            })
            .map(|()| virt)
        });
        match r {
            Ok(virt) => self.entry(req, &virt, reply),
            Err(e) => reply.error(err(e)),
        }
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let r = self.child(parent, name).and_then(|virt| {
            let pinned = self.pin_before_removal(req, &virt);
            let c = self.with_view(req, |v| v.delete(&virt, Some(false)));
            Self::done(c, || SysFs.unlink(&virt))?;
            self.pin(pinned);
            self.forget_path(&virt);
            Ok(())
        });
        reply_empty(reply, r);
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let r = self.child(parent, name).and_then(|virt| {
            let c = self.with_view(req, |v| v.delete(&virt, Some(true)));
            Self::done(c, || SysFs.rmdir(&virt))?;
            self.forget_path(&virt);
            Ok(())
        });
        reply_empty(reply, r);
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let r = self.child(parent, link_name).and_then(|virt| {
            self.create_at(req, &virt, FileKind::Symlink, |p| {
                SysFs.symlink(target.as_os_str().as_bytes(), p)
            })
            .map(|()| virt)
        });
        match r {
            Ok(virt) => self.entry(req, &virt, reply),
            Err(e) => reply.error(err(e)),
        }
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let r = (|| {
            let old = self.child(parent, name)?;
            let new = self.child(newparent, newname)?;
            let exchange = flags.contains(RenameFlags::RENAME_EXCHANGE);
            let pinned = if exchange {
                None
            } else {
                self.pin_before_removal(req, &new)
            };
            let c = self.with_view(req, |v| v.rename(&old, &new, flags.bits()));
            Self::done(c, || SysFs.rename(&old, &new, flags.bits()))?;
            self.pin(pinned);
            let moved = {
                let mut i = self.inodes.lock().unwrap_or_else(|e| e.into_inner());
                if exchange {
                    let tmp = b"\0usvfs-exchange".to_vec();
                    let mut m = i.moved(&new, &tmp);
                    m.extend(i.moved(&old, &new));
                    i.moved(&tmp, &old);
                    m
                } else {
                    // The replaced entry's inode is gone from the view.
                    i.removed(&new);
                    i.moved(&old, &new)
                }
            };
            // The semantics may have moved a file by copying it: a
            // descriptor opened by the old path is reopened by the new one.
            for ino in moved {
                self.descs.drop_ino(ino, false);
            }
            Ok(())
        })();
        reply_empty(reply, r);
    }

    fn link(
        &self,
        req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let r = (|| {
            let old = self.phys(req, &self.path(ino)?)?;
            let virt = self.child(newparent, newname)?;
            self.create_at(req, &virt, FileKind::File, |p| {
                rustix::fs::linkat(CWD, &old[..], CWD, p, AtFlags::empty()).map_err(io_errno)
            })?;
            Ok(virt)
        })();
        match r {
            Ok(virt) => self.entry(req, &virt, reply),
            Err(e) => reply.error(err(e)),
        }
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if self.opens == Opens::Stateless {
            // The kernel stops sending OPEN and RELEASE for this mount and
            // keeps pages cached across opens; reads and writes come with
            // handle 0 (served from the descriptor table).
            return reply.error(err(libc::ENOSYS));
        }
        let r = self
            .path(ino)
            .and_then(|v| self.phys(req, &v))
            .and_then(|p| {
                rustix::fs::openat(CWD, &p[..], open_flags(flags.0), Mode::empty())
                    .map_err(io_errno)
            });
        match r {
            Ok(fd) => match self.backing_for(ino.0, &fd, |fd| reply.open_backing(fd)) {
                Some(b) => {
                    let fh = self.add_handle(Handle::File(fd, Some(b.clone()), ino.0));
                    reply.opened_passthrough(FileHandle(fh), FopenFlags::FOPEN_NOFLUSH, &b)
                }
                None => {
                    let fh = self.add_handle(Handle::File(fd, None, ino.0));
                    reply.opened(
                        FileHandle(fh),
                        FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_NOFLUSH,
                    )
                }
            },
            Err(e) => reply.error(err(e)),
        }
    }

    fn read(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        let fd = match self.data_fd(req, ino, fh, false) {
            Ok(fd) => fd,
            Err(e) => return reply.error(err(e)),
        };
        // One buffer per server thread, grown to the largest read: no
        // allocation nor zeroing per request.
        thread_local! {
            static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        BUF.with_borrow_mut(|buf| {
            if buf.len() < size as usize {
                buf.resize(size as usize, 0);
            }
            let buf = &mut buf[..size as usize];
            let r = fd.fd().and_then(|fd| {
                let mut got = 0;
                while got < buf.len() {
                    match rustix::io::pread(fd, &mut buf[got..], offset + got as u64) {
                        Ok(0) => break,
                        // A regular file's read comes up short only at its
                        // end: no second call to learn that.
                        Ok(n) if n < buf.len() - got => {
                            got += n;
                            break;
                        }
                        Ok(n) => got += n,
                        Err(rustix::io::Errno::INTR) => {}
                        Err(e) => return Err(io_errno(e)),
                    }
                }
                Ok(got)
            });
            match r {
                Ok(n) => reply.data(&buf[..n]),
                Err(e) => reply.error(err(e)),
            }
        });
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyWrite,
    ) {
        let table = fh.0 == 0;
        let r = self.data_fd(req, ino, fh, true).and_then(|h| {
            let fd = h.fd()?;
            let mut put = 0;
            while put < data.len() {
                // An O_APPEND descriptor (per-open) appends whatever the
                // offset says; stateless, the kernel chose the offset (the
                // end it knows) for an O_APPEND file.
                match rustix::io::pwrite(fd, &data[put..], offset + put as u64) {
                    Ok(n) => put += n,
                    Err(rustix::io::Errno::INTR) => {}
                    Err(e) => return Err(io_errno(e)),
                }
            }
            // The shared descriptor has none of the program's own flags:
            // an O_SYNC/O_DSYNC file's write is synced here.
            if table && flags.0 & libc::O_SYNC == libc::O_SYNC {
                rustix::fs::fsync(fd.as_fd()).map_err(io_errno)?;
            } else if table && flags.0 & libc::O_DSYNC != 0 {
                rustix::fs::fdatasync(fd.as_fd()).map_err(io_errno)?;
            }
            Ok(put as u32)
        });
        match r {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(err(e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: fuser::LockOwner,
        reply: ReplyEmpty,
    ) {
        // Nothing to do on close (data is written through, locks are the
        // kernel's): ENOSYS makes the kernel stop sending FLUSH at all,
        // which stateless opens (no FOPEN_NOFLUSH to give) need.
        reply.error(err(libc::ENOSYS));
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.handles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&fh.0);
        reply.ok();
    }

    fn fsync(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let r = self.data_fd(req, ino, fh, false).and_then(|h| {
            let fd = h.fd()?;
            if datasync {
                rustix::fs::fdatasync(fd.as_fd()).map_err(io_errno)
            } else {
                rustix::fs::fsync(fd.as_fd()).map_err(io_errno)
            }
        });
        reply_empty(reply, r);
    }

    fn opendir(&self, req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if self.opens == Opens::Stateless {
            // No OPENDIR/RELEASEDIR any more; the kernel caches listings
            // (until the directory changes) and reads from offset 0 take a
            // new one ([`MountFs::dir_listing`]).
            return reply.error(err(libc::ENOSYS));
        }
        let r = self.take_listing(req, ino);
        match r {
            Ok(l) => reply.opened(
                FileHandle(self.add_handle(Handle::Dir(l))),
                FopenFlags::empty(),
            ),
            Err(e) => reply.error(err(e)),
        }
    }

    fn readdir(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let dir = match self.path(ino) {
            Ok(d) => d,
            Err(e) => return reply.error(err(e)),
        };
        let r = self.with_listing(req, ino, fh, offset, |l| {
            self.fill_dir(l, ino, &dir, offset, &mut reply)
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(e)),
        }
    }

    fn readdirplus(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let dir = match self.path(ino) {
            Ok(d) => d,
            Err(e) => return reply.error(err(e)),
        };
        let r = self.with_listing(req, ino, fh, offset, |l| {
            self.fill_dir_plus(req, l, &dir, offset, &mut reply)
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(e)),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.handles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&fh.0);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match rustix::fs::statvfs(&self.root[..]) {
            Ok(s) => reply.statfs(
                s.f_blocks,
                s.f_bfree,
                s.f_bavail,
                s.f_files,
                s.f_ffree,
                s.f_bsize as u32,
                s.f_namemax as u32,
                s.f_frsize as u32,
            ),
            Err(e) => reply.error(err(io_errno(e))),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let r = (|| {
            let virt = self.child(parent, name)?;
            let perm = Mode::from_raw_mode(mode & !umask & 0o7777);
            let oflags = open_flags(flags);
            let fd = self.with_view(req, |v| match v.probe(&virt, false, FileKind::File) {
                Probe::Outside => rustix::fs::openat(CWD, &virt[..], oflags | OFlags::CREATE, perm)
                    .map_err(io_errno),
                Probe::Fail(e) => Err(e),
                // Made by someone else since the kernel looked.
                Probe::Exists(_) if flags & libc::O_EXCL != 0 => Err(libc::EEXIST),
                Probe::Exists(f) => {
                    rustix::fs::openat(CWD, f.r.phys.as_bytes(), oflags, Mode::empty())
                        .map_err(io_errno)
                }
                Probe::New(place) => {
                    match rustix::fs::openat(
                        CWD,
                        place.loc.as_bytes(),
                        oflags | OFlags::CREATE | OFlags::EXCL,
                        perm,
                    ) {
                        Ok(fd) => {
                            place.commit(v, FileKind::File);
                            Ok(fd)
                        }
                        Err(e) => {
                            place.abort(v);
                            Err(io_errno(e))
                        }
                    }
                }
            })?;
            let st = rustix::fs::fstat(&fd).map_err(io_errno)?;
            Ok((attr(self.ino(&virt), &st), fd))
        })();
        match r {
            Ok((a, fd)) => match self.backing_for(a.ino.0, &fd, |fd| reply.open_backing(fd)) {
                Some(b) => {
                    let fh = self.add_handle(Handle::File(fd, Some(b.clone()), a.ino.0));
                    reply.created_passthrough(
                        &self.entry_ttl,
                        &a,
                        Generation(0),
                        FileHandle(fh),
                        FopenFlags::empty(),
                        &b,
                    )
                }
                None => {
                    let fh = self.add_handle(Handle::File(fd, None, a.ino.0));
                    reply.created(
                        &self.entry_ttl,
                        &a,
                        Generation(0),
                        FileHandle(fh),
                        FopenFlags::FOPEN_KEEP_CACHE,
                    )
                }
            },
            Err(e) => reply.error(err(e)),
        }
    }

    // Extended attributes are read from the physical file (setting them is
    // not offered yet: ENOTSUP, which tools treat as "no xattr support").
    fn getxattr(&self, req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        if !self.xattrs {
            return reply.error(err(libc::ENOSYS));
        }
        let r = self
            .path(ino)
            .and_then(|v| self.phys(req, &v))
            .and_then(|p| {
                if size == 0 {
                    return rustix::fs::lgetxattr_query(&p[..], name)
                        .map(|n| (n, Vec::new()))
                        .map_err(io_errno);
                }
                let mut buf = vec![0u8; size as usize];
                let n = rustix::fs::lgetxattr(&p[..], name, &mut buf[..]).map_err(io_errno)?;
                buf.truncate(n);
                Ok((n, buf))
            });
        match r {
            Ok((n, _)) if size == 0 => reply.size(n as u32),
            Ok((_, b)) => reply.data(&b),
            Err(e) => reply.error(err(e)),
        }
    }

    fn listxattr(&self, req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        if !self.xattrs {
            return reply.error(err(libc::ENOSYS));
        }
        let r = self
            .path(ino)
            .and_then(|v| self.phys(req, &v))
            .and_then(|p| {
                if size == 0 {
                    return rustix::fs::llistxattr_query(&p[..])
                        .map(|n| (n, Vec::new()))
                        .map_err(io_errno);
                }
                let mut buf = vec![0u8; size as usize];
                let n = rustix::fs::llistxattr(&p[..], &mut buf[..]).map_err(io_errno)?;
                buf.truncate(n);
                Ok((n, buf))
            });
        match r {
            Ok((n, _)) if size == 0 => reply.size(n as u32),
            Ok((_, b)) => reply.data(&b),
            Err(e) => reply.error(err(e)),
        }
    }

    /// Extended attributes change in place, on the file's physical copy
    /// (as the preload engine's `setxattr`: like an edit of its contents).
    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        if !self.xattrs {
            return reply.error(err(libc::ENOSYS));
        }
        let flags = rustix::fs::XattrFlags::from_bits_retain(flags as _);
        let r = self.path(ino).and_then(|v| {
            self.with_phys(req, &v, |p| {
                rustix::fs::lsetxattr(p, name, value, flags).map_err(io_errno)
            })
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(e)),
        }
    }

    fn removexattr(&self, req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        if !self.xattrs {
            return reply.error(err(libc::ENOSYS));
        }
        let r = self.path(ino).and_then(|v| {
            self.with_phys(req, &v, |p| {
                rustix::fs::lremovexattr(p, name).map_err(io_errno)
            })
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rename moves the inode's path and every path below it, and only
    /// those (a sibling sharing the name as a prefix stays).
    #[test]
    fn rename_moves_paths_below() {
        let mut i = Inodes::default();
        let root = i.ino(b"/d");
        let a = i.ino(b"/d/a");
        let ab = i.ino(b"/d/a/b");
        let sib = i.ino(b"/d/ab");
        i.moved(b"/d/a", b"/d/z");
        assert_eq!(i.ino(b"/d"), root);
        assert_eq!(i.ino(b"/d/z"), a);
        assert_eq!(i.ino(b"/d/z/b"), ab);
        assert_eq!(i.ino(b"/d/ab"), sib);
        assert_eq!(i.paths[a as usize - 1], b"/d/z");
        // The old name is a new inode now.
        assert!(i.ino(b"/d/a") > sib);
    }

    /// In a case-insensitive view both spellings of a path are one inode,
    /// also after a rename spelled in another case; the stored spelling
    /// below a moved directory keeps its own case.
    #[test]
    fn folded_spellings_share_an_inode() {
        let mut i = Inodes {
            fold: true,
            ..Inodes::default()
        };
        let tex = i.ino(b"/g/Textures");
        let rock = i.ino(b"/g/Textures/Rock.DDS");
        assert_eq!(i.ino(b"/g/textures"), tex);
        assert_eq!(i.known(b"/G/TEXTURES/rock.dds"), Some(rock));
        i.moved(b"/g/TEXTURES", b"/g/Tex2");
        assert_eq!(i.known(b"/g/tex2/ROCK.dds"), Some(rock));
        assert_eq!(i.paths[rock as usize - 1], b"/g/Tex2/Rock.DDS");
        assert_eq!(i.known(b"/g/textures"), None);
        i.removed(b"/G/TEX2/rock.dds");
        assert_eq!(i.known(b"/g/Tex2/Rock.DDS"), None);
    }

    /// Options the kernel must not see again (create/exclusive) are dropped;
    /// the descriptor never follows a symlink the view resolved.
    #[test]
    fn open_flags_keep_the_programs_own() {
        let f = open_flags(libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_APPEND);
        assert!(f.contains(OFlags::RDWR | OFlags::APPEND | OFlags::CLOEXEC | OFlags::NOFOLLOW));
        assert!(!f.contains(OFlags::CREATE) && !f.contains(OFlags::EXCL));
    }
}
