//! Re-entrancy guard: while a hook does its own work (mapping the index,
//! reading a link, building a listing), libc calls it makes must reach the real
//! functions, not the hooks again.

use std::cell::Cell;

thread_local! {
    static BUSY: Cell<bool> = const { Cell::new(false) };
}

pub struct Guard(());

/// Enters the hook layer; `None` when this thread is already inside it (or its
/// thread-local storage is gone), in which case the caller passes through.
#[inline(always)]
pub fn enter() -> Option<Guard> {
    BUSY.try_with(|b| {
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

impl Drop for Guard {
    #[inline(always)]
    fn drop(&mut self) {
        let _ = BUSY.try_with(|b| b.set(false));
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
