//! The interposed C library functions, grouped by what they do. Each hook
//! takes the cheap exit first (not initialized, re-entered, path outside the
//! view), resolves in the view otherwise, and never lets a panic reach the host:
//! on a bug it falls back to the original call.

/// Defines a hook for `fn name(path, args...) -> ret` (default `c_int`) that
/// calls the original with the physical path when the view redirects it.
macro_rules! path_call {
    (fn $name:ident($path:ident $(, $arg:ident : $ty:ty)*) follow = $follow:expr) => {
        path_call!(fn $name($path $(, $arg: $ty)*) -> libc::c_int, follow = $follow);
    };
    (fn $name:ident($path:ident $(, $arg:ident : $ty:ty)*) -> $ret:ty, follow = $follow:expr) => {
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name($path: *const libc::c_char $(, $arg: $ty)*) -> $ret {
            $crate::hooks::with_path(
                libc::AT_FDCWD,
                $path,
                $follow,
                // SAFETY: the caller's arguments, forwarded unchanged.
                || unsafe { $crate::real::$name($path $(, $arg)*) },
                // SAFETY: the resolved physical path is NUL-terminated; the
                // other arguments are the caller's.
                |_, lk| unsafe { $crate::real::$name(lk.phys.as_c_ptr() $(, $arg)*) },
            )
        }
    };
}

/// Defines a hook for `fn name(dirfd, path, args..., flags) -> c_int` whose
/// flags may hold `AT_SYMLINK_NOFOLLOW`. With `by_path`, a redirected call
/// always takes the absolute physical path (calls that change the file:
/// never through a layer's descriptor, which may name a source folder
/// replaced in the last 100 ms).
macro_rules! at_call {
    (fn $name:ident(dirfd, $path:ident $(, $arg:ident : $ty:ty)*; flags) by_path) => {
        at_call!(@def by_path, $name, $path $(, $arg: $ty)*);
    };
    (fn $name:ident(dirfd, $path:ident $(, $arg:ident : $ty:ty)*; flags)) => {
        at_call!(@def call, $name, $path $(, $arg: $ty)*);
    };
    (@def $via:ident, $name:ident, $path:ident $(, $arg:ident : $ty:ty)*) => {
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(
            dirfd: libc::c_int,
            $path: *const libc::c_char
            $(, $arg: $ty)*,
            flags: libc::c_int,
        ) -> libc::c_int {
            $crate::hooks::with_path(
                dirfd,
                $path,
                flags & libc::AT_SYMLINK_NOFOLLOW == 0,
                // SAFETY: the caller's arguments, forwarded unchanged.
                || unsafe { $crate::real::$name(dirfd, $path $(, $arg)*, flags) },
                |st, lk| $crate::layerfd::$via(st, lk, |fd, p| {
                    // SAFETY: a layer descriptor and the NUL-terminated path
                    // below it, or AT_FDCWD and the absolute path (layerfd);
                    // the rest is the caller's.
                    unsafe { $crate::real::$name(fd, p $(, $arg)*, flags) }
                }),
            )
        }
    };
}

pub mod calls;
pub mod cwd;
pub mod dir;
pub mod exec;
pub mod fd;
pub mod inotify;
pub mod inplace;
pub mod link;
pub mod open;
pub mod socket;
pub mod stat;
pub mod walk_fts;
pub mod walk_nftw;
pub mod write;

use libc::{c_char, c_int};
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::guard::{self, errno, set_errno};
use crate::lookup::{Lookup, Outcome, bytes, lookup, lookup_inside};
use crate::real::Failure;
use crate::state::{self, State};

/// A hook body's decision (the shape of mirrord-layer's `Detour`).
pub(crate) enum Detour<T> {
    /// Handled: the hook returns this (after `act`).
    Success(T),
    /// Not ours (outside the view, or we cannot tell): call the original
    /// with the caller's own arguments.
    Bypass,
    /// Fail the call with this errno.
    Error(i32),
}

/// `Some(v)` gives `v`; `None` makes the hook bypass.
macro_rules! or_bypass {
    ($e:expr) => {
        match $e {
            Some(v) => v,
            None => return $crate::hooks::Detour::Bypass,
        }
    };
}
pub(crate) use or_bypass;

/// The one hook skeleton. Cheap exits first: no state yet or this thread is
/// inside one of the library's internal sections (see `guard`) → `original`.
/// A hook body takes no guard: its own calls go to the originals, so a call
/// arriving here during a body comes from a signal handler and gets the view. Otherwise `decide`
/// runs with panics contained (a panic bypasses to `original`: a bug in a
/// hook never takes the host down); then `errno` is restored to the caller's
/// value and `act` turns the decision into the result, so errno changes only
/// where the call itself fails.
#[inline(always)]
pub(crate) fn hook<T, R: Failure>(
    original: impl FnOnce() -> R,
    decide: impl FnOnce(&'static State) -> Detour<T>,
    act: impl FnOnce(&'static State, T) -> R,
) -> R {
    let Some(st) = state::get() else {
        return original();
    };
    hook_with(st, original, decide, act)
}

/// [`hook`] once the state is known (callers that took a cheap exit on it).
#[inline(always)]
fn hook_with<T, R: Failure>(
    st: &'static State,
    original: impl FnOnce() -> R,
    decide: impl FnOnce(&'static State) -> Detour<T>,
    act: impl FnOnce(&'static State, T) -> R,
) -> R {
    if guard::internal() {
        return original();
    }
    // The body in a frame of its own (not merged into the exported
    // function's), run where the stack has room for it.
    crate::stack::with_room(
        #[inline(never)]
        move || {
            // On this frame's stack: a signal handler whose calls enter hooks
            // on top of this one saves and restores its own.
            let saved = errno();
            // Descriptor entries the body reads stay allocated until it
            // returns, even if another thread closes their descriptors meanwhile.
            let _pin = crate::fdtable::pin();
            match catch_unwind(AssertUnwindSafe(|| decide(st))) {
                Ok(Detour::Success(t)) => {
                    set_errno(saved);
                    act(st, t)
                }
                Ok(Detour::Error(e)) => {
                    set_errno(e);
                    R::failure()
                }
                Ok(Detour::Bypass) | Err(_) => {
                    set_errno(saved);
                    original()
                }
            }
        },
    )
}

/// [`hook`] for bodies that compute the result themselves (write hooks):
/// `Success(r)` returns `r` with the caller's errno.
#[inline(always)]
pub(crate) fn hook_result<R: Failure>(
    original: impl FnOnce() -> R,
    body: impl FnOnce(&'static State) -> Detour<R>,
) -> R {
    hook(original, body, |_, r| r)
}

/// [`hook`] for helpers whose caller continues when the view does not
/// apply: `None` on bypass.
#[inline(always)]
pub(crate) fn hook_opt<R: Failure>(body: impl FnOnce(&'static State) -> Detour<R>) -> Option<R> {
    hook(|| None, body, |_, r| Some(r))
}

/// The result of a real call made inside a hook body: its errno travels in
/// `Error`, so the skeleton's errno restore cannot lose it.
#[inline]
pub(crate) fn sys<R: Copy + PartialOrd + Default>(r: R) -> Detour<R> {
    if r < R::default() {
        Detour::Error(errno())
    } else {
        Detour::Success(r)
    }
}

/// Runs a path-taking call: `pass` with the caller's arguments when the view
/// does not change it, `redirect` with the resolved physical path otherwise.
#[inline(always)]
pub(crate) fn with_path<R: Failure>(
    dirfd: c_int,
    path: *const c_char,
    follow: bool,
    pass: impl FnOnce() -> R,
    redirect: impl FnOnce(&'static State, &mut Lookup) -> R,
) -> R {
    // The cheapest exits, before the skeleton's bookkeeping: most paths are
    // outside every destination.
    let Some(st) = state::get() else {
        return pass();
    };
    // SAFETY: libc contract: path is NULL or a C string.
    let Some(p) = (unsafe { bytes(path) }) else {
        return pass();
    };
    if crate::lookup::certainly_outside(st, dirfd, p) {
        return pass();
    }
    hook_with(
        st,
        pass,
        #[inline(never)]
        |st| {
            let mut lk = Lookup::new();
            match lookup_inside(st, dirfd, p, follow, &mut lk) {
                Outcome::Redirect => Detour::Success(lk),
                Outcome::Fail(e) => Detour::Error(e),
                Outcome::Pass => Detour::Bypass,
            }
        },
        |st, mut lk| redirect(st, &mut lk),
    )
}

/// Resolves a path for hooks that need the lookup itself (directories, cwd,
/// links), inside a hook body: `Success` with the lookup filled in.
pub(crate) fn resolve_in_view(
    st: &'static State,
    dirfd: c_int,
    p: &[u8],
    follow: bool,
    lk: &mut Lookup,
) -> Detour<()> {
    match lookup(st, dirfd, p, follow, lk) {
        Outcome::Redirect => Detour::Success(()),
        Outcome::Fail(e) => Detour::Error(e),
        Outcome::Pass => Detour::Bypass,
    }
}
