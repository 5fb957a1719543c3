//! Re-entrancy guard, narrowed to the library's own sections whose libc calls
//! can reach our exported functions again (see ARCHITECTURE.md, "The hook
//! skeleton"): loading a state (`std::fs` on the index, journal and instance
//! directory), unregistering at exit, preparing an exec (reading the exec
//! rules). While such a section runs, every hook on this thread passes
//! through to the original.
//!
//! Hook bodies themselves do not hold it: their own calls go to the
//! originals (`real::*`) or to raw system calls, never to an exported name,
//! so nothing re-enters from them. A signal handler that interrupts a hook
//! and calls `open` therefore sees the view like any other caller; only a
//! handler that interrupts one of the few internal sections bypasses it.

use std::cell::Cell;

thread_local! {
    static INTERNAL: Cell<bool> = const { Cell::new(false) };
}

/// An internal section of this thread; ends when dropped.
pub struct Guard(());

/// Enters an internal section; `None` when this thread is already inside one
/// (or its thread-local storage is gone), in which case the caller passes
/// through.
#[inline(always)]
pub fn enter() -> Option<Guard> {
    INTERNAL
        .try_with(|b| {
            if b.get() {
                None
            } else {
                b.set(true);
                Some(Guard(()))
            }
        })
        .ok()
        .flatten()
}

/// This thread is inside an internal section (or its thread-local storage is
/// gone): a hook must call the original.
#[inline(always)]
pub fn internal() -> bool {
    INTERNAL.try_with(Cell::get).unwrap_or(true)
}

impl Drop for Guard {
    #[inline(always)]
    fn drop(&mut self) {
        let _ = INTERNAL.try_with(|b| b.set(false));
    }
}

/// errno of the calling thread.
#[inline(always)]
pub fn errno() -> i32 {
    // SAFETY: always a valid thread-local pointer.
    unsafe { *libc::__errno_location() }
}

#[inline(always)]
pub fn set_errno(e: i32) {
    // SAFETY: always a valid thread-local pointer.
    unsafe { *libc::__errno_location() = e };
}
