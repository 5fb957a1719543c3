//! One physical descriptor per inode, for stateless opens: the kernel sends
//! no `OPEN`/`RELEASE` (we answer the first `OPEN` with `ENOSYS`), so reads
//! and writes arrive with file handle 0 and are served from this table. A
//! descriptor is opened on the first read (read-only) or write (read-write),
//! reopened read-write when a write finds a read-only one, and closed when
//! the kernel forgets the inode or to keep the table bounded (least recently
//! used first). An inode whose path left the view (deleted, replaced) is
//! pinned: it cannot be reopened by path, and a program may still have it
//! open, so its descriptor stays until the kernel forgets the inode, which
//! it does only when no file is open on it.

use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};

use usvfs_view::fs::Errno;

use crate::fast_hash::FastMap;

/// How many descriptors the table keeps for inodes that can be reopened by
/// path: well below the usual 1,024-descriptor limit of the controller.
const MAX_OPEN: usize = 256;

struct Entry {
    fd: Arc<OwnedFd>,
    /// The physical file's (device, inode): another file at the path now
    /// (replaced by another process of the instance) means reopen.
    id: (u64, u64),
    writable: bool,
    pinned: bool,
    used: u64,
}

#[derive(Default)]
struct Table {
    map: FastMap<u64, Entry>,
    tick: u64,
}

#[derive(Default)]
pub struct Descriptors {
    table: Mutex<Table>,
}

fn identity(fd: &OwnedFd) -> (u64, u64) {
    rustix::fs::fstat(fd)
        .map(|st| (st.st_dev, st.st_ino))
        .unwrap_or((0, 0))
}

impl Table {
    /// `ino`'s descriptor if it has one fit for the access (marked used).
    fn fit(&mut self, ino: u64, write: bool) -> Option<Arc<OwnedFd>> {
        self.tick += 1;
        let tick = self.tick;
        let e = self.map.get_mut(&ino)?;
        if e.writable || !write {
            e.used = tick;
            return Some(e.fd.clone());
        }
        None
    }

    /// When the unpinned descriptors reach the bound, closes the least
    /// recently used quarter of them at once (one scan per many inserts).
    fn make_room(&mut self) {
        if self.map.len() < MAX_OPEN {
            return;
        }
        let mut unpinned: Vec<(u64, u64)> = self
            .map
            .iter()
            .filter(|(_, e)| !e.pinned)
            .map(|(&ino, e)| (e.used, ino))
            .collect();
        if unpinned.len() < MAX_OPEN {
            return;
        }
        let n = MAX_OPEN / 4;
        unpinned.select_nth_unstable(n - 1);
        for &(_, ino) in &unpinned[..n] {
            self.map.remove(&ino);
        }
    }
}

impl Descriptors {
    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The descriptor of `ino`, writable when `write`; `open(write)` opens
    /// one by path when the table has none fit (called without the lock, so
    /// one slow open does not hold up the other server threads). An entry
    /// pinned to a deleted path is never reopened: a write that finds it
    /// read-only fails with `EBADF`.
    pub fn get(
        &self,
        ino: u64,
        write: bool,
        open: impl FnOnce(bool) -> Result<OwnedFd, Errno>,
    ) -> Result<Arc<OwnedFd>, Errno> {
        {
            let mut t = self.lock();
            if let Some(fd) = t.fit(ino, write) {
                return Ok(fd);
            }
            if t.map.get(&ino).is_some_and(|e| e.pinned) {
                return Err(libc::EBADF);
            }
        }
        let fd = Arc::new(open(write)?);
        let id = identity(&fd);
        let mut t = self.lock();
        // Another thread may have opened one meanwhile: keep the more capable.
        if let Some(fd) = t.fit(ino, write) {
            return Ok(fd);
        }
        let tick = t.tick;
        if let Some(e) = t.map.get_mut(&ino) {
            e.fd = fd.clone();
            e.id = id;
            e.writable = true;
            e.used = tick;
            return Ok(fd);
        }
        t.make_room();
        t.map.insert(
            ino,
            Entry {
                fd: fd.clone(),
                id,
                writable: write,
                pinned: false,
                used: tick,
            },
        );
        Ok(fd)
    }

    /// The descriptor `ino` has, if any (no open).
    pub fn existing(&self, ino: u64) -> Option<Arc<OwnedFd>> {
        self.lock().map.get(&ino).map(|e| e.fd.clone())
    }

    /// `ino`'s path is leaving the view: keep `fd` (opened before the path
    /// went) until the kernel forgets the inode. An existing writable entry
    /// wins over a read-only `fd`.
    pub fn pin(&self, ino: u64, fd: Option<(OwnedFd, bool)>) {
        let mut t = self.lock();
        t.tick += 1;
        let tick = t.tick;
        match (t.map.get_mut(&ino), fd) {
            (Some(e), Some((fd, writable))) if writable && !e.writable => {
                e.id = identity(&fd);
                e.fd = Arc::new(fd);
                e.writable = true;
                e.pinned = true;
            }
            (Some(e), _) => e.pinned = true,
            (None, Some((fd, writable))) => {
                t.map.insert(
                    ino,
                    Entry {
                        id: identity(&fd),
                        fd: Arc::new(fd),
                        writable,
                        pinned: true,
                        used: tick,
                    },
                );
            }
            (None, None) => {}
        }
    }

    /// Closes `ino`'s descriptor: the kernel forgot the inode, or its path
    /// now names another physical file (renamed, changed from outside).
    /// A pinned one stays unless `forgotten`.
    pub fn drop_ino(&self, ino: u64, forgotten: bool) {
        let mut t = self.lock();
        if forgotten || t.map.get(&ino).is_some_and(|e| !e.pinned) {
            t.map.remove(&ino);
        }
    }

    /// The path of `ino` is physical file `id` now: a descriptor of another
    /// file (not pinned) is closed, so the next read opens this one.
    pub fn check(&self, ino: u64, id: (u64, u64)) {
        let mut t = self.lock();
        if t.map.get(&ino).is_some_and(|e| !e.pinned && e.id != id) {
            t.map.remove(&ino);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn devnull() -> Result<OwnedFd, Errno> {
        Ok(std::fs::File::open("/dev/null").unwrap().into())
    }

    /// A read reuses the descriptor; a write reopens a read-only one once;
    /// a pinned entry is kept past the bound and only a forget closes it.
    #[test]
    fn reopen_for_write_bound_and_pins() {
        let d = Descriptors::default();
        let mut opens = 0;
        let mut open = |w: bool| {
            opens += 1;
            assert_eq!(w, opens == 2);
            devnull()
        };
        d.get(1, false, &mut open).unwrap();
        d.get(1, false, &mut open).unwrap();
        d.get(1, true, &mut open).unwrap();
        d.get(1, false, &mut open).unwrap();
        assert_eq!(opens, 2);
        d.pin(1, None);
        for ino in 2..(MAX_OPEN as u64 + 10) {
            d.get(ino, false, |_| devnull()).unwrap();
        }
        assert!(d.len() <= MAX_OPEN + 1);
        assert!(d.existing(1).is_some(), "the pinned entry was evicted");
        assert!(d.existing(2).is_none(), "the oldest entry was kept");
        assert!(
            d.existing(MAX_OPEN as u64 + 9).is_some(),
            "the newest entry was evicted"
        );
        d.drop_ino(1, false);
        assert!(d.existing(1).is_some());
        d.drop_ino(1, true);
        assert!(d.existing(1).is_none());
    }

    /// A pinned read-only descriptor cannot become writable (its path is
    /// gone): the write fails instead of opening whatever the path is now.
    #[test]
    fn pinned_read_only_refuses_write() {
        let d = Descriptors::default();
        d.pin(7, Some((devnull().unwrap(), false)));
        assert_eq!(
            d.get(7, true, |_| panic!("reopened a pinned inode")).err(),
            Some(libc::EBADF)
        );
        assert!(d.get(7, false, |_| panic!("reopened")).is_ok());
    }
}
