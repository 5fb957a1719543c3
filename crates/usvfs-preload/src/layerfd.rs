//! Directory descriptors of the layers' sources. A hooked call on a file a
//! layer provides goes to the kernel as `(layer descriptor, path below the
//! source)` instead of the absolute physical path: the kernel then walks only
//! the components below the layer, where the absolute path would make it walk
//! the layer's whole prefix (`/home/u/MO2/mods/Some Mod/…`) on every call. On
//! a busy dentry cache that prefix walk is most of a `stat`'s cost.
//!
//! The descriptors are `O_PATH`, close-on-exec, opened per layer once it has
//! been used a few times (never in a vfork child, whose descriptor table is
//! not the parent's) and
//! placed high, below 1024, where programs rarely look. A program that closes
//! one through `close`, `dup2`, `dup3`, `close_range` or `closefrom` only
//! makes the layer go back to absolute paths until it is opened again. A
//! descriptor that went stale (the source directory was replaced) is caught
//! by its `ENOENT`/`ENOTDIR`: the call is made again by absolute path.

use libc::{c_char, c_int};
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};

use usvfs_view::path::PathBuffer;

use crate::guard::errno;
use crate::lookup::Lookup;
use crate::state::State;

/// Layers (by index id) that may get a descriptor; later ones use absolute
/// paths. How many do depends on the descriptor limit (see [`base`]).
const SLOTS: usize = 1024;
/// Layer descriptors under a descriptor limit of 1024 or less.
const FEW: usize = 128;
/// How often a layer descriptor is checked against its source path, so a
/// source directory replaced behind the view's back shows within this time.
const RECHECK_MS: u64 = 100;
/// A layer is opened on this many-th use, not before: opening costs three
/// system calls and saves well under a microsecond per call, so a layer a
/// process touches a few times is cheaper by path (1,000 layers of 14 files
/// each walked once paid more for the opening than it saved).
const OPEN_AFTER: u32 = 8;
/// The `fd` half of a slot when opening failed (no such directory, or no
/// descriptor left): absolute paths for that mapping.
const UNAVAILABLE: u32 = u32::MAX;

/// One layer's descriptor. `packed`: the layer it was opened for (a 32-bit
/// tag of its source path: a new mapping may put another layer at this id)
/// and the descriptor plus one (0: not opened).
struct Slot {
    packed: AtomicU64,
    /// The directory the descriptor holds (0, 0: not taken yet).
    dev: AtomicU64,
    ino: AtomicU64,
    checked_ms: AtomicU64,
    /// Uses by path before the descriptor was opened.
    uses: AtomicU32,
}

static SLOT: [Slot; SLOTS] = [const {
    Slot {
        packed: AtomicU64::new(0),
        dev: AtomicU64::new(0),
        ino: AtomicU64::new(0),
        checked_ms: AtomicU64::new(0),
        uses: AtomicU32::new(0),
    }
}; SLOTS];
/// The lowest number a layer descriptor may get (0: not computed yet, -1:
/// the descriptor limit is too low to spare any).
static BASE: AtomicI32 = AtomicI32::new(0);
/// How many layers get a descriptor (set with `BASE`).
static USABLE: AtomicI32 = AtomicI32::new(0);
/// The descriptors numbered `BASE..BASE + 4096` that are layer descriptors
/// now, one bit each: a `close` of any other number costs one bit test.
static OWNED: [AtomicU64; OWNED_SPAN / 64] = [const { AtomicU64::new(0) }; OWNED_SPAN / 64];
const OWNED_SPAN: usize = 4096;

/// Marks `fd` as a layer descriptor (or not); false when it is out of span.
fn set_owned(fd: c_int, owned: bool) -> bool {
    let Some(i) = usize::try_from(fd - BASE.load(Ordering::Relaxed))
        .ok()
        .filter(|&i| i < OWNED_SPAN)
    else {
        return false;
    };
    let bit = 1u64 << (i % 64);
    if owned {
        OWNED[i / 64].fetch_or(bit, Ordering::AcqRel);
    } else {
        OWNED[i / 64].fetch_and(!bit, Ordering::AcqRel);
    }
    true
}

fn is_owned(fd: c_int) -> bool {
    usize::try_from(fd - BASE.load(Ordering::Relaxed))
        .ok()
        .filter(|&i| i < OWNED_SPAN)
        .is_some_and(|i| OWNED[i / 64].load(Ordering::Acquire) & (1u64 << (i % 64)) != 0)
}

fn pack(tag: u32, fd: u32) -> u64 {
    (u64::from(tag) << 32) | u64::from(fd.wrapping_add(1))
}

/// Descriptors a new mapping's other layer displaced from their slot: left
/// open (a call in flight on the number must never reach another layer),
/// at most this many; past it, new layers go by path.
const MAX_DISPLACED: u32 = 256;
static DISPLACED: AtomicU32 = AtomicU32::new(0);

/// The low 32 bits of the fd half, minus one (`None`: not opened).
fn fd_of(packed: u64) -> Option<u32> {
    (packed as u32).checked_sub(1)
}

/// Where the physical file of `lk` is reached: `(layer descriptor, path
/// below the layer's source)`, when a layer descriptor serves it.
fn target(st: &State, lk: &mut Lookup) -> Option<(c_int, *const c_char)> {
    if lk.res.from_journal {
        return None;
    }
    let l = st.snap.layer(lk.res.node?)?;
    base()?;
    if l as usize >= (USABLE.load(Ordering::Relaxed) as usize).min(SLOTS) {
        return None;
    }
    let src = st.snap.layer_source(l);
    let phys = lk.phys.as_bytes();
    // The resolution may have gone elsewhere (a respelled parent, another
    // provider of a vanished directory): only a path below this source fits.
    if src.len() < 2
        || phys.len() <= src.len() + 1
        || phys[src.len()] != b'/'
        || !phys.starts_with(src)
    {
        return None;
    }
    let tag = *st.layer_tags.get(l as usize)?;
    let fd = descriptor(&SLOT[l as usize], tag, src)?;
    // SAFETY: the offset is inside the NUL-terminated buffer as_c_ptr returns.
    Some((fd, unsafe { lk.phys.as_c_ptr().add(src.len() + 1) }))
}

/// Milliseconds of a coarse monotonic clock (vDSO: no system call).
fn now_ms() -> u64 {
    let mut t = std::mem::MaybeUninit::<libc::timespec>::uninit();
    // SAFETY: a valid out-pointer.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, t.as_mut_ptr()) } != 0 {
        return 0;
    }
    // SAFETY: clock_gettime succeeded.
    let t = unsafe { t.assume_init() };
    t.tv_sec as u64 * 1000 + t.tv_nsec as u64 / 1_000_000
}

/// The descriptor of the layer in `slot` (source `src`, tagged `g`): opened
/// once the layer is used often enough, checked against `src` now and then.
#[inline]
fn descriptor(slot: &Slot, g: u32, src: &[u8]) -> Option<c_int> {
    let v = slot.packed.load(Ordering::Acquire);
    if (v >> 32) as u32 == g
        && let Some(fd) = fd_of(v)
    {
        if fd == UNAVAILABLE {
            return None;
        }
        if now_ms().saturating_sub(slot.checked_ms.load(Ordering::Relaxed)) < RECHECK_MS {
            return Some(fd as c_int);
        }
        return recheck(slot, v, g, fd as c_int, src);
    }
    if slot.uses.fetch_add(1, Ordering::Relaxed) < OPEN_AFTER {
        return None;
    }
    open_layer(slot, v, g, src)
}

/// `stat` of a NUL-terminated copy of `src` (raw system call): device and inode.
fn identity(src: &[u8]) -> Option<(u64, u64)> {
    let mut p = PathBuffer::new();
    p.set(src).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: a NUL-terminated path and a valid out-pointer; no hook re-entered.
    let r = unsafe {
        libc::syscall(
            libc::SYS_newfstatat,
            libc::AT_FDCWD,
            p.as_c_ptr(),
            st.as_mut_ptr(),
            0,
        )
    };
    // SAFETY: filled in when the call succeeded.
    (r == 0)
        .then(|| unsafe { st.assume_init() })
        .map(|s| (s.st_dev, s.st_ino))
}

/// The source path still names the directory the descriptor holds: keep it;
/// else open the directory there now.
#[cold]
#[inline(never)]
fn recheck(slot: &Slot, v: u64, g: u32, fd: c_int, src: &[u8]) -> Option<c_int> {
    let mut held = (
        slot.dev.load(Ordering::Relaxed),
        slot.ino.load(Ordering::Relaxed),
    );
    if held == (0, 0) {
        // Not taken when it was opened (a system call most processes never
        // need): take it now.
        if let Ok(st) = crate::sys::fstat(fd) {
            held = (st.st_dev, st.st_ino);
            slot.dev.store(held.0, Ordering::Relaxed);
            slot.ino.store(held.1, Ordering::Relaxed);
        }
    }
    let same = identity(src).is_some_and(|id| id == held);
    if same {
        slot.checked_ms.store(now_ms(), Ordering::Relaxed);
        return Some(fd);
    }
    open_layer(slot, v, g, src)
}

/// Opens the layer's source as a high, close-on-exec `O_PATH` descriptor and
/// publishes it in `slot` (which held `v`). A number once published keeps
/// standing for its layer: when the source was replaced, the new directory
/// takes the old number (`dup3`); when another layer took the slot, the old
/// descriptor stays open and the new one gets a number of its own.
#[cold]
#[inline(never)]
fn open_layer(slot: &Slot, v: u64, g: u32, src: &[u8]) -> Option<c_int> {
    // A vfork child shares our memory but not our descriptor table: a
    // descriptor it opened would not exist in the parent.
    if crate::hooks::calls::in_vfork_child() {
        return None;
    }
    let base = base()?;
    let mut p = PathBuffer::new();
    p.set(src).ok()?;
    let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC;
    // SAFETY: a NUL-terminated path; raw system calls (no hook re-entered).
    let low =
        unsafe { libc::syscall(libc::SYS_openat, libc::AT_FDCWD, p.as_c_ptr(), flags) } as c_int;
    let old = fd_of(v).filter(|&f| f != UNAVAILABLE);
    let same_layer = (v >> 32) as u32 == g;
    if low < 0 {
        if old.is_none() {
            let _ = slot.packed.compare_exchange(
                v,
                pack(g, UNAVAILABLE),
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
        }
        return None;
    }
    let close = |fd: c_int| {
        // SAFETY: a descriptor of ours that was never published.
        unsafe { libc::syscall(libc::SYS_close, fd) };
    };
    if same_layer && let Some(old) = old {
        // The source was replaced: calls in flight on the number reach the
        // new directory of the same layer.
        // SAFETY: dup3 onto our own published descriptor's number.
        let r = unsafe { libc::syscall(libc::SYS_dup3, low, old as c_int, libc::O_CLOEXEC) };
        close(low);
        if r < 0 {
            return Some(old as c_int);
        }
        slot.dev.store(0, Ordering::Relaxed);
        slot.ino.store(0, Ordering::Relaxed);
        slot.checked_ms.store(now_ms(), Ordering::Relaxed);
        return Some(old as c_int);
    }
    if old.is_some() && DISPLACED.fetch_add(1, Ordering::Relaxed) >= MAX_DISPLACED {
        close(low);
        return None;
    }
    // SAFETY: fcntl on the descriptor just opened.
    let mut high =
        unsafe { libc::syscall(libc::SYS_fcntl, low, libc::F_DUPFD_CLOEXEC, base) } as c_int;
    close(low);
    if high >= 0 && !set_owned(high, true) {
        // Beyond the span a close could not be told apart: not kept.
        close(high);
        high = -1;
    }
    // The identity is taken at the first check, 100 ms from now.
    slot.dev.store(0, Ordering::Relaxed);
    slot.ino.store(0, Ordering::Relaxed);
    slot.checked_ms.store(now_ms(), Ordering::Relaxed);
    let new = pack(g, if high >= 0 { high as u32 } else { UNAVAILABLE });
    match slot
        .packed
        .compare_exchange(v, new, Ordering::AcqRel, Ordering::Acquire)
    {
        Ok(_) => (high >= 0).then_some(high),
        Err(cur) => {
            // Another thread got there first: use its result if it is for
            // this layer.
            if high >= 0 {
                set_owned(high, false);
                close(high);
            }
            fd_of(cur)
                .filter(|&f| f != UNAVAILABLE && (cur >> 32) as u32 == g)
                .map(|f| f as c_int)
        }
    }
}

/// A descriptor limit under which layer descriptors go from 1024 up.
const HIGH_LIMIT: i64 = 1024 + SLOTS as i64 + 16;

/// The soft descriptor limit (0: unknown).
fn soft_limit() -> i64 {
    let mut lim = std::mem::MaybeUninit::<libc::rlimit>::uninit();
    // SAFETY: a valid out-pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, lim.as_mut_ptr()) } == 0 {
        // SAFETY: getrlimit succeeded.
        unsafe { lim.assume_init() }.rlim_cur.min(1 << 20) as i64
    } else {
        0
    }
}

/// Under a limit that puts layer descriptors from 1024 up (Wine and Proton
/// raise it, and their processes inherit it), grows the descriptor table
/// past 1024 now, from the constructor, while the process has one thread:
/// the kernel grows a table that threads share only after an RCU grace
/// period, so a multi-threaded program's first layer descriptor would
/// otherwise stall it 10-20 ms. `fd` is any open descriptor of ours.
pub fn grow_table_early(fd: c_int) {
    if soft_limit() < HIGH_LIMIT {
        return;
    }
    // SAFETY: fcntl and close on descriptors of ours; raw system calls.
    unsafe {
        let high = libc::syscall(libc::SYS_fcntl, fd, libc::F_DUPFD_CLOEXEC, 1024) as c_int;
        if high >= 0 {
            libc::syscall(libc::SYS_close, high);
        }
    }
}

/// The lowest descriptor number for layer descriptors, computed once: from
/// 880 up to 1008 (128 layers) under a descriptor limit of 1024 or less,
/// leaving the program the numbers below and a margin above; from 1024 up
/// (1,024 layers) when the limit allows 2,064 or more (Wine and Proton
/// raise it), above every `select` set. `None` under a limit below 400.
fn base() -> Option<c_int> {
    let b = BASE.load(Ordering::Relaxed);
    if b != 0 {
        return (b > 0).then_some(b);
    }
    let soft = soft_limit();
    let (b, usable) = if soft >= HIGH_LIMIT {
        (1024, SLOTS)
    } else if soft.min(1024) - FEW as i64 - 16 >= 256 {
        ((soft.min(1024) - FEW as i64 - 16) as i32, FEW)
    } else {
        (-1, 0)
    };
    USABLE.store(usable as i32, Ordering::Relaxed);
    BASE.store(b, Ordering::Relaxed);
    (b > 0).then_some(b)
}

/// Runs `call` on the physical file of `lk`: through its layer's descriptor
/// when one serves it, else by absolute path (also when it fails with
/// `ENOENT`, `ENOTDIR` or `EBADF`: a descriptor that went stale or was just
/// replaced makes the call again by path).
#[inline]
pub fn call<R: Copy + PartialOrd + Default>(
    st: &State,
    lk: &mut Lookup,
    f: impl Fn(c_int, *const c_char) -> R,
) -> R {
    if let Some((fd, rel)) = target(st, lk) {
        let saved = errno();
        let r = f(fd, rel);
        if !(r < R::default() && matches!(errno(), libc::ENOENT | libc::ENOTDIR | libc::EBADF)) {
            return r;
        }
        // The retry's own errno, or none if it succeeds.
        crate::guard::set_errno(saved);
    }
    f(libc::AT_FDCWD, lk.phys.as_c_ptr())
}

/// Runs `call` on the physical file of `lk` by its absolute path, never
/// through a layer's descriptor (calls that change the file: a descriptor
/// may still name a source folder replaced in the last 100 ms).
#[inline]
pub fn by_path<R>(_st: &State, lk: &mut Lookup, f: impl Fn(c_int, *const c_char) -> R) -> R {
    f(libc::AT_FDCWD, lk.phys.as_c_ptr())
}

/// The program is about to close or replace descriptor `fd`: if it is a
/// layer's, that layer goes back to absolute paths (and reopens on next use).
#[inline]
pub fn forget(fd: c_int) {
    // One load and a bit test for every other number (this is on `close`'s
    // path); `forget_range` leaves a vfork child's closes alone.
    let b = BASE.load(Ordering::Relaxed);
    if b > 0 && fd >= b && is_owned(fd) {
        forget_range(fd as u32, fd as u32);
    }
}

/// As [`forget`] for every descriptor in `lo..=hi`.
pub fn forget_range(lo: u32, hi: u32) {
    let b = BASE.load(Ordering::Relaxed);
    // A vfork child closes its own copies; the parent's stay ours.
    if b <= 0 || hi < b as u32 || crate::hooks::calls::in_vfork_child() {
        return;
    }
    for slot in &SLOT {
        let v = slot.packed.load(Ordering::Relaxed);
        if let Some(fd) = fd_of(v).filter(|&fd| fd != UNAVAILABLE && (lo..=hi).contains(&fd))
            // The program closes it: not ours to close again.
            && slot.packed.compare_exchange(v, 0, Ordering::AcqRel, Ordering::Relaxed).is_ok()
        {
            set_owned(fd as c_int, false);
        }
    }
}
