//! usvfs-preload: the `LD_PRELOAD` engine. Loaded into every hooked process, it
//! maps the instance's index snapshot read-only and interposes the C library's
//! file functions so the process sees the merged view.
//!
//! Hot-path rules (see DESIGN.md): originals resolved once in the constructor;
//! no allocation, lock or panic on the pass-through path; errno preserved;
//! fork/vfork safe; a failing hook falls back to the original call.

mod alloc;
mod env;
mod fdtable;
mod forkcopy;
mod guard;
mod hold;
pub mod hooks;
mod layerfd;
mod log;

mod lookup;
mod next;
mod parked;
mod real;
mod stack;
mod state;
mod sys;

#[global_allocator]
static ALLOC: alloc::SignalSafe = alloc::SignalSafe;

use std::ffi::{CStr, CString};

use usvfs_view::instance_dir::InstanceDir;
use usvfs_view::launch_env::{self, ENV_HOLD, ENV_INSTANCE_DIR, ENV_INSTANCE_FD, ENV_VCWD};
use usvfs_view::path::PathBuffer;

use crate::state::State;

/// This library's own file, for children's `LD_PRELOAD`.
fn own_path() -> Option<CString> {
    let mut info = std::mem::MaybeUninit::<libc::Dl_info>::uninit();
    // SAFETY: any address inside this library identifies it.
    let ok = unsafe { libc::dladdr(init as *const libc::c_void, info.as_mut_ptr()) };
    if ok == 0 {
        return None;
    }
    // SAFETY: dladdr succeeded.
    let info = unsafe { info.assume_init() };
    if info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dli_fname is a C string.
    Some(unsafe { CStr::from_ptr(info.dli_fname) }.to_owned())
}

/// The instance directory as `/proc/self/fd/N`, through the descriptor the
/// launcher handed down (`USVFS_INSTANCE_FD`, checked by device and inode):
/// a container's private `/tmp` or another mount namespace hides the path.
fn instance_by_fd() -> Option<CString> {
    let (fd, dev, ino) = env::getenv(ENV_INSTANCE_FD.as_bytes())
        .as_deref()
        .and_then(launch_env::parse_instance_fd)?;
    if fd < 0 {
        return None;
    }
    // SAFETY: only inspected; the descriptor stays open (inherited).
    let bfd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    rustix::fs::fstat(bfd)
        .is_ok_and(|st| st.st_dev == dev && st.st_ino == ino)
        .then(|| CString::new(format!("/proc/self/fd/{fd}")).ok())
        .flatten()
}

/// Says on stderr that this process runs outside its view, and why; and in
/// the instance's log in the rare case that its directory is there but the
/// view could not be loaded (a hidden or ended instance has no log to write).
/// An index that is there but unusable (another usvfs version's) says so.
fn say_unreachable(dir: &[u8], why: Option<&usvfs_view::Error>) {
    let prog = std::env::args_os()
        .next()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_else(|| "a program".into());
    let dir_shown = String::from_utf8_lossy(dir);
    let sentence = match why {
        Some(e @ usvfs_view::Error::Index { .. }) => {
            format!(
                "{prog} cannot use its view (instance {dir_shown}): it runs on the real disk. {e}"
            )
        }
        _ => format!(
            "{prog} cannot reach its view (instance {dir_shown}): it runs on the real disk. \
             The instance ended, or a container hides it: keep /proc and the descriptor \
             USVFS_INSTANCE_FD in the container, or put the instance where the container \
             sees it (USVFS_RUNTIME_DIR)"
        ),
    };
    eprintln!("usvfs: {sentence}");
    log::notice(dir, module_path!(), &sentence);
}

/// The working directory a parent handed down, if it still names where we
/// are: made the logical working directory at once from this lookup (no
/// second one in `adopt_cwd`).
fn inherited_cwd(st: &State) -> Option<()> {
    let v = env::getenv(ENV_VCWD.as_bytes())?;
    let mut lk = lookup::Lookup::new();
    if !matches!(
        lookup::lookup(st, libc::AT_FDCWD, &v, true, &mut lk),
        lookup::Outcome::Redirect
    ) {
        return None;
    }
    // The parent's working directory is still ours when "." is the
    // directory the view shows there: its physical one (the parent changed
    // into it through the view), or the virtual path itself (the parent
    // started there, as a game's programs usually do).
    let here = real::stat_path(c".").ok()?;
    let same = |p: &mut PathBuffer| {
        real::stat_path(p.as_c_str())
            .is_ok_and(|s| s.st_dev == here.st_dev && s.st_ino == here.st_ino)
    };
    let lk = &mut *lk;
    if !same(&mut lk.phys) && (lk.phys.as_bytes() == lk.virt.as_bytes() || !same(&mut lk.virt)) {
        return None;
    }
    let is_virtual = lk.phys.as_bytes() != lk.virt.as_bytes();
    state::set_cwd(lk.virt.as_bytes(), lk.res.node.is_some(), is_virtual);
    Some(())
}

fn start() -> Option<()> {
    let joined = join();
    // The parent's hold, left open across its exec (see `hold::for_exec`),
    // is let go only now that this process holds the instance itself.
    hold::settle_inherited(
        env::getenv(ENV_HOLD.as_bytes()).as_deref(),
        joined.is_some(),
    );
    joined
}

fn join() -> Option<()> {
    let dir = env::getenv(ENV_INSTANCE_DIR.as_bytes())?;
    let lib_path = own_path()?;
    // By its path (no extra system call: loading is the check), else
    // through the inherited descriptor. The first failure says why.
    let mut why = None;
    let mut load = |p: &CStr| {
        State::load(p, lib_path.clone())
            .map_err(|e| {
                why.get_or_insert(e);
            })
            .ok()
    };
    let loaded = CString::new(dir.clone())
        .ok()
        .and_then(|p| load(&p))
        .or_else(|| load(&instance_by_fd()?));
    let Some(loaded) = loaded else {
        say_unreachable(&dir, why.as_ref());
        return None;
    };
    state::set(loaded);
    let st = state::get()?;
    let inst = InstanceDir::from_bytes(st.instance_dir.to_bytes());
    log::init(&inst);
    if inherited_cwd(st).is_none() {
        let mut b = PathBuffer::new();
        if !state::real_cwd(&mut b) {
            return None;
        }
        hooks::cwd::adopt_cwd(st, b.as_bytes());
    }
    // Counted by a shared lock, not a file: nothing is written per process.
    // A forked child shares its parent's hold; `usvfs ps` lists the process
    // that took it.
    if let Some(fd) = inst.hold_quick() {
        layerfd::grow_table_early(hold::keep(fd));
    }
    Some(())
}

/// The original `realpath`, for the view's `SysFs`: called by name from inside
/// this library, `realpath` would bind to our own hook.
unsafe extern "C" fn original_realpath(
    p: *const libc::c_char,
    out: *mut libc::c_char,
) -> *mut libc::c_char {
    // SAFETY: the caller's arguments, forwarded under realpath(3)'s contract.
    unsafe { real::realpath(p, out) }
}

/// A forked child is a process of its own: it is no vfork child, and the
/// other threads' table readers did not come along.
extern "C" fn after_fork_child() {
    // SAFETY: clears this thread's own storage.
    unsafe { hooks::calls::usvfs_vfork_forget() };
    fdtable::after_fork_child();
}

extern "C" fn init() {
    let next = real::resolve_all();
    // SAFETY: resolves calls.c's originals through `next`, alive for the call.
    unsafe { hooks::calls::usvfs_calls_init(Some(real::find_for_c), (&raw const next).cast()) };
    hooks::calls::remember_library_path();
    // SAFETY: registers handlers that touch only our own state and mapping.
    unsafe { libc::pthread_atfork(Some(forkcopy::before_fork), None, Some(after_fork_child)) };
    usvfs_view::fs::set_realpath(original_realpath);
    let Some(_g) = guard::enter() else { return };
    let saved = guard::errno();
    // Never let a failure here take the host program down: without a view it
    // simply runs on the real disk. Signals are held once for the whole
    // start instead of around each of its allocations (no handler of the
    // program can be installed yet anyway).
    let _ = alloc::held(|| std::panic::catch_unwind(start));
    guard::set_errno(saved);
}

extern "C" fn fini() {
    if state::get().is_none() {
        return;
    }
    let Some(_g) = guard::enter() else { return };
    let saved = guard::errno();
    let _ = alloc::held(|| {
        std::panic::catch_unwind(|| {
            if let Some(st) = state::get() {
                let inst = InstanceDir::from_bytes(st.instance_dir.to_bytes());
                inst.leave_quick(hold::take());
            }
        })
    });
    guard::set_errno(saved);
}

#[used]
#[unsafe(link_section = ".init_array")]
static INIT: extern "C" fn() = init;

#[used]
#[unsafe(link_section = ".fini_array")]
static FINI: extern "C" fn() = fini;
