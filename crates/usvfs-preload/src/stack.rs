//! Hook bodies on small thread stacks. The semantics keep fixed path
//! buffers in their frames (a rename's chain needs some 70 KiB), more than a
//! thread made with a 16 KiB stack has: on such a thread a body runs on a
//! second stack of the thread's own, mapped at its first use.

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

unsafe extern "C" {
    fn usvfs_call_on_stack(
        arg: *mut libc::c_void,
        f: unsafe extern "C" fn(*mut libc::c_void),
        top: *mut u8,
    );
    fn usvfs_can_switch_stack() -> libc::c_int;
}

/// Bodies run where the thread's own stack has less than this left.
const NEED: usize = 160 * 1024;
/// The second stack (and a guard page below it).
const SIZE: usize = 512 * 1024;
const GUARD: usize = 4096;

/// A thread's second stack; unmapped when the thread ends.
struct Alt {
    base: Cell<*mut u8>,
    busy: Cell<bool>,
}

impl Drop for Alt {
    fn drop(&mut self) {
        let b = self.base.get();
        if !b.is_null() {
            // SAFETY: mapped by `top` with this size, no longer in use.
            unsafe { libc::munmap(b.cast(), SIZE + GUARD) };
        }
    }
}

thread_local! {
    /// Lowest address of this thread's stack; 0: not known yet, 1: large
    /// (the main thread grows on demand) or unknown.
    static LOW: Cell<usize> = const { Cell::new(0) };
    static ALT: Alt = const { Alt { base: Cell::new(std::ptr::null_mut()), busy: Cell::new(false) } };
}

/// This thread's stack's lowest address (1 when it need not be watched).
#[cold]
fn stack_low() -> usize {
    // SAFETY: plain system calls.
    let main = unsafe { libc::getpid() == libc::gettid() };
    if main {
        return 1;
    }
    let mut attr = std::mem::MaybeUninit::<libc::pthread_attr_t>::uninit();
    // SAFETY: attr is initialized by pthread_getattr_np and destroyed below.
    unsafe {
        if libc::pthread_getattr_np(libc::pthread_self(), attr.as_mut_ptr()) != 0 {
            return 1;
        }
        let (mut addr, mut size) = (std::ptr::null_mut(), 0usize);
        let r = libc::pthread_attr_getstack(attr.as_ptr(), &mut addr, &mut size);
        libc::pthread_attr_destroy(attr.as_mut_ptr());
        if r != 0 || addr.is_null() {
            1
        } else {
            addr as usize
        }
    }
}

/// The current thread has less than `NEED` bytes of stack left.
#[inline(always)]
fn short_of_stack() -> bool {
    let here = 0u8;
    let sp = std::ptr::addr_of!(here) as usize;
    let low = LOW.try_with(|l| {
        if l.get() == 0 {
            l.set(stack_low());
        }
        l.get()
    });
    match low {
        Ok(low) if low > 1 => sp.saturating_sub(low) < NEED,
        _ => false,
    }
}

/// The top of this thread's second stack, mapping it first.
fn top(a: &Alt) -> Option<*mut u8> {
    if a.base.get().is_null() {
        // SAFETY: an anonymous private mapping; checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                SIZE + GUARD,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return None;
        }
        // SAFETY: the lowest page of our own mapping; overflow faults there.
        unsafe { libc::mprotect(p, GUARD, libc::PROT_NONE) };
        a.base.set(p.cast());
    }
    // SAFETY: one past the end of the mapping; 16-byte aligned (page-aligned).
    Some(unsafe { a.base.get().add(SIZE + GUARD) })
}

/// Runs `f`, on the thread's second stack when its own is nearly used up.
/// A panic in `f` continues on the thread's own stack.
#[inline(always)]
pub fn with_room<R>(f: impl FnOnce() -> R) -> R {
    if !short_of_stack() {
        return f();
    }
    switch(f)
}

#[inline(never)]
fn switch<R, F: FnOnce() -> R>(f: F) -> R {
    // SAFETY: a query without side effects.
    if unsafe { usvfs_can_switch_stack() } == 0 {
        return f();
    }
    let Ok(Some(top)) = ALT.try_with(|a| {
        if a.busy.get() {
            return None;
        }
        let t = top(a)?;
        a.busy.set(true);
        Some(t)
    }) else {
        // In use (a signal handler's hook on top of a body running there) or
        // no memory: the thread's own stack.
        return f();
    };
    struct Call<F, R> {
        f: Option<F>,
        out: Option<std::thread::Result<R>>,
    }
    unsafe extern "C" fn run<F: FnOnce() -> R, R>(p: *mut libc::c_void) {
        // SAFETY: `p` is the Call that `switch` passed, alive for this call.
        let c = unsafe { &mut *p.cast::<Call<F, R>>() };
        if let Some(f) = c.f.take() {
            // No unwinding across the stack switch.
            c.out = Some(catch_unwind(AssertUnwindSafe(f)));
        }
    }
    let mut c = Call {
        f: Some(f),
        out: None,
    };
    // SAFETY: `run::<F, R>` matches the Call passed; `top` is the end of a
    // mapping of this thread that nothing else uses now (busy).
    unsafe { usvfs_call_on_stack(std::ptr::addr_of_mut!(c).cast(), run::<F, R>, top) };
    let _ = ALT.try_with(|a| a.busy.set(false));
    match c.out {
        Some(Ok(r)) => r,
        Some(Err(p)) => resume_unwind(p),
        None => unreachable!("the body ran"),
    }
}
