//! The library's memory comes from the C library's `malloc` with every
//! signal blocked meanwhile. POSIX lets a signal handler call `open`,
//! `access`, `stat` and friends; in a hooked process those run our hooks,
//! which may allocate. Were the handler to interrupt this thread while it
//! was inside `malloc` or `free` for one of our own allocations, the heap
//! would be corrupted; with signals held for the call, a handler runs only
//! between our allocations. (A program's own `malloc` interrupted by a
//! handler that calls a hooked function remains unsafe, as with any
//! library that allocates.)

use std::alloc::{GlobalAlloc, Layout, System};

pub struct SignalSafe;

thread_local! {
    /// Signals are already held on this thread (see [`held`]).
    static HELD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with signals held once for all the allocations it makes (two
/// system calls instead of two per allocation, on paths that allocate more
/// than once: the constructor, an exec's preparation, the descriptor table).
/// The mask and the flag come back even when `f` unwinds.
#[inline]
pub fn held<T>(f: impl FnOnce() -> T) -> T {
    if HELD.try_with(|h| h.get()).unwrap_or(true) {
        return f();
    }
    let Some(_mask) = Blocked::all() else {
        return f();
    };
    let _ = HELD.try_with(|h| h.set(true));
    struct Unmark;
    impl Drop for Unmark {
        fn drop(&mut self) {
            let _ = HELD.try_with(|h| h.set(false));
        }
    }
    let _unmark = Unmark;
    f()
}

/// Every signal blocked on this thread until dropped (the old mask restored).
struct Blocked(libc::sigset_t);

impl Blocked {
    #[inline(always)]
    fn all() -> Option<Blocked> {
        let mut all = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
        let mut old = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: both sets are writable; sigfillset initializes `all`; a
        // successful pthread_sigmask fills `old`.
        unsafe {
            libc::sigfillset(all.as_mut_ptr());
            if libc::pthread_sigmask(libc::SIG_BLOCK, all.as_ptr(), old.as_mut_ptr()) != 0 {
                return None;
            }
            Some(Blocked(old.assume_init()))
        }
    }
}

impl Drop for Blocked {
    #[inline(always)]
    fn drop(&mut self) {
        // SAFETY: restores the mask saved by `all`.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut()) };
    }
}

#[inline(always)]
fn hold<T>(f: impl FnOnce() -> T) -> T {
    if HELD.try_with(|h| h.get()).unwrap_or(false) {
        return f();
    }
    let _mask = Blocked::all();
    f()
}

// SAFETY: every method forwards to `System` unchanged; only the signal mask
// around the call differs.
unsafe impl GlobalAlloc for SignalSafe {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, forwarded.
        hold(|| unsafe { System.alloc(l) })
    }

    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        // SAFETY: as above.
        hold(|| unsafe { System.alloc_zeroed(l) })
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: as above.
        hold(|| unsafe { System.dealloc(p, l) })
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        // SAFETY: as above.
        hold(|| unsafe { System.realloc(p, l, new) })
    }
}
