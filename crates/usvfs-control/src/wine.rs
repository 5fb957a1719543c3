//! One view per wineserver. Wine's programs do their file work through a
//! server process per prefix (the wineserver): it opens the files and hands
//! the descriptors to its clients. A wineserver outside the view would serve
//! the view's programs with the real disk, and a view's wineserver reached by
//! programs outside would show them the view. So a run that starts Wine
//! programs (1) refuses while a wineserver for the prefix runs outside, and
//! (2) shows its programs a private server directory, which processes
//! outside the instance never find; (3) when the program ends, `usvfs run` waits for the view's
//! wineserver to end (Wine ends it a few seconds after its last program).
//!
//! Wine finds its server directory from the prefix's device and inode:
//! upstream Wine and Proton use `/tmp/.wine-UID/server-DEV-INO`; Debian's and
//! Ubuntu's packages name a directory below `/tmp` in the prefix's
//! `wineserver` file and use `/tmp/NAME/server-DEV-INO`. Both are covered.

use std::ffi::OsString;
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::mapping::{LinkFlags, Mapping};

/// A Wine prefix a run will use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefix {
    pub path: PathBuf,
}

/// The program looks like Wine or Proton, or a Windows program.
fn looks_like_wine(argv: &[OsString]) -> bool {
    argv.iter().take(4).any(|a| {
        let name = Path::new(a)
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        name.starts_with("wine") || name == "proton" || name.ends_with(".exe")
    })
}

impl Prefix {
    /// The prefix a run of `argv` with environment `env` uses: `WINEPREFIX`,
    /// else Proton's `STEAM_COMPAT_DATA_PATH/pfx`, else `~/.wine` when the
    /// command line names Wine, Proton or a `.exe`. `None`: not a Wine run.
    pub fn detect(argv: &[OsString], env: impl Fn(&str) -> Option<OsString>) -> Option<Prefix> {
        let nonempty = |k: &str| env(k).filter(|v| !v.is_empty());
        let path = if let Some(p) = nonempty("WINEPREFIX") {
            PathBuf::from(p)
        } else if let Some(p) = nonempty("STEAM_COMPAT_DATA_PATH") {
            PathBuf::from(p).join("pfx")
        } else if looks_like_wine(argv) {
            PathBuf::from(nonempty("HOME")?).join(".wine")
        } else {
            return None;
        };
        Some(Prefix {
            path: crate::mapping::absolute(&path).ok()?,
        })
    }

    /// The prefix's identity, which names Wine's server directory.
    fn server_name(&self) -> Option<String> {
        let m = fs::metadata(&self.path).ok()?;
        Some(format!("server-{:x}-{:x}", m.dev(), m.ino()))
    }

    /// Where a wineserver for this prefix outside any view has its
    /// directory, in both layouts.
    fn server_dirs(&self) -> Vec<PathBuf> {
        let Some(name) = self.server_name() else {
            return Vec::new();
        };
        // SAFETY: getuid cannot fail.
        let uid = unsafe { libc::getuid() };
        let mut dirs = vec![Path::new("/tmp").join(format!(".wine-{uid}")).join(&name)];
        if let Ok(t) = fs::read(self.path.join("wineserver")) {
            let t = trim(&t);
            if !t.is_empty() && !t.contains(&b'/') {
                dirs.push(
                    Path::new("/tmp")
                        .join(OsString::from_vec(t.to_vec()))
                        .join(&name),
                );
            }
        }
        dirs
    }

    /// The pid of a wineserver serving this prefix outside the view, if one
    /// runs (it holds a lock on `lock` in its server directory).
    pub fn running_server(&self) -> Option<i32> {
        self.server_dirs()
            .iter()
            .find_map(|d| lock_holder(&d.join("lock")))
    }

    /// Refuses a run while a wineserver for the prefix runs outside the view.
    pub fn check_no_outside_server(&self) -> Result<()> {
        match self.running_server() {
            Some(pid) => Err(Error::WineServerRunning {
                prefix: self.path.clone(),
                pid,
            }),
            None => Ok(()),
        }
    }
}

fn trim(b: &[u8]) -> &[u8] {
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    &b[..end]
}

/// The process holding a write lock on `path` (`fcntl` record lock), if any.
fn lock_holder(path: &Path) -> Option<i32> {
    let f = fs::File::open(path).ok()?;
    // SAFETY: an all-zero flock is a valid value to fill in.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as i16;
    fl.l_whence = libc::SEEK_SET as i16;
    // SAFETY: F_GETLK with a valid descriptor and a flock to fill in.
    let r = unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&f), libc::F_GETLK, &mut fl) };
    (r == 0 && fl.l_type != libc::F_UNLCK as i16).then_some(fl.l_pid)
}

/// The view's own server directory for one instance: a directory below
/// `/tmp` only this user can enter, shown to the view's programs where Wine
/// looks for its server.
#[derive(Debug, Clone)]
pub struct PrivateServer {
    pub prefix: Prefix,
    /// `/tmp/usvfs-wine-UID-INSTANCE-HASH`.
    pub root: PathBuf,
}

impl PrivateServer {
    /// The private server directory of the instance in `instance_dir` (made
    /// if missing: owned by this user, mode 0700, not a symlink).
    pub fn prepare(prefix: &Prefix, instance_dir: &Path) -> Result<PrivateServer> {
        // SAFETY: getuid cannot fail.
        let uid = unsafe { libc::getuid() };
        // Named after the instance directory: instances of the same name in
        // other runtime directories stay apart.
        let name = instance_dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy();
        let key = crate::journal::path_hash(instance_dir.as_os_str().as_bytes());
        let root = Path::new("/tmp").join(format!("usvfs-wine-{uid}-{name}-{key:016x}"));
        let err = |message: String| Error::Wine {
            prefix: prefix.path.clone(),
            message,
        };
        match fs::DirBuilder::new().mode(0o700).create(&root) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(err(format!("cannot create {}: {e}", root.display()))),
        }
        let m = fs::symlink_metadata(&root)
            .map_err(|e| err(format!("cannot read {}: {e}", root.display())))?;
        if !m.is_dir() || m.uid() != uid || m.mode() & 0o077 != 0 {
            return Err(err(format!(
                "{} is not a private directory of this user: remove it and run again",
                root.display()
            )));
        }
        if !prefix.path.is_dir() {
            // Wine makes a missing prefix; make it here so its identity (and
            // so its server directory) is known before Wine starts.
            fs::create_dir_all(&prefix.path)
                .map_err(|e| err(format!("cannot create the prefix: {e}")))?;
        }
        match fs::DirBuilder::new()
            .mode(0o700)
            .create(root.join("upstream"))
        {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                return Err(err(format!("cannot create {}: {e}", root.display())));
            }
            _ => {}
        }
        // Debian's layout: the prefix's `wineserver` file names a directory
        // below /tmp; the view's copy names ours.
        let name_file = root.join("wineserver");
        let _ = fs::set_permissions(&name_file, fs::Permissions::from_mode(0o600));
        fs::write(&name_file, root.file_name().unwrap_or_default().as_bytes())
            .map_err(|e| err(format!("cannot write {}: {e}", name_file.display())))?;
        let _ = fs::set_permissions(&name_file, fs::Permissions::from_mode(0o400));
        Ok(PrivateServer {
            prefix: prefix.clone(),
            root,
        })
    }

    /// Adds the rules that show the view's programs the private server
    /// directory in both layouts.
    pub fn add_rules(&self, m: &mut Mapping) -> Result<()> {
        let Some(name) = self.prefix.server_name() else {
            return Ok(());
        };
        // SAFETY: getuid cannot fail.
        let uid = unsafe { libc::getuid() };
        let upstream = Path::new("/tmp").join(format!(".wine-{uid}")).join(&name);
        let ct = LinkFlags(LinkFlags::RECURSIVE | LinkFlags::CREATE_TARGET);
        m.link_directory(&self.root.join("upstream"), &upstream, ct)?;
        m.link_file(
            &self.root.join("wineserver"),
            &self.prefix.path.join("wineserver"),
            LinkFlags(0),
        )
    }

    /// The view's wineserver, if it runs.
    pub fn running_server(&self) -> Option<i32> {
        let name = self.prefix.server_name()?;
        [self.root.join("upstream"), self.root.join(&name)]
            .iter()
            .find_map(|d| lock_holder(&d.join("lock")))
    }

    /// Waits until the view's wineserver has ended. Wine ends it by itself
    /// a few seconds after the last program of the prefix is gone (its
    /// background programs with it); a Windows program started by the
    /// program and still running keeps it, as Proton's `waitforexitandrun`
    /// would.
    pub fn wait_for_server(&self) {
        while self.running_server().is_some() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Removes the private directory (the instance is gone).
    pub fn remove(&self) {
        if self.running_server().is_none() {
            let _ = fs::set_permissions(
                self.root.join("wineserver"),
                fs::Permissions::from_mode(0o600),
            );
            let _ = fs::remove_dir_all(&self.root);
        }
    }
}
