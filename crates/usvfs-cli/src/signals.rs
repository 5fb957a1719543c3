//! `usvfs run` owns its program's life: the signals a controller is sent go
//! to the program, and the program's status is ours.
//!
//! Design: the forwarded signals are blocked in every thread of `usvfs`
//! (`block` runs first in `run`, before any thread exists, and threads inherit
//! the mask), and one thread takes them with `sigwaitinfo`, so no code runs in
//! a signal handler. The program stays in our process group (as `system(3)`
//! does), so the terminal's `^C`, `^\`, window size changes and hangups reach
//! it directly; the kernel sends those to the whole foreground group with
//! `si_code == SI_KERNEL`. A signal some process sent with `kill(2)` to usvfs
//! (`SI_USER`, `SI_QUEUE`, `SI_TKILL`) is forwarded. So is a kernel signal
//! when the program has left our process group (it cannot have received it).
//! A process that signals the whole group with `kill(-PGID, ...)` reaches the
//! program directly *and* through usvfs: signal usvfs alone instead.
//!
//! Before the program starts and after it ended (e.g. while waiting for a
//! view's wineserver), a signal other than `SIGWINCH` ends usvfs with status
//! 128+N, as its default action would.
//!
//! The child is never signalled after it was reaped: the main thread marks it
//! gone (under the same lock the forwarding thread holds while it calls
//! `kill`) after `waitid(WNOWAIT)` saw it exit and before it reaps it, so a
//! reused pid is never hit.

use std::sync::{Arc, Mutex, MutexGuard};

/// The signals `usvfs run` forwards to its program.
pub const FORWARDED: [libc::c_int; 7] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The program has not been started yet.
    Before,
    /// The program runs (not reaped yet): forward to it.
    Child(libc::pid_t),
    /// The program has ended.
    After,
}

#[derive(Clone)]
pub struct Forwarder {
    target: Arc<Mutex<Target>>,
}

fn set_of(signals: &[libc::c_int]) -> libc::sigset_t {
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initializes the set; sigaddset takes valid signals.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        for &s in signals {
            libc::sigaddset(set.as_mut_ptr(), s);
        }
        set.assume_init()
    }
}

impl Forwarder {
    /// Blocks the forwarded signals in the calling thread (call it before any
    /// other thread starts) and starts the thread that takes them.
    pub fn start() -> std::io::Result<Self> {
        let set = set_of(&FORWARDED);
        // SAFETY: a valid, initialized set; the old mask is not wanted.
        let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
        let f = Forwarder {
            target: Arc::new(Mutex::new(Target::Before)),
        };
        let t = f.clone();
        std::thread::Builder::new()
            .name("usvfs-signals".into())
            .spawn(move || t.serve(set))?;
        Ok(f)
    }

    fn lock(&self) -> MutexGuard<'_, Target> {
        self.target.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn serve(&self, set: libc::sigset_t) {
        loop {
            let mut info = std::mem::MaybeUninit::<libc::siginfo_t>::zeroed();
            // SAFETY: a valid set and a buffer for one siginfo_t.
            let sig = unsafe { libc::sigwaitinfo(&set, info.as_mut_ptr()) };
            if sig < 0 {
                continue; // EINTR
            }
            // SAFETY: sigwaitinfo filled it in.
            let code = unsafe { info.assume_init() }.si_code;
            let target = self.lock();
            match *target {
                Target::Child(pid) => {
                    if should_forward(code, pid) {
                        tracing::debug!(sig, pid, "forwarding signal");
                        // SAFETY: pid is our unreaped child (the lock is held).
                        unsafe { libc::kill(pid, sig) };
                    }
                }
                Target::Before | Target::After => {
                    if sig != libc::SIGWINCH {
                        std::process::exit(128 + sig);
                    }
                }
            }
        }
    }

    /// Starts the program with `spawn` (which returns its pid) while signals
    /// wait, so none is lost or mistaken for one before the start.
    pub fn spawn<T>(
        &self,
        spawn: impl FnOnce() -> std::io::Result<(T, libc::pid_t)>,
    ) -> std::io::Result<T> {
        let mut target = self.lock();
        let (v, pid) = spawn()?;
        *target = Target::Child(pid);
        Ok(v)
    }

    /// Waits until the program has ended, without reaping it, then stops
    /// forwarding; the caller reaps it afterwards.
    pub fn wait_exit(&self, pid: libc::pid_t) {
        loop {
            let mut info = std::mem::MaybeUninit::<libc::siginfo_t>::zeroed();
            // SAFETY: a valid buffer; WNOWAIT leaves the child to be reaped.
            let rc = unsafe {
                libc::waitid(
                    libc::P_PID,
                    pid as libc::id_t,
                    info.as_mut_ptr(),
                    libc::WEXITED | libc::WNOWAIT,
                )
            };
            if rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                break;
            }
        }
        *self.lock() = Target::After;
    }
}

/// Whether a signal with `si_code` taken by usvfs should go to `pid`: not
/// when the kernel sent it to our whole process group and the program is in
/// that group (it has it already).
fn should_forward(si_code: libc::c_int, pid: libc::pid_t) -> bool {
    if si_code != libc::SI_KERNEL {
        return true;
    }
    // SAFETY: plain queries of process groups.
    let (theirs, ours) = unsafe { (libc::getpgid(pid), libc::getpgrp()) };
    theirs != ours
}

/// In the child before `exec`: clears the signal mask the controller set
/// (std does too; this keeps it explicit), and asks for `SIGTERM` when the
/// thread that started the program (usvfs's main thread) ends, so killing
/// usvfs with `SIGKILL` tells the program. If usvfs already ended before
/// that was set, the program is not started. Async-signal-safe calls only.
pub fn child_setup(parent: libc::pid_t) -> std::io::Result<()> {
    let empty = set_of(&[]);
    // SAFETY: async-signal-safe calls with valid arguments.
    unsafe {
        libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::getppid() != parent {
            libc::raise(libc::SIGTERM);
            libc::_exit(128 + libc::SIGTERM);
        }
    }
    Ok(())
}
