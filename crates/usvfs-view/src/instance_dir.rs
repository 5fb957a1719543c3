//! The files of an instance directory as a hooked process uses them: the
//! index snapshot, the journal, the exec rules, the log, and one registry
//! entry per process. Creating, publishing and cleaning up instances is the
//! controller's job (`usvfs-control`).

use std::ffi::OsStr;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::semantics::exec::ExecRules;

/// An instance directory (`<runtime>/<name>/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceDir {
    pub dir: PathBuf,
}

impl InstanceDir {
    /// Maps the instance's current index and the journal that belongs to it.
    /// A controller publishing right now may have renamed the journal but
    /// not yet the index: retries until both belong to one generation.
    /// `trusted`: the index was written by us (skip its full check).
    pub fn load_view(
        &self,
        trusted: bool,
    ) -> crate::error::Result<(crate::Snapshot<'static>, Option<crate::journal::Journal>)> {
        use crate::index::MappedSnapshot;
        for _ in 0..20 {
            let path = self.index_path();
            let mapped = if trusted {
                MappedSnapshot::open_trusted(&path)?
            } else {
                MappedSnapshot::open(&path)?
            };
            let snap = mapped.leak();
            let journal = crate::journal::Journal::open(&self.journal_path()).ok();
            if journal
                .as_ref()
                .is_some_and(|j| j.generation() != snap.generation())
            {
                std::thread::yield_now();
                continue;
            }
            return Ok((snap, journal));
        }
        Err(crate::error::Error::Index {
            path: self.index_path(),
            message: "the index and the journal do not belong together (a mapping is being \
                      published again and again)"
                .into(),
        })
    }

    pub fn new(dir: impl Into<PathBuf>) -> Self {
        InstanceDir { dir: dir.into() }
    }

    pub fn from_bytes(dir: &[u8]) -> Self {
        Self::new(Path::new(OsStr::from_bytes(dir)))
    }

    pub fn index_path(&self) -> PathBuf {
        self.dir.join("index")
    }

    pub fn journal_path(&self) -> PathBuf {
        self.dir.join("journal")
    }

    pub fn exec_rules_path(&self) -> PathBuf {
        self.dir.join("exec_rules")
    }

    /// Where hooked processes append their log lines.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("log")
    }

    /// The log level hooked processes use (`off` when the file is absent).
    pub fn log_level_path(&self) -> PathBuf {
        self.dir.join("log_level")
    }

    /// The level hooked processes log at: `None` (off) when the file is
    /// absent, says `off`, or holds anything but `error`, `warn`, `info`,
    /// `debug` or `trace`. Read with raw system calls (no allocation beyond the
    /// path, no libc file function a preload engine might hook).
    pub fn read_log_level(&self) -> Option<tracing::Level> {
        use rustix::fs::{CWD, Mode, OFlags, openat};
        let fd = openat(
            CWD,
            self.log_level_path().as_os_str(),
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        let mut buf = [0u8; 16];
        let len = read_up_to(&fd, &mut buf)?;
        parse_log_level(buf[..len].trim_ascii())?
    }

    /// Sets the level hooked processes started from now on log at (`off`,
    /// `error`, `warn`, `info`, `debug` or `trace`; `None` or `off` removes the
    /// file). Written to a temporary name and renamed, so a starting process
    /// reads either the old level or the new one.
    pub fn write_log_level(&self, level: Option<&str>) -> std::io::Result<()> {
        let path = self.log_level_path();
        let level = match level {
            None => None,
            Some(l) => match parse_log_level(l.trim().as_bytes()) {
                Some(parsed) => parsed.map(|_| l.trim().to_ascii_lowercase()),
                None => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        format!(
                            "unknown log level {l:?}: use one of {}",
                            LOG_LEVELS.join(", ")
                        ),
                    ));
                }
            },
        };
        let Some(level) = level else {
            return match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            };
        };
        write_atomically(&path, format!("{level}\n").as_bytes())
    }

    pub fn procs_dir(&self) -> PathBuf {
        self.dir.join("procs")
    }

    /// The current exec rules (none when never written).
    pub fn read_exec_rules(&self) -> ExecRules {
        std::fs::read(self.exec_rules_path())
            .map(|b| ExecRules::decode(&b))
            .unwrap_or_default()
    }

    /// Cheap registration for hooked processes (one system call at start):
    /// an empty entry. The controller counts it while a process with that pid
    /// maps this instance's index, which tells this process from one that
    /// left without its exit hook (`_exit`, a crash, a signal), from a later
    /// process that got the same pid, and from this one once it exec'd a
    /// program outside the view. No start time: reading `/proc/self/stat`
    /// and writing it cost more than the rest of the start together on a
    /// disk file system. Raw system calls only.
    pub fn register_quick(&self, pid: i32) {
        use rustix::fs::{CWD, FileType, Mode, OFlags, mknodat, openat};
        let p = self
            .procs_dir()
            .join(pid.to_string())
            .into_os_string()
            .into_vec();
        // Failing to register only hides the process from `usvfs ps`.
        let made = mknodat(
            CWD,
            p.as_slice(),
            FileType::RegularFile,
            Mode::from_raw_mode(0o600),
            0,
        );
        // A stale entry of an earlier process with this pid may hold its
        // start time, which would not match ours: empty it.
        if made == Err(rustix::io::Errno::EXIST) {
            let _ = openat(
                CWD,
                p.as_slice(),
                OFlags::WRONLY | OFlags::TRUNC | OFlags::CLOEXEC,
                Mode::empty(),
            );
        }
    }

    /// Fast leave for hooked processes at exit: forget `pid`, and remove the
    /// instance only if no entry at all is left (no lock, no /proc scan: the
    /// controller prunes stale entries of crashed processes).
    pub fn leave_quick(&self, pid: i32) {
        let procs = self.procs_dir();
        let _ = std::fs::remove_file(procs.join(pid.to_string()));
        if std::fs::remove_dir(&procs).is_ok() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Replaces `path` with `bytes` atomically: written beside it under a
/// temporary name, then renamed, so a reader sees the old or the new file,
/// never a part. The temporary is removed when anything fails.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_os_string();
    tmp.push(format!(".tmp.{}", std::process::id()));
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
}

/// The state (field 3) and start time (field 22, clock ticks since boot) of a
/// process, from the contents of its `/proc/PID/stat`.
pub fn parse_stat(stat: &[u8]) -> Option<(u8, u64)> {
    // The command (field 2) is in parentheses and may hold anything: the
    // fields after it start after the last ')'.
    let close = stat.iter().rposition(|&c| c == b')')?;
    let mut fields = stat.get(close + 2..)?.split(|&c| c == b' ');
    let state = *fields.next()?.first()?;
    let start = fields.nth(18)?;
    if start.is_empty() || !start.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut v: u64 = 0;
    for &d in start {
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some((state, v))
}

/// The log levels of an instance, least verbose first (`off` logs nothing).
pub const LOG_LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// Parses a log level name (ASCII case ignored): `Some(None)` for `off`,
/// `Some(Some(level))` for a level, `None` for anything else.
pub fn parse_log_level(s: &[u8]) -> Option<Option<tracing::Level>> {
    use tracing::Level;
    const LEVELS: [Option<Level>; 6] = [
        None,
        Some(Level::ERROR),
        Some(Level::WARN),
        Some(Level::INFO),
        Some(Level::DEBUG),
        Some(Level::TRACE),
    ];
    LOG_LEVELS
        .iter()
        .position(|n| n.as_bytes().eq_ignore_ascii_case(s))
        .map(|i| LEVELS[i])
}

/// Reads from `fd` until `buf` is full or the end: the length read (raw
/// system calls, no allocation; `None` on an error).
fn read_up_to(fd: &rustix::fd::OwnedFd, buf: &mut [u8]) -> Option<usize> {
    let mut len = 0;
    while len < buf.len() {
        match rustix::io::read(fd, &mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return None,
        }
    }
    Some(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields() {
        let line =
            b"42 (a) b) (c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_stat(line), Some((b'S', 987654)));
        assert_eq!(parse_stat(b"42 (x) Z 1"), None);
        let me = std::fs::read("/proc/thread-self/stat").unwrap();
        assert_eq!(parse_stat(&me).map(|(s, _)| s), Some(b'R'));
    }

    #[test]
    fn quick_registration_leaves_an_empty_entry() {
        let t = tempfile::tempdir().unwrap();
        let d = InstanceDir::new(t.path());
        std::fs::create_dir(d.procs_dir()).unwrap();
        let me = std::process::id() as i32;
        let entry = d.procs_dir().join(me.to_string());
        // A stale entry of an earlier process with this pid is emptied.
        std::fs::write(&entry, "12345").unwrap();
        d.register_quick(me);
        assert_eq!(std::fs::read_to_string(&entry).unwrap(), "");
        std::fs::remove_file(&entry).unwrap();
        d.register_quick(me);
        assert_eq!(std::fs::read_to_string(&entry).unwrap(), "");
        d.leave_quick(me);
        assert!(!t.path().exists());
    }

    #[test]
    fn log_level_round_trip() {
        let t = tempfile::tempdir().unwrap();
        let d = InstanceDir::new(t.path());
        assert_eq!(d.read_log_level(), None, "absent file means off");
        for (name, level) in [
            ("error", tracing::Level::ERROR),
            ("warn", tracing::Level::WARN),
            ("info", tracing::Level::INFO),
            ("debug", tracing::Level::DEBUG),
            ("trace", tracing::Level::TRACE),
            (" DEBUG\n", tracing::Level::DEBUG),
        ] {
            d.write_log_level(Some(name)).unwrap();
            assert_eq!(d.read_log_level(), Some(level), "{name:?}");
        }
        // Only the level file is left: the temporary was renamed.
        let names: Vec<_> = std::fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [OsStr::new("log_level")]);
        assert_eq!(
            std::fs::read_to_string(d.log_level_path()).unwrap(),
            "debug\n"
        );

        d.write_log_level(Some("off")).unwrap();
        assert!(!d.log_level_path().exists());
        assert_eq!(d.read_log_level(), None);
        d.write_log_level(Some("info")).unwrap();
        d.write_log_level(None).unwrap();
        assert!(!d.log_level_path().exists());
        d.write_log_level(None).unwrap();

        let e = d.write_log_level(Some("loud")).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("loud"));
        assert!(!d.log_level_path().exists());

        for junk in ["off\n", "verbose", "", "debugging"] {
            std::fs::write(d.log_level_path(), junk).unwrap();
            assert_eq!(d.read_log_level(), None, "{junk:?}");
        }
    }
}
