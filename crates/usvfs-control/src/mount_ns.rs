//! What an instance records about its engine and, for the mount engine, its
//! private mount namespaces: a controller joining the instance enters one
//! of them, and `usvfs ps` lists the processes inside (they load no library,
//! so the registry does not know them).
//!
//! Files of the instance directory:
//! * `engine`      — `mount` for a mount-engine instance (absent: preload);
//!   an instance has one engine, fixed by the controller that starts it;
//! * `mount_ns/N`  — one per private mount namespace a controller serves,
//!   named by the namespace's inode number (as `/proc/PID/ns/mnt` shows it),
//!   holding the serving controller's pid and start time; removed when the
//!   controller stops serving it. A record whose controller is gone (killed:
//!   its processes left inside get `ENOTCONN`) is stale and ignored.

use std::fs;
use std::path::PathBuf;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::instance::{Instance, start_time};

/// The inode number of a process's namespace of `kind` (`mnt`, `user`), as
/// `readlink /proc/PID/ns/KIND` shows it (`mnt:[4026532000]`).
pub fn ns_inode(pid: i32, kind: &str) -> Option<u64> {
    let link = fs::read_link(format!("/proc/{pid}/ns/{kind}")).ok()?;
    let s = link.to_str()?;
    let inner = s
        .strip_prefix(kind)?
        .strip_prefix(":[")?
        .strip_suffix(']')?;
    inner.parse().ok()
}

impl Instance {
    fn engine_path(&self) -> PathBuf {
        self.dir.join("engine")
    }

    fn namespaces_dir(&self) -> PathBuf {
        self.dir.join("mount_ns")
    }

    /// The engine the instance was started with.
    pub fn engine(&self) -> Engine {
        match fs::read(self.engine_path()) {
            Ok(b) if b.trim_ascii() == b"mount" => Engine::Mount,
            _ => Engine::Preload,
        }
    }

    /// Records the engine of an instance being started.
    pub fn set_engine(&self, engine: Engine) -> Result<()> {
        let path = self.engine_path();
        let r = match engine {
            Engine::Preload => match fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
            Engine::Mount => fs::write(&path, b"mount\n"),
        };
        r.map_err(|e| Error::io("recording the engine", path, e))
    }

    /// Refuses to join with an engine the instance does not run.
    pub fn check_engine(&self, wanted: Engine) -> Result<()> {
        let running = self.engine();
        if running == wanted {
            return Ok(());
        }
        Err(Error::Instance {
            name: self.name.clone(),
            message: format!(
                "it runs the {} engine, not the {} engine (an instance has one engine): join it \
                 with the {} engine (or without choosing one), or give another instance name",
                running.name(),
                wanted.name(),
                running.name()
            ),
        })
    }

    /// Records a private mount namespace that process `server` (this
    /// controller) serves.
    pub fn record_namespace(&self, mnt_inode: u64, server: i32) -> Result<()> {
        let dir = self.namespaces_dir();
        let _ = fs::create_dir(&dir);
        let entry = dir.join(mnt_inode.to_string());
        let start = start_time(server).unwrap_or(0);
        fs::write(&entry, format!("{server} {start}\n"))
            .map_err(|e| Error::io("recording the mount namespace", entry, e))
    }

    /// Forgets a namespace whose server stopped (its last process exited).
    pub fn forget_namespace(&self, mnt_inode: u64) {
        let _ = fs::remove_file(self.namespaces_dir().join(mnt_inode.to_string()));
    }

    /// The recorded namespaces (inode numbers) whose server still runs;
    /// stale records are removed.
    pub fn namespaces(&self) -> Vec<u64> {
        let Ok(rd) = fs::read_dir(self.namespaces_dir()) else {
            return Vec::new();
        };
        let served = |text: &str| {
            let mut f = text.split_whitespace().map(|w| w.parse::<u64>().ok());
            match (f.next().flatten(), f.next().flatten()) {
                (Some(pid), Some(start)) => start_time(pid as i32) == Some(start),
                _ => false,
            }
        };
        rd.flatten()
            .filter_map(|e| {
                let ino = e.file_name().to_str()?.parse().ok()?;
                if served(&fs::read_to_string(e.path()).unwrap_or_default()) {
                    Some(ino)
                } else {
                    let _ = fs::remove_file(e.path());
                    None
                }
            })
            .collect()
    }

    /// Processes (ours: others' namespaces are not readable) inside one of
    /// the instance's mount namespaces, sorted.
    pub fn namespace_members(&self) -> Vec<i32> {
        let inodes = self.namespaces();
        if inodes.is_empty() {
            return Vec::new();
        }
        let Ok(rd) = fs::read_dir("/proc") else {
            return Vec::new();
        };
        let mut out: Vec<i32> = rd
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|&pid| ns_inode(pid, "mnt").is_some_and(|i| inodes.contains(&i)))
            .collect();
        out.sort_unstable();
        out
    }

    /// The namespace members and every process descended from one: a
    /// container started inside (bwrap, pressure-vessel) puts its programs
    /// in mount namespaces of their own, below the instance's.
    pub fn namespace_processes(&self) -> Vec<i32> {
        let mut out = self.namespace_members();
        if out.is_empty() {
            return out;
        }
        let Ok(rd) = fs::read_dir("/proc") else {
            return out;
        };
        // (pid, parent) of every process; a parent is listed before its
        // children only by chance, so repeat until nothing is added.
        let parents: Vec<(i32, i32)> = rd
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter_map(|pid| Some((pid, parent_of(pid)?)))
            .collect();
        let mut known: std::collections::HashSet<i32> = out.iter().copied().collect();
        loop {
            let before = known.len();
            for &(pid, ppid) in &parents {
                if known.contains(&ppid) && known.insert(pid) {
                    out.push(pid);
                }
            }
            if known.len() == before {
                break;
            }
        }
        out.sort_unstable();
        out
    }

    /// One live process in one of the instance's mount namespaces and that
    /// namespace's inode, to enter it through `/proc/PID/ns/`.
    pub fn namespace_member(&self) -> Option<(i32, u64)> {
        let pid = *self.namespace_members().first()?;
        Some((pid, ns_inode(pid, "mnt")?))
    }
}

/// The parent pid of `pid` (field 4 of `/proc/PID/stat`, after the
/// command name, which may hold spaces and parentheses).
fn parent_of(pid: i32) -> Option<i32> {
    let stat = fs::read(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.iter().rposition(|&b| b == b')')? + 1..];
    let text = std::str::from_utf8(after).ok()?;
    text.split_ascii_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_round_trip_and_mismatch() {
        let t = tempfile::tempdir().unwrap();
        let inst = Instance::from_dir(&t.path().join("game"));
        fs::create_dir(&inst.dir).unwrap();
        assert_eq!(inst.engine(), Engine::Preload);
        inst.set_engine(Engine::Mount).unwrap();
        assert_eq!(inst.engine(), Engine::Mount);
        assert!(inst.check_engine(Engine::Mount).is_ok());
        let e = inst.check_engine(Engine::Preload).unwrap_err().to_string();
        assert!(
            e.contains("\"game\"") && e.contains("runs the mount engine"),
            "{e}"
        );
        inst.set_engine(Engine::Preload).unwrap();
        assert_eq!(inst.engine(), Engine::Preload);
    }

    #[test]
    fn our_own_namespace_is_found() {
        let t = tempfile::tempdir().unwrap();
        let inst = Instance::from_dir(t.path());
        let me = std::process::id() as i32;
        let ino = ns_inode(me, "mnt").unwrap();
        assert!(inst.namespace_member().is_none());
        inst.record_namespace(ino, me).unwrap();
        assert_eq!(inst.namespaces(), [ino]);
        assert!(inst.namespace_members().contains(&me));
        assert_eq!(inst.namespace_member().map(|(_, i)| i), Some(ino));
        inst.forget_namespace(ino);
        assert!(inst.namespace_members().is_empty());
        // Served by a process that is gone (a pid with another start time).
        inst.record_namespace(ino, me).unwrap();
        let entry = t.path().join("mount_ns").join(ino.to_string());
        fs::write(&entry, format!("{me} 1\n")).unwrap();
        assert!(inst.namespace_member().is_none());
        assert!(!entry.exists());
    }
}
