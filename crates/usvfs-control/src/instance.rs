//! Instances: a named directory of private runtime state (mode 0700, owned by
//! the user) holding the published index snapshot and one entry per live
//! process. The last process to leave removes the directory; an instance
//! whose processes all left without their exit hook (killed, crashed, `_exit`)
//! is removed by the next controller that opens it.
//!
//! Layout of `<runtime>/usvfs/<name>/` (`$USVFS_RUNTIME_DIR/<name>/` when set):
//! * `index`    — the current snapshot (written to a temporary name, renamed);
//! * `lock`     — `flock`ed while registering, leaving and cleaning up;
//! * `procs/N`  — one file per live process (pid N), holding its start time
//!   (field 22 of `/proc/N/stat`): an entry counts only while a process with
//!   that pid and that start time runs (not a zombie), so processes that left
//!   without their exit hook and pids reused since never count as live.
//! * `log_level` — the level hooked processes log at (absent: off);
//! * `log`      — the lines they log, appended one `write` each.
//! * `engine`, `mount_ns/` — the engine and its namespaces (`mount_ns.rs`).

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use usvfs_view::instance_dir::{InstanceDir, write_atomically};

pub const DEFAULT_NAME: &str = "usvfs_instance";
pub const MAX_NAME_LEN: usize = 64;

pub use usvfs_view::launch_env::ENV_INSTANCE_DIR;

fn inst_err(name: &str, message: impl Into<String>) -> Error {
    Error::Instance {
        name: name.into(),
        message: message.into(),
    }
}

/// Names the directory that holds the instances, instead of
/// `$XDG_RUNTIME_DIR/usvfs`: a container that hides the runtime directory
/// but shares another (pressure-vessel shares `/tmp`, not `/run`) can then
/// reach its instance by path.
pub const ENV_RUNTIME_DIR: &str = "USVFS_RUNTIME_DIR";

/// The per-user directory that holds all instances.
pub fn runtime_root() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os(ENV_RUNTIME_DIR).filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        if !dir.is_absolute() {
            return Err(Error::RuntimeDir(format!(
                "{ENV_RUNTIME_DIR}={} is not an absolute path: name the directory that holds the instances from /",
                dir.display()
            )));
        }
        ensure_private_dir(&dir, "runtime directory")?;
        return Ok(dir);
    }
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    let root = match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(x)
            if !x.is_empty()
                && fs::metadata(&x)
                    .map(|m| m.is_dir() && m.uid() == uid)
                    .unwrap_or(false) =>
        {
            Path::new(&x).join("usvfs")
        }
        _ => PathBuf::from(format!("/tmp/usvfs-{uid}")),
    };
    ensure_private_dir(&root, "runtime directory")?;
    Ok(root)
}

/// Creates `dir` with mode 0700 if missing; refuses a directory another user
/// owns or one that others can write to (someone could plant an index there).
fn ensure_private_dir(dir: &Path, what: &str) -> Result<()> {
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io("creating the usvfs runtime directory", dir, e)),
    }
    let meta = fs::symlink_metadata(dir).map_err(|e| Error::io("checking", dir, e))?;
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    if !meta.is_dir() || meta.uid() != uid {
        return Err(Error::Instance {
            name: dir.display().to_string(),
            message: format!(
                "the {what} {} is not a directory owned by uid {uid}: remove it or set XDG_RUNTIME_DIR to a private directory",
                dir.display()
            ),
        });
    }
    if meta.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io("securing", dir, e))?;
    }
    Ok(())
}

pub fn validate_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(inst_err(
            name,
            format!("an instance name must have 1 to {MAX_NAME_LEN} characters"),
        ));
    }
    if name.contains('/') || name == "." || name == ".." || name.contains('\0') {
        return Err(inst_err(
            name,
            "an instance name cannot contain '/' or be '.' or '..'",
        ));
    }
    Ok(())
}

/// A handle on an instance directory.
#[derive(Debug, Clone)]
pub struct Instance {
    pub name: String,
    pub dir: PathBuf,
}

/// A live process registered with an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    pub pid: i32,
    pub command: Vec<u8>,
}

impl Instance {
    /// Opens or creates the named instance under the runtime root.
    pub fn open_or_create(name: &str) -> Result<Self> {
        validate_name(name)?;
        let dir = runtime_root()?.join(name);
        ensure_private_dir(&dir, "instance directory")?;
        let procs = dir.join("procs");
        ensure_private_dir(&procs, "instance directory")?;
        Ok(Instance {
            name: name.into(),
            dir,
        })
    }

    /// Opens a running instance, without creating anything. An instance with
    /// no live process left (its processes were killed or crashed) is a
    /// leftover: it is removed, and this returns `None`.
    pub fn open_existing(name: &str) -> Result<Option<Self>> {
        validate_name(name)?;
        let dir = runtime_root()?.join(name);
        if !dir.join("index").exists() {
            return Ok(None);
        }
        let inst = Instance {
            name: name.into(),
            dir,
        };
        Ok((!inst.remove_if_unused()?).then_some(inst))
    }

    /// Removes the instance when no live process uses it (a leftover of
    /// killed or crashed processes). Returns true when it was removed.
    pub fn remove_if_unused(&self) -> Result<bool> {
        if self.in_use() {
            return Ok(false);
        }
        self.with_lock(|| {
            if !self.in_use() {
                let _ = fs::remove_dir_all(&self.dir);
                true
            } else {
                false
            }
        })
    }

    /// Creates (if needed) the named instance and registers `pid` with it,
    /// under the instance lock, so a controller cleaning up a leftover of the
    /// same name never removes it between creation and registration. Returns
    /// the instance and the other live processes it had.
    pub fn join_new(name: &str, pid: i32) -> Result<(Self, Vec<i32>)> {
        loop {
            let inst = Self::open_or_create(name)?;
            let joined = inst.with_lock(|| -> Result<Option<Vec<i32>>> {
                if !inst.dir.join("procs").is_dir() {
                    // Removed while we waited for the lock: start over.
                    return Ok(None);
                }
                let others = inst.live_pids();
                inst.register(pid)?;
                Ok(Some(others))
            })?;
            if let Some(others) = joined? {
                return Ok((inst, others));
            }
        }
    }

    /// An instance known by its directory (what hooked processes get).
    pub fn from_dir(dir: &Path) -> Self {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Instance {
            name,
            dir: dir.into(),
        }
    }

    /// The files hooked processes use (index, journal, exec rules, log).
    pub fn files(&self) -> InstanceDir {
        InstanceDir::new(&self.dir)
    }

    pub fn index_path(&self) -> PathBuf {
        self.files().index_path()
    }

    pub fn journal_path(&self) -> PathBuf {
        self.files().journal_path()
    }

    /// Publishes a new snapshot atomically: running processes keep the one they
    /// mapped, processes started from now on see this one.
    pub fn publish(&self, snapshot: &[u8]) -> Result<()> {
        // A fresh journal first: a process that sees the new index must find
        // the journal that belongs to it.
        let (generation, case_insensitive) = crate::Snapshot::parse(snapshot)
            .map(|s| (s.generation(), s.case_insensitive()))
            .unwrap_or((0, false));
        // The previous journal's writers' lock is held throughout, so no
        // writer moves it to a larger file meanwhile (a moved one is
        // followed to the file that replaced it).
        let previous = loop {
            let Ok(p) = crate::journal::Journal::open(&self.journal_path()) else {
                break None;
            };
            if !p.is_moved() {
                break Some(p);
            }
        };
        let guard = match &previous {
            Some(p) => Some(
                p.lock()
                    .map_err(|e| Error::io("locking journal", self.journal_path(), e))?,
            ),
            None => None,
        };
        if let Some(p) = &previous
            && p.is_moved()
        {
            drop(guard);
            return self.publish(snapshot);
        }
        crate::journal::Journal::create_with(&self.journal_path(), generation, case_insensitive)?;
        let index = self.index_path();
        write_atomically(&index, snapshot).map_err(|e| Error::io("publishing index", &index, e))?;
        // Running processes of the previous mapping switch to this one.
        if let Some(p) = &previous {
            p.set_superseded();
        }
        drop(guard);
        Ok(())
    }

    fn with_lock<T>(&self, f: impl FnOnce() -> T) -> Result<T> {
        let p = self.dir.join("lock");
        let file = match fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
        {
            Ok(f) => Some(f),
            // The instance was removed meanwhile: nothing to lock against.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io("opening the instance lock", &p, e)),
        };
        if let Some(file) = &file {
            // SAFETY: valid fd; the lock is released when `file` closes.
            unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        }
        Ok(f())
    }

    /// Records `pid` as a live process of the instance, with its start time.
    pub fn register(&self, pid: i32) -> Result<()> {
        let entry = self.dir.join("procs").join(pid.to_string());
        let start = start_time(pid).ok_or_else(|| {
            inst_err(
                &self.name,
                format!("cannot register process {pid}: it is not running"),
            )
        })?;
        fs::write(&entry, start.to_string())
            .map_err(|e| Error::io("registering process", &entry, e))
    }

    /// `pid` maps this instance's index (how a hooked process is told from
    /// one that took a hold and exec'd elsewhere since, or a reused pid,
    /// and how an empty entry counts as live): by its path, or by
    /// device and inode, since a process that reached the instance through
    /// an inherited descriptor (a container with a private `/tmp`) shows
    /// another path for the same file.
    fn maps_index(&self, pid: i32) -> bool {
        use std::os::unix::fs::MetadataExt;
        let index = self.index_path();
        let needle = index.as_os_str().as_bytes();
        let ident = fs::metadata(&index).ok().map(|m| {
            let dev = m.dev();
            (rustix::fs::major(dev), rustix::fs::minor(dev), m.ino())
        });
        let Ok(maps) = fs::read(format!("/proc/{pid}/maps")) else {
            return false;
        };
        maps.split(|&c| c == b'\n').any(|line| {
            line.windows(needle.len()).any(|w| w == needle)
                || ident.is_some_and(|id| maps_line_file(line) == Some(id))
        })
    }

    /// Forgets `pid`; when no live process remains, removes the instance.
    /// Returns true when the instance was removed.
    pub fn leave(&self, pid: i32) -> Result<bool> {
        self.with_lock(|| {
            let _ = fs::remove_file(self.dir.join("procs").join(pid.to_string()));
            if !self.in_use() {
                let _ = fs::remove_dir_all(&self.dir);
                true
            } else {
                false
            }
        })
    }

    /// A live process uses the instance: a registered one, or a hooked one
    /// holding it (whatever its pid namespace).
    fn in_use(&self) -> bool {
        self.files().is_held() == Some(true) || !self.registered_pids().is_empty()
    }

    /// Live processes of the instance: the registered ones (controllers,
    /// processes started through the Python API) and the hooked processes
    /// holding it (see `InstanceDir::hold_quick`) that map its index.
    pub fn live_pids(&self) -> Vec<i32> {
        let mut out = self.registered_pids();
        // A hooked process holds the instance only once it mapped the index:
        // with none published yet (a new instance), nobody holds it, and
        // `/proc/locks` (every lock of the machine; milliseconds to read) is
        // not read.
        let holders = if self.index_path().exists() {
            self.files().holders()
        } else {
            Vec::new()
        };
        for pid in holders {
            if !out.contains(&pid)
                && !matches!(process_state(pid), None | Some((b'Z' | b'X', _)))
                && self.maps_index(pid)
            {
                out.push(pid);
            }
        }
        out.sort_unstable();
        out
    }

    /// Live registered pids; stale entries (dead or reused pids) are pruned.
    fn registered_pids(&self) -> Vec<i32> {
        let procs = self.dir.join("procs");
        let mut out = Vec::new();
        let Ok(rd) = fs::read_dir(&procs) else {
            return out;
        };
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            let recorded: u64 = fs::read_to_string(e.path())
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0);
            // A zombie has left already (its exit hook may not have run).
            match process_state(pid) {
                Some((b'Z' | b'X', _)) => {
                    let _ = fs::remove_file(e.path());
                }
                // An empty entry (a registration that could not read its
                // start time): live while the process maps this index.
                Some(_) if recorded == 0 && self.maps_index(pid) => out.push(pid),
                Some((_, t)) if recorded != 0 && t == recorded => out.push(pid),
                _ => {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        out.sort_unstable();
        out
    }

    /// Live processes with their command lines: the registered ones, and
    /// those inside the instance's mount namespaces or descended from one
    /// there (mount engine; a container's programs have namespaces of their
    /// own).
    pub fn processes(&self) -> Vec<ProcessInfo> {
        let registered = self.live_pids();
        let mut pids = registered.clone();
        pids.extend(self.namespace_processes());
        pids.sort_unstable();
        pids.dedup();
        pids.into_iter()
            .map(|pid| {
                let raw = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let mut command: Vec<u8> = raw
                    .into_iter()
                    .map(|b| if b == 0 { b' ' } else { b })
                    .collect();
                while command.last() == Some(&b' ') {
                    command.pop();
                }
                ProcessInfo { pid, command }
            })
            // A namespace member that exited meanwhile (or is a zombie) has
            // no command line left.
            .filter(|p| !p.command.is_empty() || registered.contains(&p.pid))
            .collect()
    }
}

/// The file a line of `/proc/PID/maps` maps: device (major, minor) and
/// inode (`ADDR PERMS OFFSET MAJ:MIN INODE [PATH]`).
fn maps_line_file(line: &[u8]) -> Option<(u32, u32, u64)> {
    let mut f = line.split(|&c| c == b' ').filter(|f| !f.is_empty());
    let dev = f.nth(3)?;
    let ino = std::str::from_utf8(f.next()?).ok()?.parse().ok()?;
    let colon = dev.iter().position(|&c| c == b':')?;
    let hex = |b: &[u8]| u32::from_str_radix(std::str::from_utf8(b).ok()?, 16).ok();
    Some((hex(&dev[..colon])?, hex(&dev[colon + 1..])?, ino))
}

pub use usvfs_view::semantics::exec::ExecRules;

impl Instance {
    /// Replaces the exec rules (atomically).
    pub fn write_exec_rules(&self, rules: &ExecRules) -> Result<()> {
        let path = self.files().exec_rules_path();
        write_atomically(&path, &rules.encode())
            .map_err(|e| Error::io("writing exec rules", &path, e))
    }

    /// The current exec rules (none when never written).
    pub fn read_exec_rules(&self) -> ExecRules {
        self.files().read_exec_rules()
    }

    /// Makes hooked processes refuse (`true`) or only warn about programs
    /// the preload engine cannot follow; the other rules stay.
    pub fn set_strict(&self, strict: bool) -> Result<()> {
        let mut rules = self.read_exec_rules();
        if rules.strict == strict {
            return Ok(());
        }
        rules.strict = strict;
        self.write_exec_rules(&rules)
    }
}

pub use usvfs_view::instance_dir::LOG_LEVELS;

/// The canonical (lowercase) name of a log level, `None` if `s` names none.
pub fn parse_log_level(s: &str) -> Option<String> {
    let s = s.trim();
    usvfs_view::instance_dir::parse_log_level(s.as_bytes())?;
    Some(s.to_ascii_lowercase())
}

impl Instance {
    /// Where hooked processes append their log lines.
    pub fn log_path(&self) -> PathBuf {
        self.files().log_path()
    }

    /// The level hooked processes log at (`None`: off).
    pub fn log_level(&self) -> Option<tracing::Level> {
        self.files().read_log_level()
    }

    /// Sets the level processes started from now on log at (one of
    /// [`LOG_LEVELS`]; `None` or `off` turns logging off).
    pub fn set_log_level(&self, level: Option<&str>) -> Result<()> {
        let level = match level {
            None => None,
            Some(l) => Some(parse_log_level(l).ok_or_else(|| {
                inst_err(
                    &self.name,
                    format!(
                        "{l:?} is not a log level: use one of {}",
                        LOG_LEVELS.join(", ")
                    ),
                )
            })?),
        };
        self.files()
            .write_log_level(level.as_deref())
            .map_err(|e| Error::io("writing the log level", self.files().log_level_path(), e))
    }

    /// The complete lines of the log from byte `offset` on, and the offset
    /// after them (where the next call starts). A log emptied since (shorter
    /// than `offset`) is read from its start; no log yet reads as empty.
    pub fn read_log(&self, offset: u64) -> Result<(Vec<u8>, u64)> {
        use std::io::{Read, Seek, SeekFrom};
        let path = self.log_path();
        let mut f = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
            Err(e) => return Err(Error::io("reading the log", path, e)),
        };
        let len = f
            .metadata()
            .map_err(|e| Error::io("reading the log", &path, e))?
            .len();
        let start = if len < offset { 0 } else { offset };
        let mut out = Vec::new();
        f.seek(SeekFrom::Start(start))
            .and_then(|_| f.read_to_end(&mut out))
            .map_err(|e| Error::io("reading the log", &path, e))?;
        // A line still being written stays for the next call.
        let keep = out.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        out.truncate(keep);
        Ok((out, start + keep as u64))
    }

    /// Empties the log (processes keep appending to the same file).
    pub fn clear_log(&self) -> Result<()> {
        let path = self.log_path();
        match fs::OpenOptions::new().write(true).open(&path) {
            Ok(f) => f
                .set_len(0)
                .map_err(|e| Error::io("clearing the log", &path, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("clearing the log", &path, e)),
        }
    }
}

/// Every instance directory of this user.
pub fn list_instances() -> Result<Vec<Instance>> {
    let root = runtime_root()?;
    let mut out: Vec<Instance> = fs::read_dir(&root)
        .map_err(|e| Error::io("listing instances", &root, e))?
        .flatten()
        .filter(|e| e.path().join("index").exists())
        .map(|e| Instance::from_dir(&e.path()))
        .filter(|i| !i.remove_if_unused().unwrap_or(false))
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The start time of a process (field 22 of `/proc/PID/stat`), to tell a live
/// process from a reused pid.
pub fn start_time(pid: i32) -> Option<u64> {
    process_state(pid).map(|(_, t)| t)
}

/// The state letter (field 3) and start time (field 22) of a process.
fn process_state(pid: i32) -> Option<(u8, u64)> {
    let stat = fs::read(format!("/proc/{pid}/stat")).ok()?;
    usvfs_view::instance_dir::parse_stat(&stat)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(validate_name("ok_name-1").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("a/b").is_err());
        assert!(validate_name(&"x".repeat(65)).is_err());
    }

    #[test]
    fn exec_rules_round_trip() {
        let r = ExecRules {
            blacklist: vec![b"crash\xffer".to_vec(), b"/usr/bin/x".to_vec()],
            force_loads: vec![(b"game".to_vec(), b"/lib/fix.so".to_vec())],
            strict: true,
        };
        assert_eq!(ExecRules::decode(&r.encode()), r);
        assert!(r.is_blacklisted(b"/opt/crash\xffer"));
        assert!(r.is_blacklisted(b"/usr/bin/x"));
        assert!(!r.is_blacklisted(b"/usr/local/bin/x2"));
        assert_eq!(
            r.libraries_for(b"/g/game").collect::<Vec<_>>(),
            [b"/lib/fix.so"]
        );
    }

    #[test]
    fn log_level_and_log_reading() {
        let t = tempfile::tempdir().unwrap();
        let inst = Instance::from_dir(t.path());
        assert_eq!(inst.log_level(), None);
        inst.set_log_level(Some("DEBUG")).unwrap();
        assert_eq!(inst.log_level(), Some(tracing::Level::DEBUG));
        let e = inst.set_log_level(Some("chatty")).unwrap_err().to_string();
        assert!(e.contains("chatty") && e.contains("trace"), "{e}");
        assert_eq!(inst.log_level(), Some(tracing::Level::DEBUG));
        inst.set_log_level(None).unwrap();
        assert_eq!(inst.log_level(), None);

        assert_eq!(inst.read_log(0).unwrap(), (Vec::new(), 0));
        fs::write(inst.log_path(), "one\ntwo\npart").unwrap();
        let (text, off) = inst.read_log(0).unwrap();
        assert_eq!((text.as_slice(), off), (&b"one\ntwo\n"[..], 8));
        fs::write(inst.log_path(), "one\ntwo\npartial\n").unwrap();
        assert_eq!(inst.read_log(off).unwrap(), (b"partial\n".to_vec(), 16));
        assert_eq!(inst.read_log(16).unwrap(), (Vec::new(), 16));
        inst.clear_log().unwrap();
        assert_eq!(fs::metadata(inst.log_path()).unwrap().len(), 0);
        fs::write(inst.log_path(), "new\n").unwrap();
        assert_eq!(inst.read_log(16).unwrap(), (b"new\n".to_vec(), 4));
        assert_eq!(parse_log_level(" Warn ").as_deref(), Some("warn"));
        assert_eq!(parse_log_level("warning"), None);
    }

    #[test]
    fn registry_counts_pid_and_start_time() {
        let t = tempfile::tempdir().unwrap();
        let inst = Instance::from_dir(t.path());
        fs::create_dir(t.path().join("procs")).unwrap();
        let me = std::process::id() as i32;
        inst.register(me).unwrap();
        assert_eq!(inst.live_pids(), [me]);
        // The same pid with another start time: a reused pid.
        fs::write(t.path().join("procs").join(me.to_string()), "1").unwrap();
        assert!(inst.live_pids().is_empty());
        assert!(!t.path().join("procs").join(me.to_string()).exists());
        // An exited, unreaped child (a zombie) with its true start time.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        let start = start_time(pid).unwrap();
        fs::write(
            t.path().join("procs").join(pid.to_string()),
            start.to_string(),
        )
        .unwrap();
        while process_state(pid).map(|(s, _)| s) != Some(b'Z') {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(inst.live_pids().is_empty());
        child.wait().unwrap();
        // An empty entry of a process that does not map the index.
        fs::write(t.path().join("procs").join(me.to_string()), "").unwrap();
        assert!(inst.live_pids().is_empty());
        // No live process: the instance is a leftover and goes away.
        fs::write(t.path().join("index"), "").unwrap();
        assert!(inst.remove_if_unused().unwrap());
        assert!(!t.path().exists());
    }

    #[test]
    fn empty_entry_counts_while_the_index_is_mapped_under_any_path() {
        let t = tempfile::tempdir().unwrap();
        let inst = Instance::from_dir(t.path());
        fs::create_dir(t.path().join("procs")).unwrap();
        fs::write(t.path().join("index"), vec![0u8; 4096]).unwrap();
        let me = std::process::id() as i32;
        let entry = t.path().join("procs").join(me.to_string());
        fs::write(&entry, "").unwrap();
        assert!(inst.live_pids().is_empty());
        assert!(!entry.exists());
        // The same file under another name, as a container shows it.
        let other = t.path().join("other-name");
        fs::hard_link(t.path().join("index"), &other).unwrap();
        let f = fs::File::open(&other).unwrap();
        // SAFETY: a private test file nobody truncates while mapped.
        let map = unsafe { memmap2::Mmap::map(&f) }.unwrap();
        fs::write(&entry, "").unwrap();
        assert_eq!(inst.live_pids(), [me]);
        drop(map);
        assert!(inst.live_pids().is_empty());
    }

    #[test]
    fn start_time_of_self_is_known() {
        assert!(start_time(std::process::id() as i32).is_some());
    }
}
