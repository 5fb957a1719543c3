//! Directory streams. A virtual directory gets our own stream object carrying
//! the merged listing; it is told apart from glibc's `DIR` by its first field,
//! which glibc uses for the (never negative) descriptor.

#![allow(clippy::missing_safety_doc)]

use libc::{
    AT_FDCWD, DIR, O_CLOEXEC, O_DIRECTORY, O_RDONLY, c_char, c_int, c_long, c_void, dirent64,
    size_t, ssize_t,
};
use std::panic::{AssertUnwindSafe, catch_unwind};

use super::{Detour, hook_result, or_bypass, resolve_in_view, with_path};
use crate::guard::set_errno;
use crate::lookup::{Lookup, LookupBox, fd_entry};
use crate::state::State;
use crate::{fdtable, real};
use usvfs_view::semantics::listing::{Cursor, Listing};

const TAG: i32 = -0x5653_4653; // "VSFS", negative: never a glibc DIR's fd
const MAGIC: u64 = 0x7573_7666_735f_6469; // "usvfs_di"

#[repr(C)]
struct VDir {
    tag: i32,
    _pad: u32,
    magic: u64,
    fd: c_int,
    pos: usize,
    listing: Listing,
    ent: dirent64,
}

#[inline(always)]
fn as_vdir<'a>(d: *mut DIR) -> Option<&'a mut VDir> {
    if d.is_null() {
        return None;
    }
    // SAFETY: every DIR (ours or glibc's) is at least 16 bytes long.
    let (tag, magic) = unsafe { (*(d as *const i32), *(d as *const u64).add(1)) };
    // SAFETY: tag and magic identify a VDir we allocated.
    (tag == TAG && magic == MAGIC).then(|| unsafe { &mut *(d as *mut VDir) })
}

fn self_ino(fd: c_int) -> u64 {
    crate::sys::fstat(fd).map_or(0, |s| s.st_ino)
}

fn new_vdir(st: &State, lk: &Lookup, fd: c_int) -> *mut DIR {
    // Signals held once for the listing's many allocations.
    crate::alloc::held(|| new_vdir_held(st, lk, fd))
}

fn new_vdir_held(st: &State, lk: &Lookup, fd: c_int) -> *mut DIR {
    let listing = st.view().listing(
        lk.res.node,
        lk.virt.as_bytes(),
        lk.phys.as_bytes(),
        self_ino(fd),
    );
    let v = Box::new(VDir {
        tag: TAG,
        _pad: 0,
        magic: MAGIC,
        fd,
        pos: 0,
        listing,
        // SAFETY: dirent64 is plain data; all-zero is valid.
        ent: unsafe { std::mem::zeroed() },
    });
    Box::into_raw(v).cast()
}

/// Opens a physical directory fd standing for a virtual one (for `dirfd`,
/// `fstat` and `fchdir`): the winner's directory, or the real one.
fn open_backing(lk: &mut Lookup) -> c_int {
    // SAFETY: NUL-terminated path.
    unsafe {
        real::openat(
            AT_FDCWD,
            lk.phys.as_c_ptr(),
            O_RDONLY | O_DIRECTORY | O_CLOEXEC,
            0,
        )
    }
}

/// # Safety
/// As `opendir(3)`: `path` is null or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn opendir(path: *const c_char) -> *mut DIR {
    with_path(
        AT_FDCWD,
        path,
        true,
        || {
            // SAFETY: the caller's path, passed on unchanged.
            let d = unsafe { real::opendir(path) };
            if !d.is_null() {
                // SAFETY: d is the open stream opendir just returned.
                fdtable::mark_physical(unsafe { real::dirfd(d) });
            }
            d
        },
        |st, lk| {
            if !lk.is_virtual_dir(st) {
                // SAFETY: as_c_ptr NUL-terminates lk.phys, which outlives the
                // call.
                let d = unsafe { real::opendir(lk.phys.as_c_ptr()) };
                if !d.is_null() {
                    // SAFETY: d is the open stream opendir just returned.
                    let fd = unsafe { real::dirfd(d) };
                    fdtable::insert(fd, lk.virt.as_bytes(), fdtable::Ident::Now);
                }
                return d;
            }
            let fd = open_backing(lk);
            if fd < 0 {
                return std::ptr::null_mut();
            }
            fdtable::insert(fd, lk.virt.as_bytes(), fdtable::Ident::Now);
            match catch_unwind(AssertUnwindSafe(|| new_vdir(st, lk, fd))) {
                Ok(d) => d,
                Err(_) => {
                    fdtable::remove(fd);
                    // SAFETY: fd was opened above and nothing else holds it
                    // (new_vdir panicked before taking it); closed once.
                    unsafe { real::close(fd) };
                    // SAFETY: as_c_ptr NUL-terminates lk.phys.
                    unsafe { real::opendir(lk.phys.as_c_ptr()) }
                }
            }
        },
    )
}

/// # Safety
/// As `fdopendir(3)`: on success the stream owns `fd`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fdopendir(fd: c_int) -> *mut DIR {
    hook_result(
        // SAFETY: a plain descriptor number, passed on unchanged.
        || unsafe { real::fdopendir(fd) },
        |st| {
            // Only a descriptor recorded on a directory the view lists.
            let lk = or_bypass!(fd_entry(st, fd).and_then(|e| merged_dir(st, e)));
            // Same checks glibc makes: a directory, opened for reading.
            match crate::sys::fstat(fd) {
                Err(e) => return Detour::Error(e),
                Ok(s) if s.st_mode & libc::S_IFMT != libc::S_IFDIR => {
                    return Detour::Error(libc::ENOTDIR);
                }
                Ok(_) => {}
            }
            Detour::Success(new_vdir(st, &lk, fd))
        },
    )
}

/// The merged directory of the view a recorded descriptor was opened on, if
/// it is one (its node is needed to list it).
fn merged_dir(st: &'static State, e: &fdtable::FdEntry) -> Option<LookupBox> {
    let mut lk = Lookup::new();
    let found = matches!(
        resolve_in_view(st, AT_FDCWD, &e.vpath, true, &mut lk),
        Detour::Success(())
    );
    (found && lk.is_virtual_dir(st)).then_some(lk)
}

/// The entry `getdents64` lists through: a descriptor already being listed
/// keeps its cursor (checked once, when the listing started).
fn getdents_entry(st: &'static State, fd: c_int) -> Option<&'static fdtable::FdEntry> {
    match fdtable::state(fd) {
        fdtable::Slot::Physical => None,
        fdtable::Slot::Virtual(e) if e.dents.lock().is_ok_and(|c| c.is_some()) => Some(e),
        _ => fd_entry(st, fd),
    }
}

fn next_entry(v: &mut VDir) -> *mut dirent64 {
    let Some(e) = v.listing.entries.get(v.pos).copied() else {
        return std::ptr::null_mut();
    };
    v.pos += 1;
    let name = v.listing.name(&e);
    let n = name.len().min(255);
    v.ent.d_ino = e.ino;
    v.ent.d_off = v.pos as i64;
    v.ent.d_type = e.d_type;
    v.ent.d_reclen = std::mem::size_of::<dirent64>() as u16;
    for (dst, &src) in v.ent.d_name.iter_mut().zip(&name[..n]) {
        *dst = src as c_char;
    }
    v.ent.d_name[n] = 0;
    &mut v.ent
}

/// # Safety
/// As `readdir64(3)`: `d` is an open stream (from `opendir`/`fdopendir`), not
/// used by another thread at the same time.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn readdir64(d: *mut DIR) -> *mut dirent64 {
    match as_vdir(d) {
        Some(v) => next_entry(v),
        // SAFETY: not one of ours, so the caller's glibc stream, passed on.
        None => unsafe { real::readdir64(d) },
    }
}

/// # Safety
/// As [`readdir64`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn readdir(d: *mut DIR) -> *mut libc::dirent {
    match as_vdir(d) {
        // dirent and dirent64 share their layout on 64-bit Linux.
        Some(v) => next_entry(v).cast(),
        // SAFETY: not one of ours, so the caller's glibc stream, passed on.
        None => unsafe { real::readdir(d) },
    }
}

/// # Safety
/// As `readdir64_r(3)`: `d` is an open stream, `entry` is writable for a
/// `dirent64` of the caller's own, and `out` is writable for a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn readdir64_r(
    d: *mut DIR,
    entry: *mut dirent64,
    out: *mut *mut dirent64,
) -> c_int {
    match as_vdir(d) {
        Some(v) => {
            let e = next_entry(v);
            // SAFETY: out and entry are writable (our contract); e, when
            // non-null, is the stream's own v.ent, a whole dirent64 that is not
            // the caller's entry buffer.
            unsafe {
                if e.is_null() {
                    *out = std::ptr::null_mut();
                } else {
                    std::ptr::copy_nonoverlapping(e, entry, 1);
                    *out = entry;
                }
            }
            0
        }
        // SAFETY: not one of ours, so the caller's glibc stream, passed on
        // with the caller's buffers.
        None => unsafe { real::readdir64_r(d, entry, out) },
    }
}

/// # Safety
/// As [`readdir64_r`], with `struct dirent`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn readdir_r(
    d: *mut DIR,
    entry: *mut libc::dirent,
    out: *mut *mut libc::dirent,
) -> c_int {
    match as_vdir(d) {
        // SAFETY: same contract as readdir64_r; dirent and dirent64 share
        // their layout on 64-bit Linux.
        Some(_) => unsafe { readdir64_r(d, entry.cast(), out.cast()) },
        // SAFETY: the caller's glibc stream and buffers, passed on.
        None => unsafe { real::readdir_r(d, entry, out) },
    }
}

/// # Safety
/// As `rewinddir(3)`: `d` is an open stream.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rewinddir(d: *mut DIR) {
    match as_vdir(d) {
        Some(v) => v.pos = 0,
        // SAFETY: not one of ours, so the caller's glibc stream, passed on.
        None => unsafe { real::rewinddir(d) },
    }
}

/// # Safety
/// As `seekdir(3)`: `d` is an open stream.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn seekdir(d: *mut DIR, pos: c_long) {
    match as_vdir(d) {
        Some(v) => v.pos = pos.max(0) as usize,
        // SAFETY: not one of ours, so the caller's glibc stream, passed on.
        None => unsafe { real::seekdir(d, pos) },
    }
}

/// # Safety
/// As `telldir(3)`: `d` is an open stream.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn telldir(d: *mut DIR) -> c_long {
    match as_vdir(d) {
        Some(v) => v.pos as c_long,
        // SAFETY: not one of ours, so the caller's glibc stream, passed on.
        None => unsafe { real::telldir(d) },
    }
}

/// # Safety
/// As `dirfd(3)`: `d` is an open stream.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dirfd(d: *mut DIR) -> c_int {
    match as_vdir(d) {
        Some(v) => v.fd,
        // SAFETY: not one of ours, so the caller's glibc stream, passed on.
        None => unsafe { real::dirfd(d) },
    }
}

/// # Safety
/// As `closedir(3)`: `d` is an open stream, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn closedir(d: *mut DIR) -> c_int {
    match as_vdir(d) {
        Some(v) => {
            let fd = v.fd;
            fdtable::remove(fd);
            // SAFETY: allocated by new_vdir; the caller gives up the stream.
            // Signals held once for the listing's many frees.
            crate::alloc::held(|| drop(unsafe { Box::from_raw(v as *mut VDir) }));
            // SAFETY: fd was the stream's backing descriptor, owned by it and
            // closed only here.
            unsafe { real::close(fd) }
        }
        None => {
            if !d.is_null() {
                // SAFETY: d is non-null and, not being ours, the caller's
                // open glibc stream.
                fdtable::remove(unsafe { real::dirfd(d) });
            }
            // SAFETY: the caller's glibc stream (or null), passed on.
            unsafe { real::closedir(d) }
        }
    }
}

type Filter = Option<unsafe extern "C" fn(*const dirent64) -> c_int>;
type Compar = Option<unsafe extern "C" fn(*const c_void, *const c_void) -> c_int>;

/// glibc's scandir opens the directory internally, out of our reach: this one
/// goes through the hooked stream functions instead.
///
/// # Safety
/// `d` must be null or an open stream that `scan` takes over (it is closed);
/// `namelist` must be writable for a pointer; `filter` and `compar`, if set,
/// must be safe to call on an entry and on two pointers to entry pointers.
unsafe fn scan(
    d: *mut DIR,
    namelist: *mut *mut *mut dirent64,
    filter: Filter,
    compar: Compar,
) -> c_int {
    if d.is_null() {
        return -1;
    }
    let mut list: Vec<*mut dirent64> = Vec::new();
    loop {
        // SAFETY: d is a non-null open stream, ours until closed below.
        let e = unsafe { readdir64(d) };
        if e.is_null() {
            break;
        }
        if let Some(f) = filter
            // SAFETY: the caller's filter (our contract), given the valid entry
            // readdir64 just returned.
            && unsafe { f(e) } == 0
        {
            continue;
        }
        // SAFETY: e is non-null and valid until the next readdir64 on d.
        let reclen = unsafe { (*e).d_reclen } as usize;
        let size = reclen.max(std::mem::size_of::<dirent64>());
        // SAFETY: malloc has no preconditions; a null result is checked below.
        let copy = unsafe { libc::malloc(size) } as *mut dirent64;
        if copy.is_null() {
            for p in list {
                // SAFETY: p is a malloc block made by this loop, freed once.
                unsafe { libc::free(p.cast()) };
            }
            // SAFETY: d is open, ours, and not used again.
            unsafe { closedir(d) };
            set_errno(libc::ENOMEM);
            return -1;
        }
        // SAFETY: e's record is reclen bytes long (its own d_reclen: the
        // kernel's record in glibc's buffer, or a whole dirent64 for our
        // streams) and copy holds size >= reclen bytes of a fresh block.
        unsafe {
            std::ptr::copy_nonoverlapping(e.cast::<u8>(), copy.cast::<u8>(), reclen.min(size))
        };
        list.push(copy);
    }
    // SAFETY: d is open, ours, and not used again.
    unsafe { closedir(d) };
    let n = list.len();
    // SAFETY: malloc has no preconditions; a null result is checked below.
    let arr = unsafe { libc::malloc((n.max(1)) * std::mem::size_of::<*mut dirent64>()) }
        as *mut *mut dirent64;
    if arr.is_null() {
        for p in list {
            // SAFETY: p is a malloc block made by the loop above, freed once.
            unsafe { libc::free(p.cast()) };
        }
        set_errno(libc::ENOMEM);
        return -1;
    }
    // SAFETY: arr holds at least n pointers and is a fresh block, apart from
    // list's buffer.
    unsafe { std::ptr::copy_nonoverlapping(list.as_ptr(), arr, n) };
    if let Some(c) = compar {
        // SAFETY: arr holds n initialized elements of the given size; c is the
        // caller's comparator for pointers to entry pointers (our contract).
        unsafe { libc::qsort(arr.cast(), n, std::mem::size_of::<*mut dirent64>(), Some(c)) };
    }
    // SAFETY: namelist is writable for a pointer (our contract).
    unsafe { *namelist = arr };
    n as c_int
}

/// # Safety
/// As `scandir(3)`: `path` is null or a NUL-terminated string, `namelist` is
/// writable for a pointer, and `filter`/`compar`, if set, take an entry and two
/// pointers to entry pointers.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn scandir64(
    path: *const c_char,
    namelist: *mut *mut *mut dirent64,
    filter: Filter,
    compar: Compar,
) -> c_int {
    // SAFETY: path per opendir's contract; scan takes the fresh stream, and
    // its other arguments are the caller's under scan's contract.
    unsafe { scan(opendir(path), namelist, filter, compar) }
}

/// # Safety
/// As [`scandir64`] (`struct dirent` is `struct dirent64` on 64-bit Linux).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn scandir(
    path: *const c_char,
    namelist: *mut *mut *mut dirent64,
    filter: Filter,
    compar: Compar,
) -> c_int {
    // SAFETY: path per opendir's contract; scan takes the fresh stream, and
    // its other arguments are the caller's under scan's contract.
    unsafe { scan(opendir(path), namelist, filter, compar) }
}

/// Opens `(dirfd, path)` as a directory stream through the hooks.
///
/// # Safety
/// `path` must be null or a NUL-terminated string.
unsafe fn open_dir_at(dirfd: c_int, path: *const c_char) -> *mut DIR {
    // SAFETY: path per our contract.
    let fd = unsafe {
        crate::hooks::open::usvfs_openat(dirfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0)
    };
    if fd < 0 {
        return std::ptr::null_mut();
    }
    // SAFETY: fd was just opened; on success the stream owns it.
    let d = unsafe { fdopendir(fd) };
    if d.is_null() {
        // SAFETY: fdopendir failed, so fd is still ours alone; closed once.
        unsafe { close(fd) };
    }
    d
}

use super::fd::close;

/// # Safety
/// As `scandirat(3)`: `path` is null or a NUL-terminated string, `namelist`
/// is writable for a pointer, and `filter`/`compar`, if set, take an entry and
/// two pointers to entry pointers.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn scandirat(
    dirfd: c_int,
    path: *const c_char,
    namelist: *mut *mut *mut dirent64,
    filter: Filter,
    compar: Compar,
) -> c_int {
    // SAFETY: path per open_dir_at's contract; scan takes the fresh stream,
    // and its other arguments are the caller's under scan's contract.
    unsafe { scan(open_dir_at(dirfd, path), namelist, filter, compar) }
}

/// # Safety
/// As [`scandirat`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn scandirat64(
    dirfd: c_int,
    path: *const c_char,
    namelist: *mut *mut *mut dirent64,
    filter: Filter,
    compar: Compar,
) -> c_int {
    // SAFETY: same contract as scandirat.
    unsafe { scandirat(dirfd, path, namelist, filter, compar) }
}

/// `getdents64` on a descriptor of a virtual directory emits the merged listing.
///
/// # Safety
/// As `getdents64(2)`: `buf` is writable for `count` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getdents64(fd: c_int, buf: *mut c_void, count: size_t) -> ssize_t {
    hook_result(
        // SAFETY: the caller's arguments, passed on unchanged.
        || unsafe { real::getdents64(fd, buf, count) },
        |st| {
            let e = or_bypass!(getdents_entry(st, fd));
            let Ok(mut cur) = e.dents.lock() else {
                return Detour::Bypass;
            };
            if cur.is_none() {
                let lk = or_bypass!(merged_dir(st, e));
                // Signals held once for the listing's many allocations.
                let listing = crate::alloc::held(|| {
                    st.view().listing(
                        lk.res.node,
                        lk.virt.as_bytes(),
                        lk.phys.as_bytes(),
                        self_ino(fd),
                    )
                });
                *cur = Some(Cursor { listing, pos: 0 });
            }
            let c = cur.as_mut().expect("set above");
            // SAFETY: the caller's buffer is writable for `count` bytes.
            match unsafe { emit_dents(c, buf.cast(), count) } {
                Ok(n) => Detour::Success(n),
                Err(e) => Detour::Error(e),
            }
        },
    )
}

/// Writes the cursor's next entries as `linux_dirent64` records into `out`
/// (`count` bytes); `EINVAL` when not even one fits.
///
/// # Safety
/// `out` must be writable for `count` bytes.
unsafe fn emit_dents(c: &mut Cursor, out: *mut u8, count: size_t) -> Result<ssize_t, i32> {
    let mut used = 0usize;
    while let Some(ent) = c.listing.entries.get(c.pos).copied() {
        let name = c.listing.name(&ent);
        let reclen = (19 + name.len() + 1).div_ceil(8) * 8;
        if used + reclen > count {
            if used == 0 {
                return Err(libc::EINVAL);
            }
            break;
        }
        // SAFETY: the record fits in the caller's buffer (checked above).
        unsafe {
            let p = out.add(used);
            std::ptr::write_bytes(p, 0, reclen);
            (p as *mut u64).write_unaligned(ent.ino);
            (p.add(8) as *mut i64).write_unaligned((c.pos + 1) as i64);
            (p.add(16) as *mut u16).write_unaligned(reclen as u16);
            *p.add(18) = ent.d_type;
            std::ptr::copy_nonoverlapping(name.as_ptr(), p.add(19), name.len());
        }
        used += reclen;
        c.pos += 1;
    }
    Ok(used as ssize_t)
}
