//! Raw system calls on descriptors of our own (no hook, no libc state).

use libc::c_int;

/// `fstat` of `fd` (a raw system call: errno is left alone only on success).
pub fn fstat(fd: c_int) -> Option<libc::stat> {
    if fd < 0 {
        return None;
    }
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat takes an integer and writes one `struct stat` into the
    // local out-buffer, which is read only on success.
    if unsafe { libc::syscall(libc::SYS_fstat, fd, st.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: fstat succeeded, so it filled the buffer.
    Some(unsafe { st.assume_init() })
}
