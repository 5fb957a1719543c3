//! Starting programs: children stay in the view even when they scrub their
//! environment, programs and scripts that live in the view start from their
//! physical file, and blacklisted executables start outside the view.

#![allow(clippy::missing_safety_doc)]

use libc::{AT_FDCWD, c_char, c_int, pid_t};
use std::ffi::CStr;

use crate::guard::{self, errno, set_errno};
use crate::lookup::{Lookup, Outcome, bytes, lookup};
use crate::state::{self, State};
use crate::{env, real};
use usvfs_view::semantics::exec::{self, Located};

/// A NULL-terminated `char*` array and the bytes it owns of what it points
/// into (entries made by [`CArray::from_entries`] may point into the
/// caller's own strings).
pub struct CArray {
    _store: Vec<Vec<u8>>,
    ptrs: Vec<*const c_char>,
}

impl CArray {
    pub fn new(items: Vec<Vec<u8>>) -> Self {
        let mut store: Vec<Vec<u8>> = items
            .into_iter()
            .map(|mut v| {
                v.push(0);
                v
            })
            .collect();
        let mut ptrs: Vec<*const c_char> = Vec::with_capacity(store.len() + 1);
        ptrs.extend(store.iter_mut().map(|v| v.as_ptr().cast::<c_char>()));
        ptrs.push(std::ptr::null());
        CArray {
            _store: store,
            ptrs,
        }
    }

    /// Borrowed entries are used in place, owned ones get their NUL.
    ///
    /// # Safety
    /// Every borrowed entry is all of a C string's bytes (its NUL right
    /// after it), alive while the array is used.
    pub unsafe fn from_entries(items: Vec<std::borrow::Cow<'_, [u8]>>) -> Self {
        let mut store = Vec::new();
        let mut ptrs: Vec<*const c_char> = Vec::with_capacity(items.len() + 1);
        for it in items {
            match it {
                std::borrow::Cow::Borrowed(b) => ptrs.push(b.as_ptr().cast()),
                std::borrow::Cow::Owned(mut v) => {
                    v.push(0);
                    // The bytes stay where they are when the vector moves.
                    ptrs.push(v.as_ptr().cast());
                    store.push(v);
                }
            }
        }
        ptrs.push(std::ptr::null());
        CArray {
            _store: store,
            ptrs,
        }
    }

    pub fn as_ptr(&self) -> *const *const c_char {
        self.ptrs.as_ptr()
    }
}

/// The strings of a NULL-terminated `char*` array, borrowed: each slice is
/// all of its C string (for [`CArray::from_entries`]).
///
/// # Safety
/// `p` is NULL or a NULL-terminated array of C strings that live for `'a`.
pub unsafe fn borrow_array<'a>(p: *const *const c_char) -> Vec<&'a [u8]> {
    let mut n = 0;
    // SAFETY: counted up to the array's NULL terminator.
    while !p.is_null() && !unsafe { *p.add(n) }.is_null() {
        n += 1;
    }
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        // SAFETY: i is below the terminator; each element is a C string.
        out.push(unsafe { CStr::from_ptr(*p.add(i)) }.to_bytes());
    }
    out
}

/// Reads a NULL-terminated `char*` array.
pub unsafe fn read_array(p: *const *const c_char) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    if p.is_null() {
        return out;
    }
    let mut i = 0;
    loop {
        // SAFETY: i is below the array's NULL terminator, which the loop stops at.
        let s = unsafe { *p.add(i) };
        if s.is_null() {
            break;
        }
        // SAFETY: s is a non-NULL element of a NULL-terminated string array.
        let b = unsafe { CStr::from_ptr(s) }.to_bytes();
        // Room for the NUL `CArray` adds, so it does not move every string.
        let mut v = Vec::with_capacity(b.len() + 1);
        v.extend_from_slice(b);
        out.push(v);
        i += 1;
    }
    out
}

/// Where `path` leads in the view.
fn locate(st: &State, path: &[u8]) -> Result<Located, i32> {
    // Outside the view (most programs): no lookup buffers touched, which
    // in a forked child means no pages copied.
    if crate::lookup::certainly_outside(st, AT_FDCWD, path) {
        return Ok(Located::AsGiven);
    }
    let mut lk = Lookup::new();
    match lookup(st, AT_FDCWD, path, true, &mut lk) {
        Outcome::Pass => Ok(Located::AsGiven),
        Outcome::Fail(e) => Err(e),
        Outcome::Redirect => Ok(Located::Physical {
            phys: lk.phys.as_bytes().to_vec(),
            virt: lk.virt.as_bytes().to_vec(),
        }),
    }
}

/// The first bytes of a physical file (for `#!`).
fn head(phys: &[u8]) -> Option<Vec<u8>> {
    // On the heap, not in a path buffer on the stack (see `Prepared`).
    let p = std::ffi::CString::new(phys).ok()?;
    // SAFETY: a NUL-terminated path; the descriptor is closed below.
    let fd = unsafe { real::openat(AT_FDCWD, p.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    let mut buf = vec![0u8; 256];
    // SAFETY: reading into a buffer of the size passed, from our descriptor.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    // SAFETY: closing the descriptor opened above.
    unsafe { real::close(fd) };
    buf.truncate(n.max(0) as usize);
    Some(buf)
}

/// A ready exec: program, arguments and environment, all owned. Small (the
/// program's path on the heap): in a forked child every stack page the
/// preparation touches is a page fault, and a copy when the parent had it.
pub struct Prepared {
    program: std::ffi::CString,
    argv: CArray,
    env: CArray,
    /// This process's hold, to leave open across the exec: the child keeps
    /// the instance held until it takes its own hold (`USVFS_HOLD`).
    hold: Option<c_int>,
}

impl Prepared {
    fn new(
        program: &[u8],
        argv: Vec<Vec<u8>>,
        env: CArray,
        hold: Option<c_int>,
    ) -> Result<Self, i32> {
        if program.len() >= usvfs_view::path::PATH_MAX {
            return Err(libc::ENAMETOOLONG);
        }
        Ok(Prepared {
            program: std::ffi::CString::new(program).map_err(|_| libc::ENOENT)?,
            argv: CArray::new(argv),
            env,
            hold,
        })
    }

    /// Execs. Called without the re-entrancy guard: after `vfork` the child
    /// shares our memory (thread-local guard included) with the parent.
    fn exec(self) -> c_int {
        with_hold_inherited(self.hold, || {
            // SAFETY: program, argv and env are NUL-terminated and owned by self until execve returns.
            unsafe { real::execve(self.program.as_ptr(), self.argv.as_ptr(), self.env.as_ptr()) }
        })
    }
}

/// Runs `exec` with the hold `fd` left open across it; when the exec fails
/// and returns, the hold is close-on-exec again (errno kept).
fn with_hold_inherited(fd: Option<c_int>, exec: impl FnOnce() -> c_int) -> c_int {
    let Some(fd) = fd else { return exec() };
    crate::hold::set_inherited(fd, true);
    let r = exec();
    let e = errno();
    crate::hold::set_inherited(fd, false);
    set_errno(e);
    r
}

/// A program the preload cannot follow (static, set-id, with file
/// capabilities, Go) runs outside the view: say so once on stderr and in the
/// instance log (whatever its level), and refuse it with `EACCES` under
/// `--strict`. Reads only the file's headers, at exec time.
fn check_followable(
    st: &State,
    shown: &[u8],
    why: Option<usvfs_view::program::Unfollowable>,
    strict: bool,
) -> Result<(), i32> {
    let Some(why) = why else {
        return Ok(());
    };
    let name = String::from_utf8_lossy(shown);
    let what = why.describe();
    let line = if strict {
        format!("usvfs: {name} {what}: refused, it would run outside the view (--strict)\n")
    } else {
        format!("usvfs: {name} {what}: it runs outside the view (use --strict to refuse it)\n")
    };
    // One raw write: stderr is the program's, and the line must not interleave.
    // SAFETY: fd 2 is borrowed for this one call; a closed one fails harmlessly.
    let _ = rustix::io::write(
        unsafe { std::os::fd::BorrowedFd::borrow_raw(2) },
        line.as_bytes(),
    );
    // The log line is the stderr line without its prefix and newline.
    let sentence = &line["usvfs: ".len()..line.len() - 1];
    crate::log::notice(st.instance_dir.to_bytes(), module_path!(), sentence);
    if strict { Err(libc::EACCES) } else { Ok(()) }
}

/// Works out how to exec `path` with the view attached (the shared exec
/// semantics decide; this only gathers what they need).
///
/// `envp` comes from [`borrow_array`]: the prepared environment points into
/// the caller's strings, so it is used within the hooked call.
///
/// `pass_hold`: the exec can leave this process's hold open for the child
/// (`Some`), changing close-on-exec in a descriptor table other threads
/// share (`Some(true)`) or in the child's own (`Some(false)`).
fn prepare(
    st: &State,
    path: &[u8],
    argv: Vec<Vec<u8>>,
    envp: Vec<&[u8]>,
    pass_hold: Option<bool>,
) -> Result<Prepared, i32> {
    let located = locate(st, path)?;
    let target = match &located {
        Located::AsGiven => path.to_vec(),
        Located::Physical { phys, .. } => phys.clone(),
    };
    let rules = env::exec_rules(st);
    let plan = exec::plan(
        path,
        located,
        argv,
        &rules,
        &|p| st.snap.is_blacklisted(p),
        &mut |p| locate(st, p),
        &mut |p| head(p),
    )?;
    let mut followed = false;
    if plan.join {
        // A script is named by its interpreter, as its `#!` line gives it.
        let shown = match plan.argv.first() {
            Some(interp) if plan.program != target => interp.as_slice(),
            _ => path,
        };
        let why = usvfs_view::program::unfollowable(&plan.program);
        check_followable(st, shown, why, rules.strict)?;
        // Only to a child that loads this library and lets go of it.
        followed = why.is_none();
    }
    let hold = pass_hold
        .filter(|_| followed)
        .and_then(crate::hold::for_exec);
    let extra: Vec<&[u8]> = plan.extra_libs.iter().map(|l| l.as_slice()).collect();
    let spec = hold.as_ref().map(|(_, spec)| spec.as_slice());
    // SAFETY: envp's entries are whole C strings of the caller's, alive
    // for the hooked call that uses the result.
    let env = unsafe { CArray::from_entries(env::for_child(st, envp, plan.join, &extra, spec)) };
    Prepared::new(&plan.program, plan.argv, env, hold.map(|(fd, _)| fd))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn usvfs_execve(
    path: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    // SAFETY: the caller's forwarded arguments, under the libc contract of this function.
    let pass = || unsafe { real::execve(path, argv, envp) };
    let Some(st) = state::get() else {
        return pass();
    };
    // SAFETY: execve's contract: path is NULL or a C string.
    let Some(p) = (unsafe { bytes(path) }) else {
        return pass();
    };
    let prepared = {
        let Some(_g) = guard::enter() else {
            return pass();
        };
        // Signals held once for all of the preparation's allocations; the
        // mask is back before the exec (the program inherits it).
        crate::alloc::held(|| {
            // SAFETY: execve's contract: argv and envp are NULL-terminated string arrays.
            let (a, e) = unsafe { (read_array(argv), borrow_array(envp)) };
            // A vfork child's descriptor table is its own; a forked child's
            // too, but so may a direct exec's be shared (`hold::for_exec`).
            let shared = !crate::hooks::calls::in_vfork_child();
            std::panic::catch_unwind(|| prepare(st, p, a, e, Some(shared)))
        })
    };
    match prepared {
        Ok(Ok(x)) => x.exec(),
        Ok(Err(e)) => {
            set_errno(e);
            -1
        }
        Err(_) => pass(),
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn execve(
    path: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    // SAFETY: the caller's forwarded arguments, under the libc contract of this function.
    unsafe { usvfs_execve(path, argv, envp) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn execv(path: *const c_char, argv: *const *const c_char) -> c_int {
    // SAFETY: environ is the process's NULL-terminated environment; the rest is forwarded.
    unsafe { usvfs_execve(path, argv, env::environ()) }
}

/// Tries each `PATH` entry like glibc's execvp, resolving each in the view.
fn search_path<T>(file: &[u8], attempt: impl FnMut(&[u8]) -> Result<T, i32>) -> Result<T, i32> {
    let path_var = env::getenv(b"PATH").unwrap_or_else(|| b"/bin:/usr/bin".to_vec());
    exec::search_path(file, &path_var, attempt)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn usvfs_execvpe(
    file: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    // SAFETY: execvpe's contract: file is NULL or a C string.
    let Some(f) = (unsafe { bytes(file) }) else {
        set_errno(libc::EFAULT);
        return -1;
    };
    if f.is_empty() {
        set_errno(libc::ENOENT);
        return -1;
    }
    if f.contains(&b'/') {
        // SAFETY: the caller's forwarded arguments, under the libc contract of this function.
        return unsafe { usvfs_execve(file, argv, envp) };
    }
    let r = search_path(f, |cand| {
        let mut c = cand.to_vec();
        c.push(0);
        // SAFETY: c is a NUL-terminated candidate path; argv and envp are the caller's.
        unsafe { usvfs_execve(c.as_ptr().cast(), argv, envp) };
        match errno() {
            libc::ENOEXEC => {
                // Like glibc: a file without a magic number is a shell script.
                let mut args = vec![b"/bin/sh".to_vec(), cand.to_vec()];
                // SAFETY: execvpe's contract: argv is a NULL-terminated string array.
                args.extend(unsafe { read_array(argv) }.into_iter().skip(1));
                let a = CArray::new(args);
                // SAFETY: a NUL-terminated literal and an owned NULL-terminated argument array.
                unsafe { usvfs_execve(c"/bin/sh".as_ptr(), a.as_ptr(), envp) };
                Err::<(), i32>(errno())
            }
            e => Err(e),
        }
    });
    if let Err(e) = r {
        set_errno(e);
    }
    -1
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn execvpe(
    file: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    // SAFETY: the caller's forwarded arguments, under the libc contract of this function.
    unsafe { usvfs_execvpe(file, argv, envp) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn execvp(file: *const c_char, argv: *const *const c_char) -> c_int {
    // SAFETY: environ is the process's NULL-terminated environment; the rest is forwarded.
    unsafe { usvfs_execvpe(file, argv, env::environ()) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn fexecve(
    fd: c_int,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    // SAFETY: the caller's forwarded arguments, under the libc contract of this function.
    let pass = || unsafe { real::fexecve(fd, argv, envp) };
    let Some(st) = state::get() else {
        return pass();
    };
    let env = {
        let Some(_g) = guard::enter() else {
            return pass();
        };
        let prepared = crate::alloc::held(|| {
            // SAFETY: fexecve's contract: envp is a NULL-terminated string array.
            let e = unsafe { borrow_array(envp) };
            std::panic::catch_unwind(|| {
                if fd >= 0 {
                    let link = format!("/proc/self/fd/{fd}");
                    let shown = std::fs::read_link(&link).map_or(link.into_bytes(), |p| {
                        p.into_os_string().into_encoded_bytes()
                    });
                    // SAFETY: a valid number (a closed one fails the reads); only
                    // read through (fstat, pread) during this call.
                    let file = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
                    let why = usvfs_view::program::unfollowable_fd(file, &shown);
                    check_followable(st, &shown, why, env::exec_rules(st).strict)?;
                }
                // The hold is not passed (the child takes its own): the
                // interpreter of a script, which the kernel picks, is not
                // checked here, and one outside the view would keep it.
                // SAFETY: e's entries are whole C strings of the caller's,
                // alive until the fexecve below returns.
                Ok(unsafe { CArray::from_entries(env::for_child(st, e, true, &[], None)) })
            })
        });
        match prepared {
            Ok(Ok(env)) => env,
            Ok(Err(errno)) => {
                set_errno(errno);
                return -1;
            }
            Err(_) => return pass(),
        }
    };
    // Exec without the re-entrancy guard, as `Prepared::exec`: after `vfork`
    // the child shares our thread-local guard with the parent, and a
    // successful exec would never release it.
    // SAFETY: fd and argv are the caller's; env is owned and NULL-terminated.
    unsafe { real::fexecve(fd, argv, env.as_ptr()) }
}

fn spawn_in_view(
    st: &State,
    pid: *mut pid_t,
    path: &[u8],
    fa: *const libc::posix_spawn_file_actions_t,
    attr: *const libc::posix_spawnattr_t,
    argv: *const *mut c_char,
    envp: *const *mut c_char,
) -> c_int {
    // The same exec semantics as execve: scripts, blacklist, forced
    // libraries; signals held once for its allocations, not across the
    // spawn (the child would inherit the mask).
    //
    // The hold is left open for the child through a file action of our own
    // (`adddup2(h, h)` clears close-on-exec in the child only), so only
    // when the caller gave none: theirs cannot be copied.
    let prepared = crate::alloc::held(|| {
        // SAFETY: posix_spawn's contract: argv and envp are NULL-terminated arrays.
        let (a, e) = unsafe { (read_array(argv.cast()), borrow_array(envp.cast())) };
        prepare(st, path, a, e, fa.is_null().then_some(false))
    });
    let p = match prepared {
        Ok(p) => p,
        Err(e) => return e,
    };
    let mut own = std::mem::MaybeUninit::<libc::posix_spawn_file_actions_t>::uninit();
    let mut actions = fa;
    if let Some(h) = p.hold {
        // SAFETY: init fills the local actions object.
        if unsafe { libc::posix_spawn_file_actions_init(own.as_mut_ptr()) } == 0 {
            // SAFETY: records one action in the initialized object (on a
            // failure the hold stays close-on-exec: the child then takes
            // its own, as without it).
            unsafe { libc::posix_spawn_file_actions_adddup2(own.as_mut_ptr(), h, h) };
            actions = own.as_ptr();
        }
    }
    // SAFETY: the prepared program, arguments and environment are
    // NUL-terminated and live until the call returns; `actions` is the
    // caller's or our initialized one.
    let r = unsafe {
        real::posix_spawn(
            pid,
            p.program.as_ptr(),
            actions,
            attr,
            p.argv.as_ptr().cast(),
            p.env.as_ptr().cast(),
        )
    };
    if actions != fa {
        // SAFETY: initialized above, destroyed once.
        unsafe { libc::posix_spawn_file_actions_destroy(own.as_mut_ptr()) };
    }
    r
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn posix_spawn(
    pid: *mut pid_t,
    path: *const c_char,
    fa: *const libc::posix_spawn_file_actions_t,
    attr: *const libc::posix_spawnattr_t,
    argv: *const *mut c_char,
    envp: *const *mut c_char,
) -> c_int {
    // SAFETY: the caller's forwarded arguments, under the libc contract of this function.
    let pass = || unsafe { real::posix_spawn(pid, path, fa, attr, argv, envp) };
    let Some(st) = state::get() else {
        return pass();
    };
    let Some(_g) = guard::enter() else {
        return pass();
    };
    // SAFETY: posix_spawn's contract: path is NULL or a C string.
    let Some(p) = (unsafe { bytes(path) }) else {
        return pass();
    };
    // Where the stack has room: the exec plan's path buffers would not fit a
    // 16 KiB thread stack.
    crate::stack::with_room(
        #[inline(never)]
        || std::panic::catch_unwind(|| spawn_in_view(st, pid, p, fa, attr, argv, envp)),
    )
    .unwrap_or_else(|_| pass())
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn posix_spawnp(
    pid: *mut pid_t,
    file: *const c_char,
    fa: *const libc::posix_spawn_file_actions_t,
    attr: *const libc::posix_spawnattr_t,
    argv: *const *mut c_char,
    envp: *const *mut c_char,
) -> c_int {
    // SAFETY: posix_spawnp's contract: file is NULL or a C string.
    let Some(f) = (unsafe { bytes(file) }) else {
        return libc::EFAULT;
    };
    if f.contains(&b'/') {
        // SAFETY: the caller's forwarded arguments, under the libc contract of this function.
        return unsafe { posix_spawn(pid, file, fa, attr, argv, envp) };
    }
    let Some(st) = state::get() else {
        // SAFETY: the caller's forwarded arguments, under the libc contract of this function.
        return unsafe { real::posix_spawnp(pid, file, fa, attr, argv, envp) };
    };
    let Some(_g) = guard::enter() else {
        // SAFETY: the caller's forwarded arguments, under the libc contract of this function.
        return unsafe { real::posix_spawnp(pid, file, fa, attr, argv, envp) };
    };
    // As posix_spawn: where the stack has room.
    crate::stack::with_room(
        #[inline(never)]
        || spawnp_in_view(st, pid, f, fa, attr, argv, envp),
    )
}

fn spawnp_in_view(
    st: &State,
    pid: *mut pid_t,
    f: &[u8],
    fa: *const libc::posix_spawn_file_actions_t,
    attr: *const libc::posix_spawnattr_t,
    argv: *const *mut c_char,
    envp: *const *mut c_char,
) -> c_int {
    // Find the first PATH entry that is an executable file in the view.
    let found = search_path(f, |cand| {
        let mut lk = Lookup::new();
        let outcome = lookup(st, AT_FDCWD, cand, true, &mut lk);
        let mut phys = match outcome {
            Outcome::Fail(e) => return Err(e),
            Outcome::Pass => {
                usvfs_view::path::PathBuffer::from_bytes(cand).map_err(|_| libc::ENAMETOOLONG)?
            }
            Outcome::Redirect => lk.phys.clone(),
        };
        if real::stat_path(phys.as_c_str())?.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(libc::EACCES);
        }
        // SAFETY: a NUL-terminated path.
        if unsafe { real::access(phys.as_c_ptr(), libc::X_OK) } != 0 {
            return Err(errno());
        }
        Ok(cand.to_vec())
    });
    match found {
        Ok(cand) => {
            std::panic::catch_unwind(|| spawn_in_view(st, pid, &cand, fa, attr, argv, envp))
                .unwrap_or(libc::EIO)
        }
        Err(e) => e,
    }
}

/// The command `system`/`popen` should run so its shell joins the view
/// (see `env::shell_command`); `None`: the caller's own.
fn view_shell_command(cmd: *const c_char) -> Option<Vec<u8>> {
    let st = state::get()?;
    let _g = guard::enter()?;
    // SAFETY: system/popen's contract: cmd is NULL or a C string.
    let c = unsafe { bytes(cmd) }?;
    let saved = errno();
    let r = std::panic::catch_unwind(|| env::shell_command(st, c))
        .ok()
        .flatten()
        .map(|mut s| {
            s.push(0);
            s
        });
    set_errno(saved);
    r
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn system(cmd: *const c_char) -> c_int {
    match view_shell_command(cmd) {
        // SAFETY: a NUL-terminated command we own for the call.
        Some(c) => unsafe { real::system(c.as_ptr().cast()) },
        // SAFETY: the caller's forwarded arguments, under the libc contract of this function.
        None => unsafe { real::system(cmd) },
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn popen(cmd: *const c_char, mode: *const c_char) -> *mut libc::FILE {
    match view_shell_command(cmd) {
        // SAFETY: a NUL-terminated command we own for the call; mode is the caller's.
        Some(c) => unsafe { real::popen(c.as_ptr().cast(), mode) },
        // SAFETY: the caller's forwarded arguments, under the libc contract of this function.
        None => unsafe { real::popen(cmd, mode) },
    }
}
