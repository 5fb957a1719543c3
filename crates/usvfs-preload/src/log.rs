//! The instance log: `tracing` events of a hooked process (journal and hook
//! failures, and at `debug` the process joining) appended to `<instance>/log`,
//! which `usvfs log` and Python's `get_log_messages` read.
//!
//! Off unless asked: without a level in the instance (`usvfs run --log-level`,
//! py-usvfs's log level) no subscriber is installed, no file is opened, and
//! `tracing`'s macros stay a check of a static level. With a level, a minimal
//! subscriber (no `tracing-subscriber`, to keep this library small) writes one
//! line per enabled event:
//!
//! ```text
//! <unix time, ms> <pid> <LEVEL> <target>: <message> key=value...
//! ```
//!
//! Each line is formatted in a fixed buffer on the stack (no allocation; a
//! longer line is cut and ends with `...`) and written with a single
//! `write(2)` on an `O_APPEND` descriptor, so lines of the many processes of an
//! instance never interleave. The descriptor is opened with raw system calls
//! (no hooked libc function is re-entered), kept above the low numbers
//! programs expect to own, and checked before each write: a program that
//! closed it or `dup2`ed over it gets its file left alone, and the log is
//! opened again.

use std::ffi::CString;
use std::fmt::{self, Write as _};
use std::os::fd::{BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

use rustix::fs::{CWD, Mode, OFlags};
use tracing::level_filters::LevelFilter;
use tracing::span;
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};
use usvfs_view::instance_dir::InstanceDir;

/// The log's descriptor is moved to this number or above.
const FD_MIN: i32 = 100;

/// Longest line written; a longer one is cut.
const LINE_MAX: usize = 4096;

/// Starts logging for this process if the instance asks for it. Call once,
/// from the library constructor, inside the re-entrancy guard. Does nothing
/// (not even opening a file) when the instance's level is off.
pub fn init(dir: &InstanceDir) {
    let Some(level) = dir.read_log_level() else {
        return;
    };
    let Some(log) = FileLog::open(dir, LevelFilter::from_level(level)) else {
        return;
    };
    if tracing::subscriber::set_global_default(log).is_err() {
        return;
    }
    let pid = rustix::process::getpid().as_raw_pid();
    tracing::debug!(
        instance = ?dir.dir.file_name().unwrap_or_default(),
        exe = ?rustix::fs::readlink(c"/proc/self/exe", Vec::new()).unwrap_or_default(),
        "process {pid} joined instance"
    );
}

/// The subscriber: a level and the log file.
struct FileLog {
    max: LevelFilter,
    path: CString,
    /// The descriptor and the identity (device, inode) of the file it was
    /// opened on, to tell whether the program reused the number.
    fd: AtomicI32,
    dev: AtomicU64,
    ino: AtomicU64,
}

impl FileLog {
    fn open(dir: &InstanceDir, max: LevelFilter) -> Option<Self> {
        let path = CString::new(dir.log_path().into_os_string().as_bytes()).ok()?;
        let log = FileLog {
            max,
            path,
            fd: AtomicI32::new(-1),
            dev: AtomicU64::new(0),
            ino: AtomicU64::new(0),
        };
        log.reopen()?;
        Some(log)
    }

    /// Opens the log file (creating it) and makes it the current descriptor.
    /// The previous descriptor is not closed: its number may belong to the
    /// program by now.
    fn reopen(&self) -> Option<i32> {
        let fd = rustix::fs::openat(
            CWD,
            self.path.as_c_str(),
            OFlags::WRONLY | OFlags::APPEND | OFlags::CREATE | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .ok()?;
        // Out of the way of programs that expect the lowest free numbers
        // (a process started with stdin closed must not get the log as fd 0).
        let fd = rustix::io::fcntl_dupfd_cloexec(&fd, FD_MIN).unwrap_or(fd);
        let st = rustix::fs::fstat(&fd).ok()?;
        let (dev, ino, _) = identity(&st);
        self.dev.store(dev, Ordering::Relaxed);
        self.ino.store(ino, Ordering::Relaxed);
        let raw = fd.into_raw_fd();
        self.fd.store(raw, Ordering::Release);
        Some(raw)
    }

    /// The descriptor to write to: the current one if it still refers to the
    /// log file (and the file was not deleted), else a new one.
    fn current_fd(&self) -> Option<i32> {
        let fd = self.fd.load(Ordering::Acquire);
        if fd >= 0 {
            // SAFETY: only used for the fstat below; a closed or reused
            // number is what the check is for.
            let b = unsafe { BorrowedFd::borrow_raw(fd) };
            if let Ok(st) = rustix::fs::fstat(b)
                && let (dev, ino, links) = identity(&st)
                && dev == self.dev.load(Ordering::Relaxed)
                && ino == self.ino.load(Ordering::Relaxed)
                && links > 0
            {
                return Some(fd);
            }
        }
        self.reopen()
    }

    fn write_event(&self, event: &Event<'_>) {
        let mut line = Line::new();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let meta = event.metadata();
        let _ = write!(
            line,
            "{}.{:03} {} {} {}: ",
            now.as_secs(),
            now.subsec_millis(),
            rustix::process::getpid().as_raw_pid(),
            meta.level().as_str(),
            meta.target(),
        );
        event.record(&mut MessageOf(&mut line));
        event.record(&mut FieldsOf(&mut line));
        let bytes = line.finish();
        let Some(fd) = self.current_fd() else { return };
        // SAFETY: `current_fd` just checked that the number is our log.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        // A short write to a regular file means the disk is full: nothing
        // more to do without interleaving.
        while let Err(rustix::io::Errno::INTR) = rustix::io::write(fd, bytes) {}
    }
}

/// Device, inode and link count (their widths differ between architectures).
#[allow(clippy::unnecessary_cast)]
fn identity(st: &rustix::fs::Stat) -> (u64, u64, u64) {
    (st.st_dev as u64, st.st_ino as u64, st.st_nlink as u64)
}

impl Drop for FileLog {
    fn drop(&mut self) {
        let fd = *self.fd.get_mut();
        if fd >= 0 {
            // SAFETY: a subscriber that is dropped was never installed, so
            // the descriptor is still the one it opened.
            drop(unsafe { OwnedFd::from_raw_fd(fd) });
        }
    }
}

impl Subscriber for FileLog {
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        // Cached per call site: a disabled one is never asked again.
        if self.enabled(meta) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        // Spans are not logged (and so never built).
        meta.is_event() && *meta.level() <= self.max
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.max)
    }

    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }

    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}

    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}

    fn event(&self, event: &Event<'_>) {
        // A hook's caller must find errno as the call left it, and a log line
        // must never take the process down.
        // SAFETY: always a valid thread-local pointer.
        let saved = unsafe { *libc::__errno_location() };
        let _ = catch_unwind(AssertUnwindSafe(|| self.write_event(event)));
        // SAFETY: as above.
        unsafe { *libc::__errno_location() = saved };
    }

    fn enter(&self, _: &span::Id) {}

    fn exit(&self, _: &span::Id) {}
}

/// One log line, built on the stack. Newlines inside values are escaped so an
/// event stays one line; what does not fit is dropped (at a character
/// boundary) and the line ends with `...`.
struct Line {
    buf: [u8; LINE_MAX],
    len: usize,
    cut: bool,
}

/// Room kept at the end for `...\n`.
const TAIL: usize = 4;

impl Line {
    fn new() -> Self {
        Line {
            buf: [0; LINE_MAX],
            len: 0,
            cut: false,
        }
    }

    fn push(&mut self, bytes: &[u8]) -> bool {
        if self.cut || self.len + bytes.len() > LINE_MAX - TAIL {
            self.cut = true;
            return false;
        }
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
        true
    }

    fn finish(&mut self) -> &[u8] {
        let tail: &[u8] = if self.cut { b"...\n" } else { b"\n" };
        self.buf[self.len..self.len + tail.len()].copy_from_slice(tail);
        &self.buf[..self.len + tail.len()]
    }
}

impl fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            let ok = match c {
                '\n' => self.push(b"\\n"),
                '\r' => self.push(b"\\r"),
                c => self.push(c.encode_utf8(&mut [0; 4]).as_bytes()),
            };
            if !ok {
                break;
            }
        }
        // Never an error: a cut line is still written.
        Ok(())
    }
}

/// Writes the event's message.
struct MessageOf<'a>(&'a mut Line);

impl tracing::field::Visit for MessageOf<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            let _ = self.0.write_str(value);
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        }
    }
}

/// Writes the event's other fields as ` key=value`.
struct FieldsOf<'a>(&'a mut Line);

impl tracing::field::Visit for FieldsOf<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        let name = field.name();
        if name != "message" && !name.starts_with("log.") {
            let _ = write!(self.0, " {name}={value:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_cut_at_a_character_boundary_and_stay_one_line() {
        let mut l = Line::new();
        let _ = l.write_str("a\nb");
        assert_eq!(l.finish(), b"a\\nb\n");
        let mut l = Line::new();
        let _ = l.write_str(&"é".repeat(LINE_MAX));
        let out = l.finish().to_vec();
        assert!(out.len() <= LINE_MAX);
        assert!(out.ends_with(b"...\n"));
        assert!(std::str::from_utf8(&out).is_ok());
    }

    /// The only test that installs the (process-wide) subscriber.
    #[test]
    fn init_writes_enabled_events_one_line_each() {
        let dir = std::env::temp_dir().join(format!("usvfs-log-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let inst = InstanceDir::new(&dir);
        inst.write_log_level(Some("info")).unwrap();
        init(&inst);
        // SAFETY: a valid thread-local pointer.
        unsafe { *libc::__errno_location() = libc::EXDEV };
        tracing::warn!(path = %"/a b", n = 3, "two\nlines");
        // SAFETY: as above.
        assert_eq!(unsafe { *libc::__errno_location() }, libc::EXDEV);
        tracing::debug!("below the level");
        tracing::error!(what = "x".repeat(2 * LINE_MAX), "long");
        let text = std::fs::read_to_string(inst.log_path()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        let f: Vec<&str> = lines[0].splitn(5, ' ').collect();
        let (secs, ms) = f[0].split_once('.').unwrap();
        assert!(secs.parse::<u64>().unwrap() > 1_600_000_000 && ms.len() == 3);
        assert_eq!(f[1], std::process::id().to_string());
        assert_eq!(f[2], "WARN");
        assert!(f[3].ends_with("log::tests:"), "{}", f[3]);
        assert_eq!(f[4], "two\\nlines path=/a b n=3");
        assert!(lines[1].contains(" ERROR ") && lines[1].ends_with("..."));
        assert!(lines[1].len() < LINE_MAX);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
