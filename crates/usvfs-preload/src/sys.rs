//! Raw system calls on descriptors of our own (no hook, no libc state).

use libc::c_int;

/// `fstat` of `fd` (a raw system call): its attributes, or the errno
/// (`EBADF` for a negative descriptor). The caller's errno is left alone on
/// success.
pub fn fstat(fd: c_int) -> Result<libc::stat, c_int> {
    if fd < 0 {
        return Err(libc::EBADF);
    }
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat takes an integer and writes one `struct stat` into the
    // local out-buffer, which is read only on success.
    if unsafe { libc::syscall(libc::SYS_fstat, fd, st.as_mut_ptr()) } != 0 {
        return Err(crate::guard::errno());
    }
    // SAFETY: fstat succeeded, so it filled the buffer.
    Ok(unsafe { st.assume_init() })
}
