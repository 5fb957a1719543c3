//! An in-memory file system for unit tests of the semantics: directories,
//! files with contents, symlinks (followed in every component but a
//! no-follow last one, `ELOOP` after 40), and the kernel's errno for each case
//! the semantics rely on. No system call is made.

use std::cell::RefCell;
use std::collections::BTreeMap;

use crate::fs::{Errno, FileKind, Fs, Meta};
use crate::path::{self, PathBuffer};

#[derive(Debug, Clone)]
enum Node {
    Dir,
    File(Vec<u8>),
    Symlink(Vec<u8>),
}

#[derive(Debug, Clone)]
struct Entry {
    node: Node,
    ino: u64,
    mode: u32,
}

#[derive(Debug)]
struct Fault {
    call: Option<&'static str>,
    path: Vec<u8>,
    errno: Errno,
}

/// The fake: a map from absolute path to entry. `/` always exists.
#[derive(Debug)]
pub struct FakeFs {
    entries: RefCell<BTreeMap<Vec<u8>, Entry>>,
    next_ino: RefCell<u64>,
    /// Errno forced on the next call (of this `Fs` method, or any) naming
    /// this path as an argument (fault tests).
    fail: RefCell<Option<Fault>>,
    /// The pid [`Fs::caller`] reports (0 until set).
    caller: std::cell::Cell<u32>,
}

impl Default for FakeFs {
    fn default() -> Self {
        Self::new()
    }
}

fn parent_of(p: &[u8]) -> &[u8] {
    match p.iter().rposition(|&c| c == b'/') {
        Some(0) | None => b"/",
        Some(i) => &p[..i],
    }
}

impl FakeFs {
    pub fn new() -> Self {
        let mut m = BTreeMap::new();
        m.insert(
            b"/".to_vec(),
            Entry {
                node: Node::Dir,
                ino: 1,
                mode: libc::S_IFDIR | 0o755,
            },
        );
        FakeFs {
            entries: RefCell::new(m),
            next_ino: RefCell::new(2),
            fail: RefCell::new(None),
            caller: std::cell::Cell::new(0),
        }
    }

    /// Makes the following calls come from process `pid`.
    pub fn set_caller(&self, pid: u32) {
        self.caller.set(pid);
    }

    fn put(&self, p: &[u8], node: Node) {
        let mode = match node {
            Node::Dir => libc::S_IFDIR | 0o755,
            Node::File(_) => libc::S_IFREG | 0o644,
            Node::Symlink(_) => libc::S_IFLNK | 0o777,
        };
        let mut n = self.next_ino.borrow_mut();
        self.entries.borrow_mut().insert(
            p.to_vec(),
            Entry {
                node,
                ino: *n,
                mode,
            },
        );
        *n += 1;
    }

    /// Creates directory `p` and its missing parents (test setup).
    pub fn add_dir(&self, p: &str) {
        let mut cur = Vec::new();
        for c in path::components(p.as_bytes()) {
            cur.push(b'/');
            cur.extend_from_slice(c);
            if !self.entries.borrow().contains_key(&cur) {
                self.put(&cur, Node::Dir);
            }
        }
    }

    /// Creates file `p` with `data`, parents included (test setup).
    pub fn add_file(&self, p: &str, data: &str) {
        self.add_dir(std::str::from_utf8(parent_of(p.as_bytes())).unwrap());
        self.put(p.as_bytes(), Node::File(data.as_bytes().to_vec()));
    }

    /// Creates symlink `p -> target`, parents included (test setup).
    pub fn add_symlink(&self, p: &str, target: &str) {
        self.add_dir(std::str::from_utf8(parent_of(p.as_bytes())).unwrap());
        self.put(p.as_bytes(), Node::Symlink(target.as_bytes().to_vec()));
    }

    /// Makes the next call (any `Fs` method) naming `p` as an argument fail
    /// with `e` (once). Lookups the fake makes internally (the parents of a
    /// path) do not count: only the call's own arguments do.
    pub fn fail_next(&self, p: &str, e: Errno) {
        *self.fail.borrow_mut() = Some(Fault {
            call: None,
            path: p.as_bytes().to_vec(),
            errno: e,
        });
    }

    /// Like [`FakeFs::fail_next`], only for the `Fs` method named `call`
    /// (`"mkdir"`, `"rename"`, ...): a `lstat` of `p` before it succeeds.
    pub fn fail_next_call(&self, call: &'static str, p: &str, e: Errno) {
        *self.fail.borrow_mut() = Some(Fault {
            call: Some(call),
            path: p.as_bytes().to_vec(),
            errno: e,
        });
    }

    /// The injected failure for `call` on argument `p`, if one is armed.
    fn injected(&self, call: &'static str, p: &[u8]) -> Result<(), Errno> {
        let mut f = self.fail.borrow_mut();
        if f.as_ref()
            .is_some_and(|x| x.path == p && x.call.is_none_or(|c| c == call))
        {
            return Err(f.take().unwrap().errno);
        }
        Ok(())
    }

    /// The contents of file `p` (symlinks followed), for assertions.
    pub fn read(&self, p: &str) -> Option<String> {
        let real = self.walk(p.as_bytes(), true).ok()?;
        match &self.entries.borrow().get(&real)?.node {
            Node::File(d) => Some(String::from_utf8_lossy(d).into_owned()),
            _ => None,
        }
    }

    /// Every path below `root` (exclusive), sorted, directories marked with a
    /// trailing `/`, symlinks as `name -> target`: the physical tree.
    pub fn tree(&self, root: &str) -> Vec<String> {
        let r = root.as_bytes();
        self.entries
            .borrow()
            .iter()
            .filter_map(|(k, e)| {
                let rest = path::strip_prefix(k, r).filter(|x| !x.is_empty())?;
                let mut s = String::from_utf8_lossy(rest).into_owned();
                match &e.node {
                    Node::Dir => s.push('/'),
                    Node::File(_) => {}
                    Node::Symlink(t) => {
                        s.push_str(" -> ");
                        s.push_str(&String::from_utf8_lossy(t));
                    }
                }
                Some(s)
            })
            .collect()
    }

    pub fn exists(&self, p: &str) -> bool {
        self.entries.borrow().contains_key(p.as_bytes())
    }

    /// Resolves `p` (absolute) to the key of the entry it names, following
    /// symlinks in every component and in the last one when `follow`.
    fn walk(&self, p: &[u8], follow: bool) -> Result<Vec<u8>, Errno> {
        let mut todo: Vec<Vec<u8>> = path::components(p).map(|c| c.to_vec()).collect();
        todo.reverse();
        let mut cur: Vec<u8> = b"/".to_vec();
        let mut links = 0;
        let entries = self.entries.borrow();
        while let Some(c) = todo.pop() {
            match entries.get(&cur).map(|e| &e.node) {
                Some(Node::Dir) => {}
                Some(_) => return Err(libc::ENOTDIR),
                None => return Err(libc::ENOENT),
            }
            if c == b"." {
                continue;
            }
            if c == b".." {
                cur = parent_of(&cur).to_vec();
                continue;
            }
            let mut next = cur.clone();
            if next != b"/" {
                next.push(b'/');
            }
            next.extend_from_slice(&c);
            let last = todo.is_empty();
            match entries.get(&next).map(|e| &e.node) {
                Some(Node::Symlink(t)) if !last || follow => {
                    links += 1;
                    if links > 40 {
                        return Err(libc::ELOOP);
                    }
                    let at = todo.len();
                    todo.extend(path::components(t).map(|c| c.to_vec()));
                    todo[at..].reverse();
                    if t.first() == Some(&b'/') {
                        cur = b"/".to_vec();
                    }
                }
                _ => cur = next,
            }
        }
        Ok(cur)
    }

    /// The existing entry `p` names, for a call that requires it.
    fn existing(&self, p: &[u8], follow: bool) -> Result<Vec<u8>, Errno> {
        let k = self.walk(p, follow)?;
        if self.entries.borrow().contains_key(&k) {
            Ok(k)
        } else {
            Err(libc::ENOENT)
        }
    }

    /// Where a new entry `p` goes: its parent must be an existing directory.
    fn new_slot(&self, p: &[u8]) -> Result<Vec<u8>, Errno> {
        let name = path::file_name(p);
        let parent = self.existing(parent_of(p), true)?;
        match self.entries.borrow().get(&parent).map(|e| &e.node) {
            Some(Node::Dir) => {}
            _ => return Err(libc::ENOTDIR),
        }
        let mut k = parent;
        if k != b"/" {
            k.push(b'/');
        }
        k.extend_from_slice(name);
        if self.entries.borrow().contains_key(&k) {
            return Err(libc::EEXIST);
        }
        Ok(k)
    }

    fn meta_of(&self, k: &[u8]) -> Meta {
        let e = self.entries.borrow()[k].clone();
        let kind = match e.node {
            Node::Dir => FileKind::Dir,
            Node::File(_) => FileKind::File,
            Node::Symlink(_) => FileKind::Symlink,
        };
        Meta {
            kind,
            mode: e.mode,
            ino: e.ino,
            dev: 1,
            d_type: kind.d_type(),
        }
    }

    fn has_children(&self, k: &[u8]) -> bool {
        self.entries
            .borrow()
            .keys()
            .any(|c| c.as_slice() != k && parent_of(c) == k)
    }

    /// Moves `from` and everything below it to `to`.
    fn move_tree(&self, from: &[u8], to: &[u8]) {
        let mut m = self.entries.borrow_mut();
        let keys: Vec<Vec<u8>> = m
            .keys()
            .filter(|k| path::strip_prefix(k, from).is_some())
            .cloned()
            .collect();
        for k in keys {
            let e = m.remove(&k).unwrap();
            let rest = path::strip_prefix(&k, from).unwrap();
            let mut nk = to.to_vec();
            if !rest.is_empty() {
                nk.push(b'/');
                nk.extend_from_slice(rest);
            }
            m.insert(nk, e);
        }
    }
}

impl Fs for FakeFs {
    fn caller(&self) -> u32 {
        self.caller.get()
    }

    fn lstat(&self, p: &[u8]) -> Result<Meta, Errno> {
        self.injected("lstat", p)?;
        let k = self.existing(p, false)?;
        Ok(self.meta_of(&k))
    }

    fn stat(&self, p: &[u8]) -> Result<Meta, Errno> {
        self.injected("stat", p)?;
        let k = self.existing(p, true)?;
        Ok(self.meta_of(&k))
    }

    fn readlink(&self, p: &[u8], out: &mut [u8]) -> Result<usize, Errno> {
        self.injected("readlink", p)?;
        let k = self.existing(p, false)?;
        match &self.entries.borrow()[&k].node {
            Node::Symlink(t) => {
                let n = t.len().min(out.len());
                out[..n].copy_from_slice(&t[..n]);
                Ok(n)
            }
            _ => Err(libc::EINVAL),
        }
    }

    fn realpath(&self, p: &[u8], out: &mut PathBuffer) -> Result<(), Errno> {
        self.injected("realpath", p)?;
        let k = self.existing(p, true)?;
        out.set(&k).map_err(|_| libc::ENAMETOOLONG)
    }

    fn mkdir(&self, p: &[u8], _mode: u32) -> Result<(), Errno> {
        self.injected("mkdir", p)?;
        let k = self.new_slot(p)?;
        self.put(&k, Node::Dir);
        Ok(())
    }

    fn rmdir(&self, p: &[u8]) -> Result<(), Errno> {
        self.injected("rmdir", p)?;
        let k = self.existing(p, false)?;
        if !matches!(self.entries.borrow()[&k].node, Node::Dir) {
            return Err(libc::ENOTDIR);
        }
        if self.has_children(&k) {
            return Err(libc::ENOTEMPTY);
        }
        self.entries.borrow_mut().remove(&k);
        Ok(())
    }

    fn unlink(&self, p: &[u8]) -> Result<(), Errno> {
        self.injected("unlink", p)?;
        let k = self.existing(p, false)?;
        if matches!(self.entries.borrow()[&k].node, Node::Dir) {
            return Err(libc::EISDIR);
        }
        self.entries.borrow_mut().remove(&k);
        Ok(())
    }

    fn rename(&self, from: &[u8], to: &[u8], flags: u32) -> Result<(), Errno> {
        self.injected("rename", from)?;
        self.injected("rename", to)?;
        let src = self.existing(from, false)?;
        let src_dir = self.meta_of(&src).is_dir();
        let dst = match self.new_slot(to) {
            Ok(k) => k,
            Err(libc::EEXIST) => {
                if flags & libc::RENAME_NOREPLACE != 0 {
                    return Err(libc::EEXIST);
                }
                let k = self.existing(to, false)?;
                if k == src {
                    return Ok(());
                }
                if flags & libc::RENAME_EXCHANGE != 0 {
                    let tmp = b"/\0exchange".to_vec();
                    self.move_tree(&src, &tmp);
                    self.move_tree(&k, &src);
                    self.move_tree(&tmp, &k);
                    return Ok(());
                }
                let dst_dir = self.meta_of(&k).is_dir();
                match (src_dir, dst_dir) {
                    (true, false) => return Err(libc::ENOTDIR),
                    (false, true) => return Err(libc::EISDIR),
                    (true, true) if self.has_children(&k) => return Err(libc::ENOTEMPTY),
                    _ => {}
                }
                self.entries.borrow_mut().remove(&k);
                k
            }
            Err(e) => return Err(e),
        };
        if flags & libc::RENAME_EXCHANGE != 0 {
            return Err(libc::ENOENT);
        }
        if src_dir && path::strip_prefix(&dst, &src).is_some() {
            return Err(libc::EINVAL);
        }
        self.move_tree(&src, &dst);
        Ok(())
    }

    fn symlink(&self, target: &[u8], at: &[u8]) -> Result<(), Errno> {
        self.injected("symlink", at)?;
        let k = self.new_slot(at)?;
        self.put(&k, Node::Symlink(target.to_vec()));
        Ok(())
    }

    fn read_dir(&self, p: &[u8], each: &mut dyn FnMut(&[u8], u8, u64)) -> Result<(), Errno> {
        self.injected("read_dir", p)?;
        let k = self.existing(p, true)?;
        if !self.meta_of(&k).is_dir() {
            return Err(libc::ENOTDIR);
        }
        let kids: Vec<(Vec<u8>, Meta)> = self
            .entries
            .borrow()
            .keys()
            .filter(|c| c.as_slice() != k.as_slice() && parent_of(c) == k.as_slice())
            .map(|c| (path::file_name(c).to_vec(), self.meta_of(c)))
            .collect();
        for (name, m) in kids {
            each(&name, m.d_type, m.ino);
        }
        Ok(())
    }

    fn copy_file(&self, from: &[u8], to: &[u8]) -> Result<(), Errno> {
        self.injected("copy_file", from)?;
        self.injected("copy_file", to)?;
        let src = self.existing(from, true)?;
        let data = match &self.entries.borrow()[&src].node {
            Node::File(d) => d.clone(),
            _ => return Err(libc::EINVAL),
        };
        let k = self.new_slot(to)?;
        self.put(&k, Node::File(data));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_symlinks_and_reports_loops() {
        let f = FakeFs::new();
        f.add_file("/real/a.txt", "A");
        f.add_symlink("/z/z:", "/");
        assert_eq!(f.read("/z/z:/real/a.txt").as_deref(), Some("A"));
        f.add_symlink("/loop", "/loop");
        assert_eq!(f.stat(b"/loop"), Err(libc::ELOOP));
        assert_eq!(f.lstat(b"/loop").unwrap().kind, FileKind::Symlink);
        assert_eq!(f.stat(b"/real/a.txt/x"), Err(libc::ENOTDIR));
        assert_eq!(f.mkdir(b"/nope/x", 0o755), Err(libc::ENOENT));
        assert_eq!(f.mkdir(b"/real", 0o755), Err(libc::EEXIST));
        assert_eq!(f.rmdir(b"/real"), Err(libc::ENOTEMPTY));
    }

    #[test]
    fn injected_faults_hit_the_named_call_once() {
        let f = FakeFs::new();
        f.add_dir("/a");
        f.fail_next_call("mkdir", "/a/b", libc::EACCES);
        assert_eq!(f.lstat(b"/a/b"), Err(libc::ENOENT));
        assert_eq!(f.mkdir(b"/a/b", 0o755), Err(libc::EACCES));
        assert_eq!(f.mkdir(b"/a/b", 0o755), Ok(()));
        // Only the call's own arguments count, not the parents it looks up.
        f.fail_next("/a", libc::EIO);
        assert_eq!(f.mkdir(b"/a/c", 0o755), Ok(()));
        assert_eq!(f.stat(b"/a"), Err(libc::EIO));
        assert!(f.stat(b"/a").is_ok());
        f.fail_next("/a/c", libc::EIO);
        assert_eq!(f.rename(b"/a/b", b"/a/c", 0), Err(libc::EIO));
        assert!(f.exists("/a/b"));
    }
}
