//! The instance log: `tracing` events of a hooked process (journal and hook
//! failures, and at `debug` the process joining) appended to `<instance>/log`,
//! which `usvfs log` and Python's `get_log_messages` read.
//!
//! Off unless asked: without a level in the instance (`usvfs run --log-level`,
//! py-usvfs's log level) no subscriber is installed, no file is opened, and
//! `tracing`'s macros stay a check of a static level. With a level, a minimal
//! subscriber (no `tracing-subscriber`, to keep this library small) writes one
//! line per enabled event, opening the log at the first one:
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
//! opened again (so is a log that was deleted). No lock is taken, so a
//! process that forks while another thread logs cannot deadlock.
//!
//! Notices — the lines a process prints on stderr when a program runs
//! outside the view — are written whatever the level ([`notice`]): a game
//! started from Steam or a desktop launcher has no terminal, and `usvfs log`
//! is where its user looks.

use std::ffi::CString;
use std::fmt::{self, Write as _};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd};
use std::os::unix::ffi::OsStringExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};

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
/// when the instance's level is off; with a level, the log file is opened
/// only when the first line is written.
pub fn init(dir: &InstanceDir) {
    let Some(level) = dir.read_log_level() else {
        return;
    };
    let Ok(path) = CString::new(dir.log_path().into_os_string().into_vec()) else {
        return;
    };
    let log = FileLog {
        max: LevelFilter::from_level(level),
        path,
        file: AtomicU64::new(NOT_OPEN),
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

/// Appends a notice to the instance's log whatever its level, in the format
/// of other lines (at `WARN`): `message` is the sentence printed on stderr.
/// Rare (once per program started outside the view), so the log is opened
/// and closed for it; a log that cannot be opened (an instance that is gone)
/// is skipped. Keeps errno.
pub fn notice(instance_dir: &[u8], target: &str, message: &str) {
    // SAFETY: always a valid thread-local pointer.
    let saved = unsafe { *libc::__errno_location() };
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let mut line = Line::new();
        header(&mut line, tracing::Level::WARN, target);
        let _ = line.write_str(message);
        let mut path = instance_dir.to_vec();
        path.extend_from_slice(b"/log");
        let Ok(path) = CString::new(path) else { return };
        let Ok(fd) = rustix::fs::openat(
            CWD,
            path.as_c_str(),
            OFlags::WRONLY | OFlags::APPEND | OFlags::CREATE | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        ) else {
            return;
        };
        while let Err(rustix::io::Errno::INTR) = rustix::io::write(&fd, line.finish()) {}
    }));
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = saved };
}

/// `<unix time, ms> <pid> <LEVEL> <target>: `
fn header(line: &mut Line, level: tracing::Level, target: &str) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let _ = write!(
        line,
        "{}.{:03} {} {} {}: ",
        now.as_secs(),
        now.subsec_millis(),
        rustix::process::getpid().as_raw_pid(),
        level.as_str(),
        target,
    );
}

/// The subscriber: a level and the log file.
struct FileLog {
    max: LevelFilter,
    path: CString,
    /// The open descriptor (high 32 bits) and a digest of the identity
    /// (device, inode) of the file it was opened on (low 32 bits), swapped as
    /// one value; [`NOT_OPEN`] before the first line.
    file: AtomicU64,
}

const NOT_OPEN: u64 = u64::MAX;

/// The identity digest of an open file, and whether it still has a name.
fn identity(fd: BorrowedFd<'_>) -> Option<(u32, bool)> {
    let st = rustix::fs::fstat(fd).ok()?;
    // Field widths differ between architectures.
    #[allow(clippy::unnecessary_cast)]
    let (dev, ino, links) = (st.st_dev as u64, st.st_ino as u64, st.st_nlink as u64);
    let h = (ino ^ dev.rotate_left(32)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    Some(((h >> 32) as u32, links > 0))
}

fn unpack(v: u64) -> (i32, u32) {
    ((v >> 32) as u32 as i32, v as u32)
}

impl FileLog {
    /// The descriptor to write to: the current one if it still refers to the
    /// log file (and the file was not deleted), else a newly opened one.
    fn current_fd(&self) -> Option<i32> {
        let v = self.file.load(Ordering::Acquire);
        if v != NOT_OPEN {
            let (fd, id) = unpack(v);
            // SAFETY: only used for fstat; a closed or reused number is what
            // the check is for.
            if identity(unsafe { BorrowedFd::borrow_raw(fd) }) == Some((id, true)) {
                return Some(fd);
            }
        }
        self.reopen(v)
    }

    /// Opens the log file (creating it) and makes it the current descriptor
    /// unless another thread did first. The replaced descriptor is not
    /// closed: its number may belong to the program by now.
    fn reopen(&self, seen: u64) -> Option<i32> {
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
        let (id, _) = identity(fd.as_fd())?;
        let raw = fd.as_raw_fd();
        let v = ((raw as u32 as u64) << 32) | id as u64;
        match self
            .file
            .compare_exchange(seen, v, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {
                let _ = fd.into_raw_fd();
                Some(raw)
            }
            // Another thread opened it meanwhile: use that one (ours closes).
            Err(now) if now != NOT_OPEN => Some(unpack(now).0),
            Err(_) => None,
        }
    }

    fn write_event(&self, event: &Event<'_>) {
        let mut line = Line::new();
        let meta = event.metadata();
        header(&mut line, *meta.level(), meta.target());
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
        // The "joined" line is at debug: nothing written, nothing opened.
        assert!(!inst.log_path().exists());
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

        // The program takes the descriptor's number over: its file is left
        // alone and the log is opened again.
        let ours = std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| {
                let e = e.ok()?;
                let target = std::fs::read_link(e.path()).ok()?;
                (target == inst.log_path()).then(|| e.file_name().into_string().ok())?
            })
            .map(|n| n.parse::<i32>().unwrap())
            .collect::<Vec<_>>();
        assert_eq!(ours.len(), 1);
        assert!(ours[0] >= FD_MIN);
        let other = std::fs::File::create(dir.join("other")).unwrap();
        // SAFETY: both descriptors are valid and owned by this test.
        let r = unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&other), ours[0]) };
        assert_eq!(r, ours[0]);
        tracing::info!("after dup2");
        assert_eq!(std::fs::read(dir.join("other")).unwrap(), b"");
        let text = std::fs::read_to_string(inst.log_path()).unwrap();
        assert!(
            text.lines().nth(2).unwrap().ends_with(": after dup2"),
            "{text}"
        );

        // A deleted log is created again.
        std::fs::remove_file(inst.log_path()).unwrap();
        tracing::info!("after delete");
        let text = std::fs::read_to_string(inst.log_path()).unwrap();
        assert_eq!(text.lines().count(), 1);
        assert!(text.ends_with(": after delete\n"), "{text}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
