//! inotify on the view. A watch on a merged directory becomes kernel watches
//! on every physical directory that provides it (each layer's directory at
//! that path, the real directory, and the create target's directory, which
//! is watched for from its nearest existing ancestor until it appears),
//! shown to the program as one watch descriptor: events read from a
//! descriptor with such a watch are rewritten to carry the program's
//! descriptor (names are relative, so they stay). A watch on a file or a
//! directory of one physical place watches that place.
//!
//! `read` is the hottest pass-through call there is: it costs one bit test
//! in [`MARKS`] unless the descriptor holds a virtual watch.
//!
//! Limits: a descriptor duplicated with `dup` or inherited across `exec`
//! reads the kernel's events unchanged; events that happen in a create
//! target's directory between its creation and the moment the watcher next
//! reads are reported as creates of what it then holds (as a recursive
//! watcher sees a new subdirectory); names hidden by a higher layer still
//! report their changes.

#![allow(clippy::missing_safety_doc)]

use std::ffi::CString;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use libc::{
    AT_FDCWD, IN_ALL_EVENTS, IN_CREATE, IN_DELETE, IN_DELETE_SELF, IN_DONT_FOLLOW, IN_EXCL_UNLINK,
    IN_IGNORED, IN_ISDIR, IN_MASK_ADD, IN_MASK_CREATE, IN_MOVE_SELF, IN_MOVED_FROM, IN_MOVED_TO,
    IN_ONESHOT, IN_ONLYDIR, IN_Q_OVERFLOW, IN_UNMOUNT, c_char, c_int, c_void, size_t, ssize_t,
};
use usvfs_view::fs::Fs;
use usvfs_view::path::{self, PathBuffer};
use usvfs_view::semantics::create;

use crate::guard::{self, errno, set_errno};
use crate::hooks::{Detour, hook_result, or_bypass, sys};
use crate::lookup::{Lookup, Outcome, bytes, lookup};
use crate::real;
use crate::state::State;

const SLOTS: usize = 1 << 16;

/// One bit per descriptor number: set while it holds a virtual watch, so its
/// reads are rewritten.
static MARKS: [AtomicU64; SLOTS / 64] = [const { AtomicU64::new(0) }; SLOTS / 64];

/// One bit per descriptor number: it has watches in [`TABLE`], so `close`
/// must forget them (one bit test on every `close`).
static KNOWN: [AtomicU64; SLOTS / 64] = [const { AtomicU64::new(0) }; SLOTS / 64];

/// The watches of each inotify descriptor a hook saw. Entries are never
/// freed (another thread may hold one); a closed descriptor's entry is
/// emptied and reused by the next inotify descriptor of that number.
static TABLE: [AtomicPtr<Inst>; SLOTS] = [const { AtomicPtr::new(std::ptr::null_mut()) }; SLOTS];

/// The size of `struct inotify_event` without its name.
const HEADER: usize = 16;

/// Events a create target's directory is watched for beyond the program's,
/// to tell its synthesized creates from the kernel's (filtered on delivery).
const TARGET_EXTRA: u32 = IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO;

/// Events a directory listing causes.
const QUIET: u32 = libc::IN_OPEN | libc::IN_ACCESS | libc::IN_CLOSE_NOWRITE;

#[inline(always)]
fn bit(table: &'static [AtomicU64; SLOTS / 64], fd: c_int) -> Option<(&'static AtomicU64, u64)> {
    let i = fd as u32 as usize;
    table.get(i / 64).map(|w| (w, 1u64 << (i % 64)))
}

#[inline(always)]
fn test(table: &'static [AtomicU64; SLOTS / 64], fd: c_int) -> bool {
    bit(table, fd).is_some_and(|(w, b)| w.load(Ordering::Relaxed) & b != 0)
}

fn set(table: &'static [AtomicU64; SLOTS / 64], fd: c_int, on: bool) {
    if let Some((w, b)) = bit(table, fd) {
        if on {
            w.fetch_or(b, Ordering::Relaxed);
        } else {
            w.fetch_and(!b, Ordering::Relaxed);
        }
    }
}

/// The descriptor holds a virtual watch: its reads take [`read_slow`].
#[inline(always)]
pub fn marked(fd: c_int) -> bool {
    test(&MARKS, fd)
}

struct Inst(Mutex<Watches>);

impl Inst {
    fn lock(&self) -> MutexGuard<'_, Watches> {
        // A panic inside is contained by the hook; the data stays usable.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn slot(fd: c_int) -> Option<&'static AtomicPtr<Inst>> {
    TABLE.get(fd as u32 as usize)
}

fn inst(fd: c_int) -> Option<&'static Inst> {
    let p = slot(fd)?.load(Ordering::Acquire);
    // SAFETY: set only from leaked boxes, never freed.
    (!p.is_null()).then(|| unsafe { &*p })
}

fn inst_or_new(fd: c_int) -> Option<&'static Inst> {
    if let Some(i) = inst(fd) {
        set(&KNOWN, fd, true);
        return Some(i);
    }
    set(&KNOWN, fd, true);
    let s = slot(fd)?;
    let new = Box::into_raw(Box::new(Inst(Mutex::new(Watches::default()))));
    match s.compare_exchange(
        std::ptr::null_mut(),
        new,
        Ordering::AcqRel,
        Ordering::Acquire,
    ) {
        // SAFETY: just published, never freed.
        Ok(_) => Some(unsafe { &*new }),
        Err(cur) => {
            // SAFETY: `new` was not published.
            drop(unsafe { Box::from_raw(new) });
            // SAFETY: a published entry, never freed.
            Some(unsafe { &*cur })
        }
    }
}

/// `fd` is being closed or replaced: its kernel watches go with it.
#[inline(always)]
pub fn forget(fd: c_int) {
    if test(&KNOWN, fd) {
        forget_slow(fd);
    }
}

#[cold]
#[inline(never)]
fn forget_slow(fd: c_int) {
    set(&KNOWN, fd, false);
    set(&MARKS, fd, false);
    if let Some(i) = inst(fd) {
        let old = std::mem::take(&mut *i.lock());
        if let Some((_, m)) = old.bell {
            // Closed only while the number is still our file: the program
            // may have closed it and reused the number.
            let ours = old.bell_ino != 0
                && rustix::fs::fstat(&m).is_ok_and(|st| st.st_ino == old.bell_ino);
            if !ours {
                let _ = rustix::fd::IntoRawFd::into_raw_fd(m);
            }
        }
    }
}

/// [`forget`] for every descriptor in `lo..=hi`.
pub fn forget_range(lo: u32, hi: u32) {
    for fd in lo as usize..=(hi as usize).min(SLOTS - 1) {
        forget(fd as c_int);
    }
}

/// A watch the program holds on a merged directory.
struct VWatch {
    /// The descriptor the program knows (the first physical watch's).
    wd: i32,
    /// The merged directory's virtual path.
    virt: Vec<u8>,
    /// The events it asked for (with `IN_ONESHOT`, `IN_EXCL_UNLINK`...).
    mask: u32,
    /// The mask the physical watches are added with.
    kmask: u32,
    /// Kernel watches whose events are this watch's.
    phys: Vec<i32>,
    target: Option<Target>,
}

/// Where creates below the watched directory land.
struct Target {
    path: Vec<u8>,
    /// Its kernel watch; -1 while it does not exist.
    wd: i32,
    /// While missing: the kernel watch on its nearest existing ancestor and
    /// that ancestor's path.
    pending: Option<(i32, Vec<u8>)>,
    /// Names reported as created when the directory appeared: the kernel's
    /// own create of one of them (made after the watch) is not repeated.
    synth: Vec<Vec<u8>>,
}

#[derive(Default)]
struct Watches {
    virt: Vec<VWatch>,
    /// Kernel watches the program added on single places, with their masks.
    plain: Vec<(i32, u32)>,
    /// Kernel watches removed here: their remaining events are not the program's.
    dead: Vec<i32>,
    /// Events ready for the program, in the kernel's format.
    queue: Vec<u8>,
    /// A private file watched for `IN_ATTRIB` ([`Watches::ring`]) and its
    /// kernel watch; whether an event of it is on its way.
    bell: Option<(i32, rustix::fd::OwnedFd)>,
    bell_ino: u64,
    rung: bool,
}

fn c_path(p: &[u8]) -> Option<CString> {
    CString::new(p).ok()
}

fn add_raw(fd: c_int, p: &[u8], mask: u32) -> i32 {
    let Some(c) = c_path(p) else { return -1 };
    // SAFETY: a NUL-terminated path; fd and mask are plain values.
    unsafe { real::inotify_add_watch(fd, c.as_ptr(), mask) }
}

fn is_dir(p: &[u8]) -> bool {
    usvfs_view::SysFs.stat(p).is_ok_and(|m| m.is_dir())
}

fn parent(p: &[u8]) -> &[u8] {
    match p.iter().rposition(|&c| c == b'/') {
        Some(0) | None => b"/",
        Some(i) => &p[..i],
    }
}

/// The program asked for this event (or it is one every watch gets).
fn wanted(m: u32, mask: u32) -> bool {
    m & (IN_IGNORED | IN_Q_OVERFLOW | IN_UNMOUNT) != 0 || m & mask & IN_ALL_EVENTS != 0
}

impl Watches {
    /// Makes the descriptor readable while events wait in the queue: a
    /// program that polls before each read would otherwise sleep until the
    /// kernel's next event. The kernel's event of a private file does it.
    fn ring(&mut self, fd: c_int) {
        if self.queue.is_empty() || self.rung {
            return;
        }
        if self.bell.is_none() {
            use rustix::fd::AsRawFd;
            let Ok(m) = rustix::fs::memfd_create(c"usvfs-inotify", rustix::fs::MemfdFlags::CLOEXEC)
            else {
                return;
            };
            // Out of the way of programs that expect the lowest free numbers.
            let m = rustix::io::fcntl_dupfd_cloexec(&m, 100).unwrap_or(m);
            let mut p = b"/proc/self/fd/".to_vec();
            let mut digits = [0u8; 20];
            p.extend_from_slice(path::decimal(m.as_raw_fd() as u64, &mut digits));
            let k = add_raw(fd, &p, libc::IN_ATTRIB);
            if k < 0 {
                return;
            }
            self.bell_ino = rustix::fs::fstat(&m).map_or(0, |st| st.st_ino);
            self.bell = Some((k, m));
        }
        if let Some((_, m)) = &self.bell
            && rustix::fs::fstat(m).is_ok_and(|st| st.st_ino == self.bell_ino)
        {
            let now = rustix::fs::Timespec {
                tv_sec: 0,
                tv_nsec: rustix::fs::UTIME_NOW,
            };
            let t = rustix::fs::Timestamps {
                last_access: now,
                last_modification: now,
            };
            self.rung = rustix::fs::futimens(m, &t).is_ok();
        }
    }

    fn referenced(&self, k: i32) -> bool {
        self.plain.iter().any(|&(w, _)| w == k)
            || self.virt.iter().any(|v| {
                v.phys.contains(&k)
                    || v.target
                        .as_ref()
                        .and_then(|t| t.pending.as_ref())
                        .is_some_and(|p| p.0 == k)
            })
    }

    /// Removes kernel watch `k` unless another watch still uses it.
    fn release(&mut self, fd: c_int, k: i32) {
        if k < 0 || self.referenced(k) {
            return;
        }
        // SAFETY: plain values.
        if unsafe { real::inotify_rm_watch(fd, k) } == 0 {
            self.dead.push(k);
        }
    }

    /// Appends an event; `name` is the kernel's name field (NUL-padded).
    fn push(&mut self, wd: i32, mask: u32, cookie: u32, name: &[u8]) {
        self.queue.extend_from_slice(&wd.to_ne_bytes());
        self.queue.extend_from_slice(&mask.to_ne_bytes());
        self.queue.extend_from_slice(&cookie.to_ne_bytes());
        self.queue
            .extend_from_slice(&(name.len() as u32).to_ne_bytes());
        self.queue.extend_from_slice(name);
    }

    /// Appends an event for a bare name, padded as the kernel pads names.
    fn push_name(&mut self, wd: i32, mask: u32, name: &[u8]) {
        let mut field = name.to_vec();
        field.resize((name.len() + 1).next_multiple_of(HEADER), 0);
        self.push(wd, mask, 0, &field);
    }

    /// Watches the create target of `self.virt[vi]`, or the nearest existing
    /// ancestor for its creation. `report`: the directory appeared after the
    /// watch was set up, so what it holds is reported as created.
    fn establish(&mut self, st: Option<&State>, fd: c_int, vi: usize, report: bool) {
        // Each round gets one component closer.
        for _ in 0..256 {
            let v = &self.virt[vi];
            let Some(t) = &v.target else { return };
            if t.wd >= 0 {
                return;
            }
            let tpath = t.path.clone();
            if is_dir(&tpath) {
                // Without the events our own listing of it would cause.
                let full = v.kmask | TARGET_EXTRA | IN_MASK_ADD;
                let k = add_raw(fd, &tpath, full & !QUIET);
                let v = &mut self.virt[vi];
                let (wd, mask) = (v.wd, v.mask);
                let Some(t) = v.target.as_mut() else { return };
                let old = t.pending.take();
                if k >= 0 {
                    t.wd = k;
                    if !v.phys.contains(&k) {
                        v.phys.push(k);
                    }
                    if report && mask & IN_CREATE != 0 {
                        self.report_contents(st, vi, wd, &tpath);
                    }
                    if full & QUIET != 0 {
                        add_raw(fd, &tpath, full);
                    }
                }
                if let Some((pw, _)) = old {
                    self.release(fd, pw);
                }
                return;
            }
            let mut a = parent(&tpath);
            while a != b"/" && !is_dir(a) {
                a = parent(a);
            }
            if t.pending.as_ref().is_some_and(|p| p.1 == a) {
                return;
            }
            let k = add_raw(fd, a, IN_CREATE | IN_MOVED_TO | IN_ONLYDIR | IN_MASK_ADD);
            let a = a.to_vec();
            let Some(t) = self.virt[vi].target.as_mut() else {
                return;
            };
            let old = std::mem::replace(&mut t.pending, (k >= 0).then(|| (k, a.clone())));
            if let Some((pw, _)) = old {
                self.release(fd, pw);
            }
            if k < 0 {
                return;
            }
            // The next component may have appeared before the watch did.
            let rest = tpath[a.len()..]
                .strip_prefix(b"/")
                .unwrap_or(&tpath[a.len()..]);
            let next = rest.iter().position(|&c| c == b'/').unwrap_or(rest.len());
            let mut n = a;
            if n != b"/" {
                n.push(b'/');
            }
            n.extend_from_slice(&rest[..next]);
            if !is_dir(&n) {
                return;
            }
        }
    }

    /// Reports what a newly appeared create target holds as created, but
    /// its copies of merged directories (parents of new entries below).
    fn report_contents(&mut self, st: Option<&State>, vi: usize, wd: i32, dir: &[u8]) {
        let mut found: Vec<(Vec<u8>, bool)> = Vec::new();
        let _ = usvfs_view::SysFs.read_dir(dir, &mut |name, d_type, _| {
            found.push((name.to_vec(), d_type == libc::DT_DIR));
        });
        let vdir = &self.virt[vi].virt;
        found.retain(|(name, is_dir)| !(*is_dir && st.is_some_and(|st| copy_only(st, vdir, name))));
        // Creation order is not known: name order at least does not vary.
        found.sort_unstable();
        for (name, is_dir) in &found {
            let m = IN_CREATE | if *is_dir { IN_ISDIR } else { 0 };
            self.push_name(wd, m, name);
        }
        if let Some(t) = self.virt[vi].target.as_mut() {
            t.synth = found.into_iter().map(|(n, _)| n).collect();
        }
    }

    /// Drops the program's virtual watch `vi`: its kernel watches go (unless
    /// shared) and the program gets its `IN_IGNORED`.
    fn remove_virtual(&mut self, fd: c_int, vi: usize) {
        let v = self.virt.remove(vi);
        for &k in &v.phys {
            self.release(fd, k);
        }
        if let Some((pw, _)) = v.target.and_then(|t| t.pending) {
            self.release(fd, pw);
        }
        self.push(v.wd, IN_IGNORED, 0, &[]);
    }

    /// Turns the kernel's events into the program's.
    fn process(&mut self, st: Option<&State>, fd: c_int, data: &[u8]) {
        let mut off = 0;
        while off + HEADER <= data.len() {
            let word = |o: usize| {
                let mut b = [0u8; 4];
                b.copy_from_slice(&data[off + o..off + o + 4]);
                b
            };
            let (wd, mask, cookie) = (
                i32::from_ne_bytes(word(0)),
                u32::from_ne_bytes(word(4)),
                u32::from_ne_bytes(word(8)),
            );
            let len = u32::from_ne_bytes(word(12)) as usize;
            let Some(name) = data.get(off + HEADER..off + HEADER + len) else {
                break;
            };
            self.dispatch(st, fd, wd, mask, cookie, name);
            off += HEADER + len;
        }
    }

    fn dispatch(
        &mut self,
        st: Option<&State>,
        fd: c_int,
        k: i32,
        m: u32,
        cookie: u32,
        field: &[u8],
    ) {
        if k < 0 {
            // IN_Q_OVERFLOW: for everyone.
            self.push(k, m, cookie, field);
            return;
        }
        if self.bell.as_ref().is_some_and(|b| b.0 == k) {
            self.rung = false;
            return;
        }
        if let Some(i) = self.dead.iter().position(|&d| d == k) {
            if m & IN_IGNORED != 0 {
                self.dead.swap_remove(i);
            }
            return;
        }
        let name = &field[..field.iter().position(|&c| c == 0).unwrap_or(field.len())];
        let mut emitted: Vec<i32> = Vec::new();
        let mut claimed = false;
        if let Some(pi) = self.plain.iter().position(|&(w, _)| w == k) {
            claimed = true;
            if wanted(m, self.plain[pi].1) {
                self.push(k, m, cookie, field);
                emitted.push(k);
            }
            if m & IN_IGNORED != 0 {
                self.plain.swap_remove(pi);
            }
        }
        let (mut again, mut gone) = (Vec::new(), Vec::new());
        for vi in 0..self.virt.len() {
            let v = &mut self.virt[vi];
            if let Some(t) = v.target.as_mut()
                && t.pending.as_ref().is_some_and(|p| p.0 == k)
            {
                claimed = true;
                if m & IN_IGNORED != 0 {
                    t.pending = None;
                    again.push(vi);
                } else if m & (IN_CREATE | IN_MOVED_TO) != 0 && m & IN_ISDIR != 0 {
                    again.push(vi);
                }
            }
            let Some(pos) = v.phys.iter().position(|&w| w == k) else {
                continue;
            };
            claimed = true;
            if m & IN_IGNORED != 0 {
                v.phys.remove(pos);
                if let Some(t) = v.target.as_mut()
                    && t.wd == k
                {
                    t.wd = -1;
                    t.synth.clear();
                    again.push(vi);
                }
                if v.phys.is_empty() {
                    gone.push(vi);
                }
                continue;
            }
            // One physical directory of several went: the merged one stays.
            if m & (IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT) != 0 && v.phys.len() > 1 {
                continue;
            }
            if let Some(t) = v.target.as_mut()
                && t.wd == k
                && let Some(p) = t.synth.iter().position(|n| n.as_slice() == name)
            {
                t.synth.swap_remove(p);
                if m & IN_CREATE != 0 {
                    continue;
                }
            }
            if m & IN_ISDIR != 0
                && m & (IN_CREATE | IN_DELETE) != 0
                && v.phys.len() > 1
                && st.is_some_and(|st| copy_only(st, &v.virt, name))
            {
                continue;
            }
            if wanted(m, v.mask) && !emitted.contains(&v.wd) {
                let (wd, oneshot) = (v.wd, v.mask & IN_ONESHOT != 0);
                self.push(wd, m, cookie, field);
                emitted.push(wd);
                if oneshot {
                    gone.push(vi);
                }
            }
        }
        if !claimed {
            self.push(k, m, cookie, field);
        }
        again.dedup();
        for vi in again {
            if !gone.contains(&vi) {
                self.establish(st, fd, vi, true);
            }
        }
        gone.sort_unstable();
        gone.dedup();
        for vi in gone.into_iter().rev() {
            self.remove_virtual(fd, vi);
        }
    }

    /// [`Watches::deliver`], then [`Watches::ring`] for what is left.
    fn deliver_and_ring(
        &mut self,
        fd: c_int,
        buf: *mut c_void,
        count: size_t,
    ) -> Result<ssize_t, i32> {
        let r = self.deliver(buf, count);
        self.ring(fd);
        r
    }

    /// Moves whole events that fit into `buf` (at most `count` bytes).
    fn deliver(&mut self, buf: *mut c_void, count: size_t) -> Result<ssize_t, i32> {
        let mut n = 0;
        while n + HEADER <= self.queue.len() {
            let mut b = [0u8; 4];
            b.copy_from_slice(&self.queue[n + 12..n + 16]);
            let size = HEADER + u32::from_ne_bytes(b) as usize;
            if n + size > count {
                break;
            }
            n += size;
        }
        if n == 0 {
            // As the kernel: the buffer cannot hold the next event.
            return Err(libc::EINVAL);
        }
        // SAFETY: the caller's buffer holds `count` >= n bytes.
        unsafe { std::ptr::copy_nonoverlapping(self.queue.as_ptr(), buf.cast::<u8>(), n) };
        self.queue.drain(..n);
        Ok(n as ssize_t)
    }
}

/// A directory event that changed only a physical copy: the create target's
/// copy of a merged directory, made as the parent of a new file or removed
/// when emptied. The merged directory (an index directory without a journal
/// record: no delete or create of it in the view) stays as it was.
fn copy_only(st: &State, vdir: &[u8], name: &[u8]) -> bool {
    let mut p = vdir.to_vec();
    if p != b"/" {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    if st
        .journal
        .as_ref()
        .is_some_and(|j| j.get(&p, j.key_hash(&p)).is_some())
    {
        return false;
    }
    let mut lk = Lookup::new();
    matches!(lookup(st, AT_FDCWD, &p, false, &mut lk), Outcome::Redirect)
        && lk.is_virtual_dir(st)
        && !lk.res.from_journal
}

/// The physical directories that provide merged directory `virt` (the
/// winner `winner` first), and where creates below it land.
fn providers(st: &State, lk: &Lookup) -> (Vec<Vec<u8>>, Option<Vec<u8>>) {
    let snap = &st.snap;
    let virt = lk.virt.as_bytes();
    let mut dirs = vec![lk.phys.as_bytes().to_vec()];
    for l in (0..snap.layer_count() as u32).rev() {
        let Some(rest) = path::strip_prefix(virt, snap.layer_dest(l)) else {
            continue;
        };
        let mut c = snap.layer_source(l).to_vec();
        if !rest.is_empty() {
            c.push(b'/');
            c.extend_from_slice(rest);
        }
        if !dirs.contains(&c) && is_dir(&c) {
            dirs.push(c);
        }
    }
    if lk.res.node.is_some_and(|n| !snap.hides_base(n))
        && !dirs.iter().any(|d| d.as_slice() == virt)
        && is_dir(virt)
    {
        dirs.push(virt.to_vec());
    }
    let mut probe = virt.to_vec();
    probe.extend_from_slice(b"/x");
    let target = create::create_target(snap, &probe).and_then(|l| {
        let mut out = PathBuffer::new();
        create::location(snap, l, virt, &mut out).ok()?;
        Some(out.as_bytes().to_vec())
    });
    (dirs, target)
}

/// A watch on directory `lk` of the view, provided by `dirs` (the winner
/// first), new entries landing in `target`.
fn add_virtual(
    fd: c_int,
    lk: &Lookup,
    dirs: Vec<Vec<u8>>,
    target: Option<Vec<u8>>,
    mask: u32,
) -> Detour<c_int> {
    // Before any kernel watch is added: a descriptor beyond the table
    // bypasses with nothing to undo.
    let inst = or_bypass!(inst_or_new(fd));
    let kmask =
        (mask & (IN_ALL_EVENTS | IN_EXCL_UNLINK | IN_ONLYDIR | IN_DONT_FOLLOW)) | IN_MASK_ADD;
    let mut wds: Vec<i32> = Vec::new();
    let mut target_wd = -1;
    for (i, d) in dirs.iter().enumerate() {
        let is_target = target.as_ref() == Some(d);
        let k = add_raw(fd, d, kmask | if is_target { TARGET_EXTRA } else { 0 });
        if k < 0 {
            if i == 0 {
                return Detour::Error(errno());
            }
            continue;
        }
        if is_target {
            target_wd = k;
        }
        if !wds.contains(&k) {
            wds.push(k);
        }
    }
    let mut w = inst.lock();
    let own = mask & !(IN_MASK_ADD | IN_MASK_CREATE);
    // The same directory watched again is the same watch, as in the kernel
    // (its winner may have changed meanwhile).
    let existing = w
        .virt
        .iter()
        .position(|v| v.virt == lk.virt.as_bytes() || v.wd == wds[0]);
    let wd = existing.map_or(wds[0], |vi| w.virt[vi].wd);
    match existing {
        Some(vi) => {
            if mask & IN_MASK_CREATE != 0 {
                return Detour::Error(libc::EEXIST);
            }
            let v = &mut w.virt[vi];
            v.mask = if mask & IN_MASK_ADD != 0 {
                v.mask | own
            } else {
                own
            };
            v.kmask |= kmask;
            for k in wds {
                if !v.phys.contains(&k) {
                    v.phys.push(k);
                }
            }
            if let Some(t) = v.target.as_mut()
                && target_wd >= 0
            {
                t.wd = target_wd;
            }
        }
        None => {
            w.virt.push(VWatch {
                wd,
                virt: lk.virt.as_bytes().to_vec(),
                mask: own,
                kmask,
                phys: wds,
                target: target.map(|path| Target {
                    path,
                    wd: target_wd,
                    pending: None,
                    synth: Vec::new(),
                }),
            });
            let vi = w.virt.len() - 1;
            w.establish(None, fd, vi, false);
        }
    }
    set(&MARKS, fd, true);
    tracing::debug!(
        path = %String::from_utf8_lossy(lk.virt.as_bytes()),
        wd,
        physical = dirs.len(),
        "inotify watch on a directory of the view"
    );
    Detour::Success(wd)
}

/// A watch on one place; `p` is the path to give the kernel.
fn add_plain(fd: c_int, p: *const c_char, mask: u32) -> Detour<c_int> {
    // SAFETY: a NUL-terminated path (the caller's or a resolved one).
    let k = unsafe { real::inotify_add_watch(fd, p, mask) };
    if k < 0 {
        return Detour::Error(errno());
    }
    if let Some(inst) = inst_or_new(fd) {
        let mut w = inst.lock();
        let own = mask & !(IN_MASK_ADD | IN_MASK_CREATE);
        match w.plain.iter_mut().find(|(x, _)| *x == k) {
            Some(e) => {
                e.1 = if mask & IN_MASK_ADD != 0 {
                    e.1 | own
                } else {
                    own
                }
            }
            None => w.plain.push((k, own)),
        }
        // The same directory serves a merged watch: keep its events coming.
        let more = w.virt.iter().fold(0, |m, v| {
            let pending = v
                .target
                .as_ref()
                .and_then(|t| t.pending.as_ref())
                .is_some_and(|p| p.0 == k);
            m | if v.phys.contains(&k) {
                v.kmask | TARGET_EXTRA
            } else {
                0
            } | if pending { IN_CREATE | IN_MOVED_TO } else { 0 }
        });
        if more != 0 {
            // SAFETY: as above.
            unsafe { real::inotify_add_watch(fd, p, more | IN_MASK_ADD) };
        }
    }
    Detour::Success(k)
}

/// A new inotify descriptor: whatever its number held before (closed where
/// no hook saw it) is forgotten.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn inotify_init1(flags: c_int) -> c_int {
    // SAFETY: a plain value, forwarded.
    let fd = unsafe { real::inotify_init1(flags) };
    forget(fd);
    fd
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn inotify_init() -> c_int {
    // SAFETY: no arguments.
    let fd = unsafe { real::inotify_init() };
    forget(fd);
    fd
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn inotify_add_watch(fd: c_int, path: *const c_char, mask: u32) -> c_int {
    // SAFETY: the caller's arguments, forwarded unchanged.
    let pass = || unsafe { real::inotify_add_watch(fd, path, mask) };
    // SAFETY: inotify_add_watch's contract: path is NULL or a C string.
    let Some(p) = (unsafe { bytes(path) }) else {
        return pass();
    };
    hook_result(pass, |st| {
        let mut lk = Lookup::new();
        let redirect = match lookup(st, AT_FDCWD, p, mask & IN_DONT_FOLLOW == 0, &mut lk) {
            Outcome::Fail(e) => return Detour::Error(e),
            Outcome::Redirect => true,
            // Outside every destination: nothing of the view there.
            Outcome::Pass if lk.virt.as_bytes().is_empty() => return add_plain(fd, path, mask),
            Outcome::Pass => false,
        };
        // A merged directory, or one whose new entries land elsewhere (a
        // real directory below a create target's destination).
        let merged = lk.is_virtual_dir(st) && !lk.res.from_journal;
        if merged || is_dir(lk.phys.as_bytes()) {
            let (dirs, target) = providers(st, &lk);
            if merged
                || target
                    .as_ref()
                    .is_some_and(|t| t.as_slice() != lk.phys.as_bytes())
            {
                return add_virtual(fd, &lk, dirs, target, mask);
            }
        }
        if redirect {
            add_plain(fd, lk.phys.as_c_ptr(), mask)
        } else {
            add_plain(fd, path, mask)
        }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn inotify_rm_watch(fd: c_int, wd: c_int) -> c_int {
    // SAFETY: plain values, forwarded.
    let pass = || unsafe { real::inotify_rm_watch(fd, wd) };
    let Some(inst) = inst(fd) else {
        return pass();
    };
    hook_result(pass, |_| {
        let mut w = inst.lock();
        if let Some(vi) = w.virt.iter().position(|v| v.wd == wd) {
            w.remove_virtual(fd, vi);
            w.ring(fd);
            return Detour::Success(0);
        }
        let Some(pi) = w.plain.iter().position(|&(k, _)| k == wd) else {
            return Detour::Bypass;
        };
        w.plain.swap_remove(pi);
        if w.referenced(wd) {
            // A merged watch still needs the kernel's watch.
            w.push(wd, IN_IGNORED, 0, &[]);
            w.ring(fd);
            return Detour::Success(0);
        }
        // SAFETY: plain values.
        sys(unsafe { real::inotify_rm_watch(fd, wd) })
    })
}

fn nonblocking(fd: c_int) -> bool {
    // SAFETY: F_GETFL takes no argument.
    let fl = unsafe { real::fcntl64(fd, libc::F_GETFL, std::ptr::null_mut()) };
    fl >= 0 && fl & libc::O_NONBLOCK != 0
}

fn read_events(inst: &Inst, fd: c_int, buf: *mut c_void, count: size_t) -> Result<ssize_t, i32> {
    let mut kbuf = vec![0u8; count.min(1 << 20)];
    loop {
        {
            let mut w = inst.lock();
            if !w.queue.is_empty() {
                return w.deliver_and_ring(fd, buf, count);
            }
        }
        // Not under the lock: a blocking read must not stop another thread
        // from adding the watch whose event it waits for.
        // SAFETY: our own buffer of this length.
        let n = unsafe { real::read(fd, kbuf.as_mut_ptr().cast(), kbuf.len()) };
        if n <= 0 {
            return if n < 0 { Err(errno()) } else { Ok(0) };
        }
        let mut w = inst.lock();
        w.process(crate::state::get(), fd, &kbuf[..n as usize]);
        if !w.queue.is_empty() {
            return w.deliver_and_ring(fd, buf, count);
        }
        drop(w);
        // Every event was internal (a create target's ancestor).
        if nonblocking(fd) {
            return Err(libc::EAGAIN);
        }
    }
}

/// The descriptor is (still) an inotify instance: a number closed where no
/// hook saw it and reused must not have its data rewritten. Without `/proc`
/// there is no telling: trusted then.
fn still_inotify(fd: c_int) -> bool {
    let mut link = PathBuffer::new();
    let _ = link.set(b"/proc/self/fd/");
    let mut digits = [0u8; 20];
    let _ = link.push_bytes(path::decimal(fd as u64, &mut digits));
    let mut target = [0u8; 64];
    match usvfs_view::SysFs.readlink(link.as_bytes(), &mut target) {
        Ok(n) => &target[..n] == b"anon_inode:inotify",
        Err(e) => e != libc::EBADF && e != libc::ENOENT,
    }
}

/// `read` on a descriptor holding a virtual watch.
#[cold]
#[inline(never)]
unsafe fn read_slow(fd: c_int, buf: *mut c_void, count: size_t) -> ssize_t {
    // SAFETY: the caller's arguments, forwarded unchanged.
    let pass = || unsafe { real::read(fd, buf, count) };
    if guard::internal() {
        return pass();
    }
    let Some(inst) = inst(fd) else {
        return pass();
    };
    let saved = errno();
    if !still_inotify(fd) {
        forget(fd);
        set_errno(saved);
        return pass();
    }
    match catch_unwind(AssertUnwindSafe(|| read_events(inst, fd, buf, count))) {
        Ok(Ok(n)) => {
            set_errno(saved);
            n
        }
        Ok(Err(e)) => {
            set_errno(e);
            -1
        }
        Err(_) => {
            set_errno(saved);
            pass()
        }
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn read(fd: c_int, buf: *mut c_void, count: size_t) -> ssize_t {
    if marked(fd) {
        // SAFETY: the caller's arguments, under read(2)'s contract.
        return unsafe { read_slow(fd, buf, count) };
    }
    // SAFETY: the caller's arguments, forwarded unchanged.
    unsafe { real::read(fd, buf, count) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn __read_chk(
    fd: c_int,
    buf: *mut c_void,
    count: size_t,
    buflen: size_t,
) -> ssize_t {
    if marked(fd) && count <= buflen {
        // SAFETY: the caller's arguments; the buffer holds `count` bytes.
        return unsafe { read_slow(fd, buf, count) };
    }
    // SAFETY: the caller's arguments, forwarded unchanged (the original
    // reports an overflowing `count`).
    unsafe { real::__read_chk(fd, buf, count, buflen) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(wd: i32, mask: u32, name: &[u8]) -> Vec<u8> {
        let mut w = Watches::default();
        if name.is_empty() {
            w.push(wd, mask, 0, &[]);
        } else {
            w.push_name(wd, mask, name);
        }
        w.queue
    }

    /// (wd, mask, name) of each queued event.
    fn queued(w: &Watches) -> Vec<(i32, u32, Vec<u8>)> {
        let (q, mut off, mut out) = (&w.queue, 0, Vec::new());
        while off + HEADER <= q.len() {
            let word = |o: usize| u32::from_ne_bytes(q[off + o..off + o + 4].try_into().unwrap());
            let len = word(12) as usize;
            let name = &q[off + HEADER..off + HEADER + len];
            let name = &name[..name.iter().position(|&c| c == 0).unwrap_or(len)];
            out.push((word(0) as i32, word(4), name.to_vec()));
            off += HEADER + len;
        }
        out
    }

    /// A merged watch 1 over kernel watches 1 (a mod) and 2 (the create
    /// target), next to a plain watch 7; descriptor -1, so removals fail.
    fn watches() -> Watches {
        let mut w = Watches::default();
        w.virt.push(VWatch {
            wd: 1,
            virt: b"/game/data/d".to_vec(),
            mask: IN_CREATE | IN_DELETE | IN_DELETE_SELF,
            kmask: IN_CREATE | IN_DELETE | IN_DELETE_SELF | IN_MASK_ADD,
            phys: vec![1, 2],
            target: Some(Target {
                path: b"/ow/d".to_vec(),
                wd: 2,
                pending: None,
                synth: vec![b"early".to_vec()],
            }),
        });
        w.plain.push((7, libc::IN_MODIFY));
        w
    }

    #[test]
    fn events_of_every_physical_watch_carry_the_programs_descriptor() {
        let mut w = watches();
        let mut data = event(2, IN_CREATE, b"new.txt");
        data.extend(event(1, IN_DELETE, b"old.txt"));
        data.extend(event(7, libc::IN_MODIFY, b""));
        // Not asked for: filtered.
        data.extend(event(2, libc::IN_ATTRIB, b"new.txt"));
        // Unknown: the program's own, as the kernel gave it.
        data.extend(event(9, libc::IN_ACCESS, b""));
        w.process(None, -1, &data);
        assert_eq!(
            queued(&w),
            [
                (1, IN_CREATE, b"new.txt".to_vec()),
                (1, IN_DELETE, b"old.txt".to_vec()),
                (7, libc::IN_MODIFY, vec![]),
                (9, libc::IN_ACCESS, vec![]),
            ]
        );
    }

    #[test]
    fn one_physical_directory_going_is_not_the_merged_one_going() {
        let mut w = watches();
        let mut data = event(2, IN_DELETE_SELF, b"");
        data.extend(event(2, IN_IGNORED, b""));
        w.process(None, -1, &data);
        assert_eq!(queued(&w), []);
        assert_eq!(w.virt[0].phys, [1]);
        assert_eq!(w.virt[0].target.as_ref().unwrap().wd, -1);
        // The last one: the program's watch ends.
        let mut data = event(1, IN_DELETE_SELF, b"");
        data.extend(event(1, IN_IGNORED, b""));
        w.process(None, -1, &data);
        assert_eq!(
            queued(&w),
            [(1, IN_DELETE_SELF, vec![]), (1, IN_IGNORED, vec![])]
        );
        assert!(w.virt.is_empty());
    }

    #[test]
    fn a_reported_name_is_not_created_twice_and_dead_watches_are_silent() {
        let mut w = watches();
        w.dead.push(5);
        let mut data = event(2, IN_CREATE, b"early");
        data.extend(event(5, IN_CREATE, b"x"));
        data.extend(event(5, IN_IGNORED, b""));
        data.extend(event(2, IN_DELETE, b"early"));
        data.extend(event(2, IN_CREATE, b"early"));
        w.process(None, -1, &data);
        assert_eq!(
            queued(&w),
            [
                (1, IN_DELETE, b"early".to_vec()),
                (1, IN_CREATE, b"early".to_vec())
            ]
        );
        assert!(w.dead.is_empty());
    }

    #[test]
    fn delivery_moves_whole_events_only() {
        let mut w = watches();
        w.push_name(1, IN_CREATE, b"a");
        w.push_name(1, IN_CREATE, b"b");
        let mut buf = [0u8; 40];
        assert_eq!(w.deliver(buf.as_mut_ptr().cast(), 40), Ok(32));
        assert_eq!(w.deliver(buf.as_mut_ptr().cast(), 16), Err(libc::EINVAL));
        assert_eq!(w.deliver(buf.as_mut_ptr().cast(), 32), Ok(32));
        assert!(w.queue.is_empty());
    }
}
