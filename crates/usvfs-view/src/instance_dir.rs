//! The files of an instance directory as a hooked process uses them: the
//! index snapshot, the journal, the exec rules, the log, and one registry
//! entry per process. Creating, publishing and cleaning up instances is the
//! controller's job (`usvfs-control`).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
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

    /// Registration of a hooked process without writing to the file
    /// system: a shared `flock` on the instance's `procs` directory, held
    /// through the returned descriptor (close-on-exec) for as long as the
    /// process lives. The kernel drops it when the process exits in any way
    /// (`_exit`, a crash, a signal) or execs; a forked child shares it.
    /// Controllers see holders by probing the lock and list them from
    /// `/proc/locks`. Raw system calls only.
    pub fn hold_quick(&self) -> Option<rustix::fd::OwnedFd> {
        use rustix::fs::{FlockOperation, flock};
        let fd = self.open_procs()?;
        // Not blocking: only a leaving last process holds it exclusively,
        // for the moment it takes to remove the instance.
        flock(&fd, FlockOperation::NonBlockingLockShared).ok()?;
        Some(fd)
    }

    /// A new open file description of `procs` (locks belong to one).
    fn open_procs(&self) -> Option<rustix::fd::OwnedFd> {
        use rustix::fs::{CWD, Mode, OFlags, openat};
        openat(
            CWD,
            self.procs_dir().as_path(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()
    }

    /// Some process holds the instance (see [`InstanceDir::hold_quick`]):
    /// the exclusive lock cannot be had. `None` when `procs` is gone.
    pub fn is_held(&self) -> Option<bool> {
        let fd = self.lock_procs_exclusively()?;
        Some(fd.is_none())
    }

    /// `Some(Some(fd))`: `procs` locked exclusively through `fd` (nobody
    /// holds the instance); `Some(None)`: it is held; `None`: no `procs`.
    fn lock_procs_exclusively(&self) -> Option<Option<rustix::fd::OwnedFd>> {
        use rustix::fs::{FlockOperation, flock};
        let fd = self.open_procs()?;
        Some(
            flock(&fd, FlockOperation::NonBlockingLockExclusive)
                .is_ok()
                .then_some(fd),
        )
    }

    /// Fast leave for hooked processes at exit: drop this process's hold,
    /// and remove the instance if nobody holds it any more and no
    /// controller's entry is left (no /proc scan: controllers prune the
    /// entries of their crashed peers).
    pub fn leave_quick(&self, hold: Option<rustix::fd::OwnedFd>) {
        drop(hold);
        let Some(Some(excl)) = self.lock_procs_exclusively() else {
            return;
        };
        // Empty `procs` only: a controller's entry keeps the instance.
        if std::fs::remove_dir(self.procs_dir()).is_ok() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        drop(excl);
    }

    /// The processes holding the instance (see [`InstanceDir::hold_quick`]),
    /// from `/proc/locks`: the pid that took each hold (a forked child
    /// shares its parent's). Matched by the inode of `procs`; callers
    /// confirm each pid.
    pub fn holders(&self) -> Vec<i32> {
        use std::os::unix::fs::MetadataExt;
        let Ok(meta) = std::fs::metadata(self.procs_dir()) else {
            return Vec::new();
        };
        let Ok(locks) = std::fs::read("/proc/locks") else {
            return Vec::new();
        };
        parse_flock_holders(&locks, meta.ino())
    }
}

/// The pids of the `FLOCK` locks on inode `ino` in the contents of
/// `/proc/locks` (`N: FLOCK ADVISORY READ PID MAJ:MIN:INO START END`);
/// waiters (`N: -> FLOCK ...`) hold nothing.
pub fn parse_flock_holders(locks: &[u8], ino: u64) -> Vec<i32> {
    let mut out = Vec::new();
    for line in locks.split(|&c| c == b'\n') {
        let mut f = line.split(|&c| c == b' ').filter(|f| !f.is_empty());
        if f.nth(1) != Some(b"FLOCK".as_slice()) {
            continue;
        }
        let (Some(pid), Some(file)) = (f.nth(2), f.next()) else {
            continue;
        };
        let file_ino = file.rsplit(|&c| c == b':').next().unwrap_or_default();
        let num = |b: &[u8]| std::str::from_utf8(b).ok()?.parse::<u64>().ok();
        if num(file_ino) == Some(ino)
            && let Some(pid) = num(pid).and_then(|p| i32::try_from(p).ok())
            && !out.contains(&pid)
        {
            out.push(pid);
        }
    }
    out
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
    fn holds_count_until_the_last_leaves_and_write_nothing() {
        let t = tempfile::tempdir().unwrap();
        let d = InstanceDir::new(t.path());
        std::fs::create_dir(d.procs_dir()).unwrap();
        assert_eq!(d.is_held(), Some(false));
        let a = d.hold_quick().unwrap();
        let b = d.hold_quick().unwrap();
        assert_eq!(d.is_held(), Some(true));
        assert_eq!(std::fs::read_dir(d.procs_dir()).unwrap().count(), 0);
        let me = std::process::id() as i32;
        assert_eq!(d.holders(), vec![me]);
        // One holder leaves: the other keeps the instance.
        d.leave_quick(Some(a));
        assert!(t.path().exists());
        assert_eq!(d.is_held(), Some(true));
        // A controller's entry keeps it too, after the last hold is gone.
        std::fs::write(d.procs_dir().join("1"), "1").unwrap();
        d.leave_quick(Some(b));
        assert!(t.path().exists());
        assert_eq!(d.is_held(), Some(false));
        std::fs::remove_file(d.procs_dir().join("1")).unwrap();
        d.leave_quick(None);
        assert!(!t.path().exists());
        assert_eq!(d.is_held(), None);
    }

    #[test]
    fn flock_holders_from_proc_locks() {
        let locks = b"1: FLOCK  ADVISORY  READ  4242 00:1f:777 0 EOF\n\
1: -> FLOCK  ADVISORY  WRITE 5151 00:1f:777 0 EOF\n\
2: POSIX  ADVISORY  WRITE 6161 00:1f:777 0 EOF\n\
3: FLOCK  ADVISORY  READ  4343 fd:01:777 0 EOF\n\
4: FLOCK  ADVISORY  READ  4444 00:1f:778 0 EOF\n\
5: FLOCK  ADVISORY  READ  4242 00:1f:777 0 EOF\n";
        assert_eq!(parse_flock_holders(locks, 777), vec![4242, 4343]);
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
