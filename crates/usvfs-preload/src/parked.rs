//! Freed objects kept per thread for reuse (lookup buffers, descriptor
//! entries), so hooked calls in the steady state allocate nothing. The
//! slots are atomic although per thread: a signal handler may run between
//! any two instructions of the code taking or parking one, and a single
//! swap or compare-exchange is never split by it.

use std::sync::atomic::{AtomicPtr, Ordering};

pub struct Parked<T, const N: usize>([AtomicPtr<T>; N]);

impl<T, const N: usize> Parked<T, N> {
    pub const fn new() -> Self {
        Parked([const { AtomicPtr::new(std::ptr::null_mut()) }; N])
    }

    /// A parked object, taken out of its slot (null: none). The last slot
    /// first: `park` fills the first free one, so this takes the object
    /// parked last, whose pages are the warm ones (a spare parked ahead for a
    /// signal handler stays untouched until one needs it).
    pub fn take(&self) -> *mut T {
        self.0
            .iter()
            .rev()
            .map(|s| s.swap(std::ptr::null_mut(), Ordering::Acquire))
            .find(|p| !p.is_null())
            .unwrap_or(std::ptr::null_mut())
    }

    /// Parks `p` in a free slot; false when every slot is taken.
    pub fn park(&self, p: *mut T) -> bool {
        self.0.iter().any(|s| {
            s.compare_exchange(
                std::ptr::null_mut(),
                p,
                Ordering::Release,
                Ordering::Relaxed,
            )
            .is_ok()
        })
    }

    /// Hands every parked object to `free` (the thread is exiting), with
    /// signals held once for all of them.
    pub fn drain(&self, mut free: impl FnMut(*mut T)) {
        crate::alloc::held(|| {
            loop {
                let p = self.take();
                if p.is_null() {
                    break;
                }
                free(p);
            }
        })
    }
}
