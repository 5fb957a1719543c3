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
                -1,
                || unsafe { $crate::real::$name($path $(, $arg)*) },
                |_, lk| unsafe { $crate::real::$name(lk.phys.as_c_ptr() $(, $arg)*) },
            )
        }
    };
}

/// Defines a hook for `fn name(dirfd, path, args..., flags) -> c_int` whose
/// flags may hold `AT_SYMLINK_NOFOLLOW`.
macro_rules! at_call {
    (fn $name:ident(dirfd, $path:ident $(, $arg:ident : $ty:ty)*; flags)) => {
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
                -1,
                || unsafe { $crate::real::$name(dirfd, $path $(, $arg)*, flags) },
                |_, lk| unsafe { $crate::real::$name(libc::AT_FDCWD, lk.phys.as_c_ptr() $(, $arg)*, flags) },
            )
        }
    };
}

pub mod cwd;
pub mod dir;
pub mod exec;
pub mod fd;
pub mod inplace;
pub mod link;
pub mod open;
pub mod stat;
pub mod walk_fts;
pub mod walk_nftw;
pub mod write;

use libc::{c_char, c_int};
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::guard::{self, errno, set_errno};
use crate::lookup::{Lookup, Outcome, bytes, lookup, lookup_inside};
use crate::state::{self, State};

/// Runs a path-taking call: `pass` with the caller's arguments when the view
/// does not change it, `redirect` with the resolved physical path otherwise.
#[inline(always)]
pub(crate) fn with_path<R>(
    dirfd: c_int,
    path: *const c_char,
    follow: bool,
    fail: R,
    pass: impl FnOnce() -> R,
    redirect: impl FnOnce(&'static State, &mut Lookup) -> R,
) -> R {
    let Some(st) = state::get() else {
        return pass();
    };
    let Some(g) = guard::enter() else {
        return pass();
    };
    // SAFETY: libc contract: path is NULL or a C string.
    let Some(p) = (unsafe { bytes(path) }) else {
        drop(g);
        return pass();
    };
    if crate::lookup::certainly_outside(st, dirfd, p) {
        drop(g);
        return pass();
    }
    slow_path(st, g, dirfd, p, follow, fail, pass, redirect)
}

#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn slow_path<R>(
    st: &'static State,
    g: guard::Guard,
    dirfd: c_int,
    p: &[u8],
    follow: bool,
    fail: R,
    pass: impl FnOnce() -> R,
    redirect: impl FnOnce(&'static State, &mut Lookup) -> R,
) -> R {
    let saved = errno();
    let mut lk = Lookup::new();
    // `with_path` already took the cheap exits.
    match catch_unwind(AssertUnwindSafe(|| {
        lookup_inside(st, dirfd, p, follow, &mut lk)
    })) {
        Ok(Outcome::Redirect) => {
            set_errno(saved);
            let r = redirect(st, &mut lk);
            drop(g);
            r
        }
        Ok(Outcome::Fail(e)) => {
            drop(g);
            set_errno(e);
            fail
        }
        Ok(Outcome::Pass) | Err(_) => {
            set_errno(saved);
            drop(g);
            pass()
        }
    }
}

/// Resolves a path for hooks that need the lookup itself (directories, cwd,
/// links). `None`: pass through. `Some(Err(e))`: fail with errno `e`.
pub(crate) fn resolve_only(
    st: &'static State,
    dirfd: c_int,
    p: &[u8],
    follow: bool,
    lk: &mut Lookup,
) -> Option<Result<(), i32>> {
    let saved = errno();
    let r = match catch_unwind(AssertUnwindSafe(|| lookup(st, dirfd, p, follow, lk))) {
        Ok(Outcome::Redirect) => Some(Ok(())),
        Ok(Outcome::Fail(e)) => Some(Err(e)),
        Ok(Outcome::Pass) | Err(_) => None,
    };
    set_errno(saved);
    r
}
