//! `fts_*`. Like nftw, glibc's fts reads directories through internal calls
//! out of our reach; this one has the documented semantics (pre- and
//! post-order visits, FTS_SKIP/FTS_AGAIN/FTS_FOLLOW, fts_children, sorting,
//! cycle detection) and reads through the hooked functions. It never changes
//! directory: `fts_accpath` is always the full path, which is valid whatever
//! FTS_NOCHDIR says.

#![allow(clippy::missing_safety_doc)]

use std::ffi::CStr;

use libc::{c_char, c_int, c_long, c_ushort, c_void};

use crate::state;

#[repr(C)]
pub struct FtsEnt {
    cycle: *mut FtsEnt,
    parent: *mut FtsEnt,
    link: *mut FtsEnt,
    number: c_long,
    pointer: *mut c_void,
    accpath: *mut c_char,
    path: *mut c_char,
    errno: c_int,
    symfd: c_int,
    pathlen: c_ushort,
    namelen: c_ushort,
    ino: u64,
    dev: u64,
    nlink: u64,
    level: i16,
    info: c_ushort,
    flags: c_ushort,
    instr: c_ushort,
    statp: *mut libc::stat,
    name: [c_char; 1],
}

type Compar = Option<unsafe extern "C" fn(*const *const FtsEnt, *const *const FtsEnt) -> c_int>;

/// glibc's `FTS`; our private state follows it in the same allocation.
#[repr(C)]
pub struct FtsHead {
    cur: *mut FtsEnt,
    child: *mut FtsEnt,
    array: *mut *mut FtsEnt,
    dev: u64,
    path: *mut c_char,
    rfd: c_int,
    pathlen: c_int,
    nitems: c_int,
    compar: Compar,
    options: c_int,
}

const _: () = assert!(std::mem::offset_of!(FtsEnt, name) == 112);
const _: () = assert!(std::mem::size_of::<FtsHead>() == 72);

const FTS_COMFOLLOW: c_int = 0x1;
const FTS_LOGICAL: c_int = 0x2;
const FTS_NOSTAT: c_int = 0x8;
const FTS_SEEDOT: c_int = 0x20;
const FTS_XDEV: c_int = 0x40;
const FTS_OPTIONMASK: c_int = 0xff;
const FTS_NAMEONLY: c_int = 0x100;

const FTS_D: c_ushort = 1;
const FTS_DC: c_ushort = 2;
const FTS_DEFAULT: c_ushort = 3;
const FTS_DNR: c_ushort = 4;
const FTS_DOT: c_ushort = 5;
const FTS_DP: c_ushort = 6;
const FTS_F: c_ushort = 8;
const FTS_NS: c_ushort = 10;
const FTS_NSOK: c_ushort = 11;
const FTS_SL: c_ushort = 12;
const FTS_SLNONE: c_ushort = 13;

const FTS_AGAIN: c_ushort = 1;
const FTS_FOLLOW: c_ushort = 2;
const FTS_NOINSTR: c_ushort = 3;
const FTS_SKIP: c_ushort = 4;

#[repr(C)]
struct Fts {
    head: FtsHead,
    root_parent: *mut FtsEnt,
    roots: *mut FtsEnt,
    /// False until the first `fts_read`.
    started: bool,
    /// An empty C string for `fts_path` of the stream.
    empty: [c_char; 1],
}

fn alloc_ent(name: &[u8], path: &[u8], parent: *mut FtsEnt, level: i16) -> *mut FtsEnt {
    let size = std::mem::offset_of!(FtsEnt, name) + name.len() + 1;
    // SAFETY: fresh zeroed allocations, sized for the trailing name.
    unsafe {
        let e = libc::calloc(1, size) as *mut FtsEnt;
        let st = libc::calloc(1, std::mem::size_of::<libc::stat>()) as *mut libc::stat;
        let p = libc::malloc(path.len() + 1) as *mut u8;
        if e.is_null() || st.is_null() || p.is_null() {
            libc::free(e.cast());
            libc::free(st.cast());
            libc::free(p.cast());
            return std::ptr::null_mut();
        }
        std::ptr::copy_nonoverlapping(path.as_ptr(), p, path.len());
        *p.add(path.len()) = 0;
        let np = (e as *mut u8).add(std::mem::offset_of!(FtsEnt, name));
        std::ptr::copy_nonoverlapping(name.as_ptr(), np, name.len());
        *np.add(name.len()) = 0;
        (*e).path = p.cast();
        (*e).accpath = p.cast();
        (*e).pathlen = path.len().min(u16::MAX as usize) as c_ushort;
        (*e).namelen = name.len().min(u16::MAX as usize) as c_ushort;
        (*e).parent = parent;
        (*e).level = level;
        (*e).statp = st;
        (*e).instr = FTS_NOINSTR;
        e
    }
}

/// Frees an entry made by [`alloc_ent`] with its path and stat buffers.
///
/// # Safety
/// `e` must be null or an entry from `alloc_ent` that is not freed yet; it must
/// not be used afterwards (nor reached through any list still in use).
unsafe fn free_ent(e: *mut FtsEnt) {
    if e.is_null() {
        return;
    }
    // SAFETY: e is a live alloc_ent entry (caller contract); statp, path and
    // the entry itself are its own malloc/calloc blocks, each freed once here.
    unsafe {
        libc::free((*e).statp.cast());
        libc::free((*e).path.cast());
        libc::free(e.cast());
    }
}

/// Frees a `fts_link` chain of entries.
///
/// # Safety
/// `e` must be null or the head of a chain of live [`alloc_ent`] entries that
/// this chain alone owns; none of them may be used afterwards.
unsafe fn free_list(mut e: *mut FtsEnt) {
    while !e.is_null() {
        // SAFETY: e is a live entry of the chain (caller contract); its link is
        // read before it is freed.
        let next = unsafe { (*e).link };
        // SAFETY: e is live, owned by the chain, and not touched again.
        unsafe { free_ent(e) };
        e = next;
    }
}

/// The entry's `fts_path` as bytes.
///
/// # Safety
/// `e` must be a live [`alloc_ent`] entry, and the slice must not be used after
/// the entry is freed.
unsafe fn ent_path<'a>(e: *const FtsEnt) -> &'a [u8] {
    // SAFETY: e is live (caller contract) and alloc_ent NUL-terminated its path.
    unsafe { CStr::from_ptr((*e).path) }.to_bytes()
}

/// The entry's `fts_name` as bytes.
///
/// # Safety
/// `e` must be a live [`alloc_ent`] entry, and the slice must not be used after
/// the entry is freed.
unsafe fn ent_name<'a>(e: *const FtsEnt) -> &'a [u8] {
    // SAFETY: e is live (caller contract) and alloc_ent wrote a NUL-terminated
    // name into the space allocated after the header.
    unsafe { CStr::from_ptr((*e).name.as_ptr()) }.to_bytes()
}

/// Fills in the stat data and `fts_info` of an entry.
///
/// # Safety
/// `e` must be a live [`alloc_ent`] entry whose `fts_parent` chain consists of
/// live entries and ends in null or an entry of level < 0 (the root parent).
unsafe fn fts_stat(sp: &Fts, e: *mut FtsEnt, follow: bool) -> c_ushort {
    let opts = sp.head.options;
    // SAFETY: e is live (caller contract); statp is its own calloc'd stat,
    // borrowed nowhere else.
    let st = unsafe { &mut *(*e).statp };
    // SAFETY: e is live.
    let path = unsafe { (*e).path };
    let follow = follow || opts & FTS_LOGICAL != 0;
    // SAFETY: e is live.
    unsafe { (*e).errno = 0 };
    let ok = if follow {
        // SAFETY: path is e's NUL-terminated path; st is a writable stat.
        if unsafe { libc::stat(path, st) } == 0 {
            true
        } else {
            let err = crate::guard::errno();
            // SAFETY: as for stat above.
            if err == libc::ENOENT && unsafe { libc::lstat(path, st) } == 0 {
                crate::guard::set_errno(0);
                return FTS_SLNONE;
            }
            // SAFETY: e is live.
            unsafe { (*e).errno = err };
            false
        }
    // SAFETY: path is e's NUL-terminated path; st is a writable stat.
    } else if unsafe { libc::lstat(path, st) } == 0 {
        true
    } else {
        // SAFETY: e is live.
        unsafe { (*e).errno = crate::guard::errno() };
        false
    };
    if !ok {
        // SAFETY: libc::stat is plain integers; all-zero is a valid value.
        *st = unsafe { std::mem::zeroed() };
        return FTS_NS;
    }
    // SAFETY: e is live.
    unsafe {
        (*e).dev = st.st_dev;
        (*e).ino = st.st_ino;
        (*e).nlink = st.st_nlink;
    }
    match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR => {
            // SAFETY: e is live; name is used only within this call.
            let name = unsafe { ent_name(e) };
            // SAFETY: e is live.
            if (name == b"." || name == b"..") && unsafe { (*e).level } > 0 {
                return FTS_DOT;
            }
            // A directory that is its own ancestor: a cycle.
            // SAFETY: e is live.
            let mut a = unsafe { (*e).parent };
            // SAFETY: a is non-null, so a live ancestor (caller contract:
            // parents are freed only after their children).
            while !a.is_null() && unsafe { (*a).level } >= 0 {
                // SAFETY: a is a live ancestor, as above.
                if unsafe { (*a).dev == st.st_dev && (*a).ino == st.st_ino } {
                    // SAFETY: e is live.
                    unsafe { (*e).cycle = a };
                    return FTS_DC;
                }
                // SAFETY: a is a live ancestor, as above.
                a = unsafe { (*a).parent };
            }
            FTS_D
        }
        libc::S_IFLNK => FTS_SL,
        libc::S_IFREG => FTS_F,
        _ => FTS_DEFAULT,
    }
}

/// Sorts a chain with the stream's comparator, if it has one; returns the new
/// head.
///
/// # Safety
/// `head` must be null or a chain of live [`alloc_ent`] entries, and the
/// stream's comparator (the caller's `fts_open` argument) must be safe to call
/// on pointers to those entries' pointers.
unsafe fn sort_list(sp: &Fts, head: *mut FtsEnt) -> *mut FtsEnt {
    let Some(cmp) = sp.head.compar else {
        return head;
    };
    let mut v: Vec<*mut FtsEnt> = Vec::new();
    let mut e = head;
    while !e.is_null() {
        v.push(e);
        // SAFETY: e is a non-null entry of the chain, live (caller contract).
        e = unsafe { (*e).link };
    }
    if v.len() < 2 {
        return head;
    }
    // SAFETY: the comparator takes pointers to array elements, as qsort passes.
    unsafe {
        libc::qsort(
            v.as_mut_ptr().cast(),
            v.len(),
            std::mem::size_of::<*mut FtsEnt>(),
            Some(std::mem::transmute::<
                unsafe extern "C" fn(*const *const FtsEnt, *const *const FtsEnt) -> c_int,
                unsafe extern "C" fn(*const c_void, *const c_void) -> c_int,
            >(cmp)),
        )
    };
    for w in v.windows(2) {
        // SAFETY: every element of v is a live entry of the chain.
        unsafe { (*w[0]).link = w[1] };
    }
    // SAFETY: v has at least two elements, all live entries of the chain.
    unsafe { (**v.last().unwrap()).link = std::ptr::null_mut() };
    v[0]
}

/// Reads the children of directory `dir` into a linked list.
///
/// # Safety
/// `dir` must be a live [`alloc_ent`] entry meeting [`fts_stat`]'s contract
/// (it becomes the children's parent), and the stream's comparator must meet
/// [`sort_list`]'s.
unsafe fn build(sp: &Fts, dir: *mut FtsEnt, nameonly: bool) -> Result<*mut FtsEnt, c_int> {
    // SAFETY: dir is live (caller contract); the path is copied out at once.
    let mut dpath = unsafe { ent_path(dir) }.to_vec();
    dpath.push(0);
    // SAFETY: dpath was just NUL-terminated.
    let d = unsafe { super::dir::opendir(dpath.as_ptr().cast()) };
    dpath.pop();
    if d.is_null() {
        return Err(crate::guard::errno());
    }
    let base_len = if dpath.ends_with(b"/") {
        dpath.len() - 1
    } else {
        dpath.len()
    };
    // SAFETY: dir is live.
    let level = unsafe { (*dir).level } + 1;
    let (mut head, mut tail): (*mut FtsEnt, *mut FtsEnt) =
        (std::ptr::null_mut(), std::ptr::null_mut());
    loop {
        // SAFETY: d is the non-null stream opened above, closed after the loop.
        let de = unsafe { super::dir::readdir64(d) };
        if de.is_null() {
            break;
        }
        // SAFETY: de is non-null and valid until the next readdir64/closedir on
        // d; d_name is NUL-terminated. The name is copied before either.
        let name = unsafe { CStr::from_ptr((*de).d_name.as_ptr()) }.to_bytes();
        if (name == b"." || name == b"..") && sp.head.options & FTS_SEEDOT == 0 {
            continue;
        }
        let mut p = dpath[..base_len].to_vec();
        p.push(b'/');
        p.extend_from_slice(name);
        let e = alloc_ent(name, &p, dir, level);
        if e.is_null() {
            break;
        }
        // SAFETY: de is still the valid entry read above.
        let no_stat = sp.head.options & FTS_NOSTAT != 0 && unsafe { (*de).d_type } != libc::DT_DIR;
        let info = if nameonly || no_stat {
            FTS_NSOK
        } else {
            // SAFETY: e is a fresh non-null entry whose parent is dir (live,
            // with a live parent chain per our contract).
            unsafe { fts_stat(sp, e, false) }
        };
        // SAFETY: e is a fresh non-null entry.
        unsafe { (*e).info = info };
        if head.is_null() {
            head = e;
        } else {
            // SAFETY: head is non-null, so tail is the live entry added last.
            unsafe { (*tail).link = e };
        }
        tail = e;
    }
    // SAFETY: d is the stream opened above and is not used again.
    unsafe { super::dir::closedir(d) };
    // SAFETY: head is null or the chain of fresh entries built above; the
    // comparator meets sort_list's contract per ours.
    Ok(unsafe { sort_list(sp, head) })
}

/// Builds our stream: a calloc'd [`Fts`] whose head is handed out as `FTS *`.
///
/// # Safety
/// As `fts_open(3)`: `argv` must be null or a NULL-terminated array of
/// NUL-terminated paths, and `compar`, if set, must be safe to call on two
/// pointers to `FTSENT *`.
unsafe fn open_impl(argv: *const *mut c_char, options: c_int, compar: Compar) -> *mut FtsHead {
    if options & !FTS_OPTIONMASK != 0 || argv.is_null() {
        crate::guard::set_errno(libc::EINVAL);
        return std::ptr::null_mut();
    }
    // SAFETY: calloc has no preconditions; a null result is checked below.
    let sp = unsafe { libc::calloc(1, std::mem::size_of::<Fts>()) } as *mut Fts;
    if sp.is_null() {
        return std::ptr::null_mut();
    }
    // SAFETY: sp is non-null, sized and aligned for an Fts (calloc), and
    // all-zero is a valid Fts (null pointers, false, None, zeros).
    let spr = unsafe { &mut *sp };
    spr.head.options = options;
    spr.head.compar = compar;
    spr.head.rfd = -1;
    spr.head.path = spr.empty.as_mut_ptr();
    spr.root_parent = alloc_ent(b"", b"", std::ptr::null_mut(), -1);
    let (mut head, mut tail): (*mut FtsEnt, *mut FtsEnt) =
        (std::ptr::null_mut(), std::ptr::null_mut());
    let mut i = 0;
    loop {
        // SAFETY: argv is NULL-terminated (caller contract) and we stop at the
        // first null, so argv.add(i) stays in the array.
        let a = unsafe { *argv.add(i) };
        if a.is_null() {
            break;
        }
        i += 1;
        // SAFETY: each non-null argv element is a NUL-terminated path.
        let path = unsafe { CStr::from_ptr(a) }.to_bytes();
        if path.is_empty() {
            // SAFETY: head is the chain built so far, root_parent is null or
            // our entry, sp is the calloc'd stream; nothing is handed out yet
            // and none of them is used again.
            unsafe {
                free_list(head);
                free_ent(spr.root_parent);
                libc::free(sp.cast());
            }
            crate::guard::set_errno(libc::ENOENT);
            return std::ptr::null_mut();
        }
        let e = alloc_ent(path, path, spr.root_parent, 0);
        if e.is_null() {
            break;
        }
        // SAFETY: e is a fresh non-null entry; its parent is null or the
        // root parent (level -1), where fts_stat's ancestor walk stops.
        unsafe { (*e).info = fts_stat(spr, e, options & FTS_COMFOLLOW != 0) };
        if head.is_null() {
            head = e;
        } else {
            // SAFETY: head is non-null, so tail is the live entry added last.
            unsafe { (*tail).link = e };
        }
        tail = e;
    }
    // SAFETY: head is null or the chain of fresh roots built above; compar
    // meets sort_list's contract per ours.
    spr.roots = unsafe { sort_list(spr, head) };
    spr.head.cur = std::ptr::null_mut();
    sp.cast()
}

/// One step of the walk (see `fts_read`); returns the entry to report.
///
/// # Safety
/// `sp` must be a stream built by [`open_impl`] and not closed: its current
/// entry, roots, pending child list and every entry reachable from them are
/// live, as this module's functions keep them.
unsafe fn read_impl(sp: &mut Fts) -> *mut FtsEnt {
    let p = sp.head.cur;
    if !sp.started {
        sp.started = true;
        sp.head.cur = sp.roots;
        if !sp.roots.is_null() {
            // SAFETY: roots is non-null, a live entry of the stream.
            sp.head.dev = unsafe { (*sp.roots).dev };
        }
        return sp.roots;
    }
    if p.is_null() {
        return std::ptr::null_mut();
    }
    // SAFETY: p is the stream's non-null current entry, live (our contract).
    let instr = unsafe { (*p).instr };
    // SAFETY: p is live, as above.
    unsafe { (*p).instr = FTS_NOINSTR };
    if instr == FTS_AGAIN {
        // SAFETY: p is live, with the live parent chain fts_stat needs.
        unsafe { (*p).info = fts_stat(sp, p, false) };
        return p;
    }
    // SAFETY: p is live.
    if instr == FTS_FOLLOW && matches!(unsafe { (*p).info }, FTS_SL | FTS_SLNONE) {
        // SAFETY: p is live, with the live parent chain fts_stat needs.
        unsafe { (*p).info = fts_stat(sp, p, true) };
        // SAFETY: p is live.
        if unsafe { (*p).info } == FTS_D {
            return p;
        }
    }
    // A directory in pre-order: descend, unless skipped or on another device.
    // SAFETY: p is live.
    if unsafe { (*p).info } == FTS_D {
        // SAFETY: p is live.
        let skip = instr == FTS_SKIP
            || (sp.head.options & FTS_XDEV != 0 && unsafe { (*p).dev } != sp.head.dev);
        if skip {
            // SAFETY: the pending child list is owned by the stream alone and
            // is dropped from it just below.
            unsafe { free_list(sp.head.child) };
            sp.head.child = std::ptr::null_mut();
            // SAFETY: p is live.
            unsafe { (*p).info = FTS_DP };
            return p;
        }
        let children = if !sp.head.child.is_null() {
            std::mem::replace(&mut sp.head.child, std::ptr::null_mut())
        } else {
            // SAFETY: p is a live directory entry with a live parent chain;
            // the comparator is the caller's fts_open argument.
            match unsafe { build(sp, p, false) } {
                Ok(c) => c,
                Err(e) => {
                    // SAFETY: p is live.
                    unsafe {
                        (*p).errno = e;
                        (*p).info = FTS_DNR;
                    }
                    return p;
                }
            }
        };
        if children.is_null() {
            // SAFETY: p is live.
            unsafe { (*p).info = FTS_DP };
            return p;
        }
        // Remember the list on the directory so the post-order visit frees it.
        // SAFETY: p is a live FTS_D entry and children a fresh list that
        // nothing else owns (built, or taken out of sp.head.child, above).
        unsafe { (*p).pointer_children_set(children) };
        sp.head.cur = children;
        return children;
    }
    // Next sibling, or the parent in post-order.
    // SAFETY: p is live.
    let next = unsafe { (*p).link };
    if !next.is_null() {
        sp.head.cur = next;
        // SAFETY: next is a non-null sibling of p in a live list.
        if unsafe { (*next).level } == 0 {
            // SAFETY: next is live, as above.
            sp.head.dev = unsafe { (*next).dev };
        }
        return next;
    }
    // SAFETY: p is live.
    let parent = unsafe { (*p).parent };
    // SAFETY: parent is non-null, so a live ancestor of p: a directory
    // outlives its children list, which is freed after its post-order visit.
    if parent.is_null() || unsafe { (*parent).level } < 0 {
        sp.head.cur = std::ptr::null_mut();
        return std::ptr::null_mut();
    }
    // Children are freed when their directory's post-order visit ends (the
    // next read): keep them until then, like BSD fts.
    sp.head.cur = parent;
    // SAFETY: parent is live, as above.
    unsafe { (*parent).info = FTS_DP };
    parent
}

impl FtsEnt {
    /// A directory's children list is kept in `fts_cycle`, which is unused for
    /// FTS_D/FTS_DP entries (only FTS_DC ones point at their ancestor). It is
    /// freed after the directory's post-order visit.
    ///
    /// # Safety
    /// Nothing is dereferenced here, but the stream takes ownership of `c`:
    /// `self` must be an FTS_D entry of the stream without a stored list, and
    /// `c` null or a chain of live [`alloc_ent`] entries that nothing else owns
    /// (`fts_read`/`fts_close` free it).
    unsafe fn pointer_children_set(&mut self, c: *mut FtsEnt) {
        self.cycle = c;
    }
}

/// # Safety
/// As `fts_open(3)`: `argv` is a NULL-terminated array of NUL-terminated
/// paths; `compar`, if set, compares two `const FTSENT **`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fts_open(
    argv: *const *mut c_char,
    options: c_int,
    compar: Compar,
) -> *mut FtsHead {
    if state::get().is_none() {
        // SAFETY: the caller's arguments, passed on unchanged under the same
        // contract.
        return unsafe { crate::real::fts_open(argv, options, compar) };
    }
    // SAFETY: our contract is open_impl's.
    unsafe { open_impl(argv, options, compar) }
}

/// # Safety
/// As `fts_read(3)`: `sp` is a stream from `fts_open`, not closed, and not
/// used by another thread at the same time.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fts_read(sp: *mut FtsHead) -> *mut FtsEnt {
    if state::get().is_none() {
        // SAFETY: the caller's stream, passed on unchanged.
        return unsafe { crate::real::fts_read(sp) };
    }
    // SAFETY: with the view active (the state is set once, in our constructor,
    // and never cleared), fts_open returned an Fts from open_impl whose head
    // is its first field; the caller gives us exclusive use for the call.
    let sp = unsafe { &mut *(sp as *mut Fts) };
    // Free the children of a directory whose post-order visit just ended.
    let prev = sp.head.cur;
    // SAFETY: prev is the stream's non-null current entry, live.
    let prev_was_dp = !prev.is_null() && unsafe { (*prev).info } == FTS_DP;
    // SAFETY: sp is a stream built by open_impl and not closed.
    let r = unsafe { read_impl(sp) };
    if prev_was_dp && !prev.is_null() && prev != r {
        // SAFETY: read_impl never frees the entry it starts from, so prev is
        // still live.
        let kids = unsafe { (*prev).cycle };
        if !kids.is_null() {
            // SAFETY: prev is live and FTS_DP, so its cycle field holds the
            // children list read_impl stored there, which only it owns; the
            // walk has moved past them, and the list is unlinked before being
            // freed.
            unsafe {
                (*prev).cycle = std::ptr::null_mut();
                free_list(kids);
            }
        }
    }
    r
}

/// # Safety
/// As `fts_children(3)`: `sp` is a stream from `fts_open`, not closed, and not
/// used by another thread at the same time.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fts_children(sp: *mut FtsHead, options: c_int) -> *mut FtsEnt {
    if state::get().is_none() {
        // SAFETY: the caller's stream, passed on unchanged.
        return unsafe { crate::real::fts_children(sp, options) };
    }
    if options != 0 && options != FTS_NAMEONLY {
        crate::guard::set_errno(libc::EINVAL);
        return std::ptr::null_mut();
    }
    // SAFETY: as in fts_read: an Fts from open_impl, ours for the call.
    let sp = unsafe { &mut *(sp as *mut Fts) };
    crate::guard::set_errno(0);
    if !sp.started {
        return sp.roots;
    }
    let p = sp.head.cur;
    // SAFETY: p is the stream's non-null current entry, live.
    if p.is_null() || unsafe { (*p).info } != FTS_D {
        return std::ptr::null_mut();
    }
    // SAFETY: the pending child list (from an earlier fts_children) is owned
    // by the stream alone and is dropped from it just below.
    unsafe { free_list(sp.head.child) };
    sp.head.child = std::ptr::null_mut();
    // SAFETY: p is a live FTS_D entry with a live parent chain; the
    // comparator is the caller's fts_open argument.
    match unsafe { build(sp, p, options == FTS_NAMEONLY) } {
        Ok(c) => {
            if options != FTS_NAMEONLY {
                sp.head.child = c;
            } else {
                // Name-only lists are the caller's to look at, not to descend.
                // SAFETY: sp.head.child was set to null above, so this frees
                // nothing.
                unsafe { free_list(sp.head.child) };
                sp.head.child = c;
            }
            c
        }
        Err(_) => std::ptr::null_mut(),
    }
}

/// # Safety
/// As `fts_set(3)`: `e` is null or an entry this stream returned and has not
/// freed yet.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fts_set(sp: *mut FtsHead, e: *mut FtsEnt, instr: c_int) -> c_int {
    if state::get().is_none() {
        // SAFETY: the caller's arguments, passed on unchanged.
        return unsafe { crate::real::fts_set(sp, e, instr) };
    }
    if !(0..=4).contains(&instr) || e.is_null() {
        crate::guard::set_errno(libc::EINVAL);
        return 1;
    }
    // SAFETY: e is non-null and a live entry of the stream (caller contract).
    unsafe { (*e).instr = instr as c_ushort };
    0
}

/// Frees a chain of entries and, recursively, the children lists their
/// directories keep.
///
/// # Safety
/// `e` must be null or a chain of live [`alloc_ent`] entries that the caller
/// alone owns, whose FTS_D/FTS_DP entries have a `cycle` field that is null or
/// their own children list; nothing may be used afterwards.
unsafe fn free_tree(e: *mut FtsEnt) {
    let mut e = e;
    while !e.is_null() {
        // SAFETY: e is a live entry of the chain (caller contract).
        let next = unsafe { (*e).link };
        // SAFETY: e is live.
        if unsafe { (*e).info == FTS_D || (*e).info == FTS_DP } {
            // SAFETY: e is live.
            let kids = unsafe { (*e).cycle };
            if !kids.is_null() {
                // SAFETY: a directory's cycle field holds its own children
                // list (caller contract), owned by it alone.
                unsafe { free_tree(kids) };
            }
        }
        // SAFETY: e is live, owned by the chain, and not touched again.
        unsafe { free_ent(e) };
        e = next;
    }
}

/// # Safety
/// As `fts_close(3)`: `sp` is null or a stream from `fts_open`, not closed;
/// neither it nor its entries are used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fts_close(sp: *mut FtsHead) -> c_int {
    if state::get().is_none() {
        // SAFETY: the caller's stream, passed on unchanged.
        return unsafe { crate::real::fts_close(sp) };
    }
    if sp.is_null() {
        return 0;
    }
    // SAFETY: as in fts_read: a non-null Fts from open_impl, ours for the call.
    let s = unsafe { &mut *(sp as *mut Fts) };
    // SAFETY: the stream alone owns its pending child list, its roots (with
    // the children lists their directories keep) and its root parent; sp is
    // the calloc'd Fts. The caller gives all of them up, and s is not used
    // after sp is freed.
    unsafe {
        free_list(s.head.child);
        free_tree(s.roots);
        free_ent(s.root_parent);
        libc::free(sp.cast());
    }
    0
}

/// # Safety
/// As [`fts_open`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fts64_open(
    argv: *const *mut c_char,
    options: c_int,
    compar: Compar,
) -> *mut FtsHead {
    // SAFETY: same contract as fts_open.
    unsafe { fts_open(argv, options, compar) }
}
/// # Safety
/// As [`fts_read`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fts64_read(sp: *mut FtsHead) -> *mut FtsEnt {
    // SAFETY: same contract as fts_read.
    unsafe { fts_read(sp) }
}
/// # Safety
/// As [`fts_children`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fts64_children(sp: *mut FtsHead, options: c_int) -> *mut FtsEnt {
    // SAFETY: same contract as fts_children.
    unsafe { fts_children(sp, options) }
}
/// # Safety
/// As [`fts_set`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fts64_set(sp: *mut FtsHead, e: *mut FtsEnt, instr: c_int) -> c_int {
    // SAFETY: same contract as fts_set.
    unsafe { fts_set(sp, e, instr) }
}
/// # Safety
/// As [`fts_close`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fts64_close(sp: *mut FtsHead) -> c_int {
    // SAFETY: same contract as fts_close.
    unsafe { fts_close(sp) }
}
