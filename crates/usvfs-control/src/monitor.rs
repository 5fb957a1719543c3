//! Monitored links (`MONITOR_CHANGES`, `usvfs run --monitor`): files added to
//! or removed from a link's source while the instance runs appear or
//! disappear for its running processes, applied path by path to the journal
//! (`View::source_changed`), never by rebuilding the index.
//!
//! The controller that published the mapping watches every directory of each
//! monitored source with inotify; watches are set up before `start` returns,
//! so changes made after it are seen. Beyond the kernel's watch limit
//! (`fs.inotify.max_user_watches`) the remaining directories are not
//! watched: a warning names the limit and the first directory left out.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};

use crate::error::{Error, Result};
use crate::index::MappedSnapshot;
use crate::instance::Instance;
use crate::journal::Journal;
use crate::mapping::{LinkFlags, LinkKind, Mapping, Rule};
use usvfs_view::fs::SysFs;
use usvfs_view::path;
use usvfs_view::semantics::View;
use usvfs_view::source_events::{self, SourceChange};

/// A running monitor; stops when dropped.
pub struct Monitor {
    stop: Option<OwnedFd>,
    thread: Option<JoinHandle<()>>,
    watched: usize,
}

/// What a kernel watch stands for.
#[derive(Clone)]
enum Watch {
    /// Directory `rel` (relative, empty for the top) of rule `rule`'s source.
    Dir { rule: usize, rel: Vec<u8> },
    /// The parent directory of file rule `rule`'s source.
    File { rule: usize },
}

struct Watcher {
    fd: OwnedFd,
    rules: Vec<Rule>,
    watches: HashMap<i32, Vec<Watch>>,
    limit_warned: bool,
    instance: Instance,
    generation: u64,
    index: MappedSnapshot,
    journal: Journal,
}

const MASK: WatchFlags = WatchFlags::CREATE
    .union(WatchFlags::DELETE)
    .union(WatchFlags::MOVED_FROM)
    .union(WatchFlags::MOVED_TO)
    // Contents and attributes changed in place: nothing for the journal,
    // but caches of the view (the mount engine's kernel) must drop them.
    .union(WatchFlags::CLOSE_WRITE)
    .union(WatchFlags::ATTRIB)
    .union(WatchFlags::ONLYDIR);

fn join(a: &[u8], b: &[u8]) -> Vec<u8> {
    if b.is_empty() {
        return a.to_vec();
    }
    if a.is_empty() {
        return b.to_vec();
    }
    let mut out = a.to_vec();
    if !out.ends_with(b"/") {
        out.push(b'/');
    }
    out.extend_from_slice(b);
    out
}

fn bytes(p: &Path) -> &[u8] {
    p.as_os_str().as_bytes()
}

impl Monitor {
    /// Starts watching the sources of `mapping`'s rules that carry
    /// `MONITOR_CHANGES`, for the mapping just published in `instance`.
    /// `None` when no rule is monitored.
    pub fn start(instance: &Instance, mapping: &Mapping) -> Result<Option<Monitor>> {
        if !mapping
            .rules
            .iter()
            .any(|r| r.flags.has(LinkFlags::MONITOR_CHANGES))
        {
            return Ok(None);
        }
        let index = MappedSnapshot::open(&instance.index_path())?;
        let journal = Journal::open(&instance.journal_path())?;
        let generation = index.snapshot().generation();
        let fd = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK).map_err(|e| {
            Error::io(
                "starting the source monitor (inotify_init)",
                &instance.dir,
                e.into(),
            )
        })?;
        let mut w = Watcher {
            fd,
            rules: mapping.rules.clone(),
            watches: HashMap::new(),
            limit_warned: false,
            instance: Instance::from_dir(&instance.dir),
            generation,
            index,
            journal,
        };
        for (i, r) in mapping.rules.iter().enumerate() {
            if !r.flags.has(LinkFlags::MONITOR_CHANGES) {
                continue;
            }
            match r.kind {
                LinkKind::Directory => w.add_tree(i, &r.source, Vec::new()),
                LinkKind::File => {
                    if let Some(parent) = r.source.parent() {
                        w.add_watch(parent, Watch::File { rule: i });
                    }
                }
            }
        }
        let watched = w.watches.len();
        tracing::info!(directories = watched, "source monitor started");
        let (stop_r, stop_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(|e| Error::io("starting the source monitor", &instance.dir, e.into()))?;
        let thread = std::thread::Builder::new()
            .name("usvfs-monitor".into())
            .spawn(move || w.run(stop_r))
            .map_err(|e| Error::io("starting the source monitor", &instance.dir, e))?;
        Ok(Some(Monitor {
            stop: Some(stop_w),
            thread: Some(thread),
            watched,
        }))
    }

    /// Number of directories watched when it started.
    pub fn watched(&self) -> usize {
        self.watched
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        // Closing the pipe wakes the thread, which then returns.
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Watcher {
    fn add_watch(&mut self, dir: &Path, what: Watch) {
        match inotify::add_watch(&self.fd, dir, MASK) {
            Ok(wd) => {
                let list = self.watches.entry(wd).or_default();
                if let Watch::Dir { rule, rel } = &what {
                    // Re-added (a directory seen twice): keep one entry.
                    list.retain(
                        |x| !matches!(x, Watch::Dir { rule: r, rel: l } if r == rule && l == rel),
                    );
                }
                list.push(what);
            }
            Err(rustix::io::Errno::NOSPC) if !self.limit_warned => {
                self.limit_warned = true;
                let limit = std::fs::read_to_string("/proc/sys/fs/inotify/max_user_watches")
                    .map(|s| s.trim().to_string())
                    .unwrap_or_else(|_| "?".into());
                let msg = format!(
                    "usvfs: the inotify watch limit (fs.inotify.max_user_watches = {limit}) is reached: changes below {} and further directories are not monitored; raise it with `sysctl fs.inotify.max_user_watches=N`",
                    dir.display()
                );
                eprintln!("{msg}");
                tracing::warn!("{msg}");
            }
            Err(_) => {}
        }
    }

    /// Watches `dir` (directory `rel` of rule `rule`'s source) and, for a
    /// recursive link, every directory below it.
    fn add_tree(&mut self, rule: usize, dir: &Path, rel: Vec<u8>) {
        self.add_watch(
            dir,
            Watch::Dir {
                rule,
                rel: rel.clone(),
            },
        );
        if !self.rules[rule].flags.has(LinkFlags::RECURSIVE) {
            return;
        }
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            if e.file_type().is_ok_and(|t| t.is_dir()) && !self.rules[rule].is_skipped_dir(&name) {
                self.add_tree(rule, &e.path(), join(&rel, name.as_bytes()));
            }
        }
    }

    /// The physical paths that may provide `virt`, highest priority first:
    /// each rule's source path (later rules win), then the real path.
    fn candidates(&self, virt: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for r in self.rules.iter().rev() {
            let dest = bytes(&r.destination);
            match r.kind {
                LinkKind::File if dest == virt => out.push(bytes(&r.source).to_vec()),
                LinkKind::File => {}
                LinkKind::Directory => {
                    let Some(rest) = path::strip_prefix(virt, dest) else {
                        continue;
                    };
                    let comps: Vec<&[u8]> = path::components(rest).collect();
                    if comps.len() > 1 && !r.flags.has(LinkFlags::RECURSIVE) {
                        continue;
                    }
                    let (last, dirs) = match comps.split_last() {
                        Some((l, d)) => (Some(*l), d),
                        None => (None, &[][..]),
                    };
                    if dirs.iter().any(|d| r.is_skipped_dir(OsStr::from_bytes(d))) {
                        continue;
                    }
                    let phys = join(bytes(&r.source), rest);
                    if let Some(l) = last {
                        let is_dir = std::fs::symlink_metadata(OsStr::from_bytes(&phys))
                            .is_ok_and(|m| m.is_dir());
                        let name = OsStr::from_bytes(l);
                        if (is_dir && r.is_skipped_dir(name))
                            || (!is_dir && r.is_skipped_file(name))
                        {
                            continue;
                        }
                    }
                    out.push(phys);
                }
            }
        }
        out.push(virt.to_vec());
        out
    }

    /// Applies a change at `virt` to the journal.
    fn apply(&self, virt: &[u8], appeared: bool) {
        let cands = self.candidates(virt);
        let snap = self.index.snapshot();
        let view = View {
            snap: &snap,
            journal: Some(&self.journal),
            fs: &SysFs,
        };
        match view.source_changed(virt, &cands, appeared) {
            Ok(_) => source_events::changed(virt, SourceChange::Entry),
            Err(e) => tracing::warn!(
                path = %String::from_utf8_lossy(virt),
                errno = e,
                "source monitor: cannot record a change"
            ),
        }
    }

    /// Applies `virt` and, for a directory that appeared, everything below
    /// it (created before its watch was added).
    fn apply_tree(&self, phys: &Path, virt: &[u8]) {
        self.apply(virt, true);
        let Ok(entries) = std::fs::read_dir(phys) else {
            return;
        };
        for e in entries.flatten() {
            let child = join(virt, e.file_name().as_bytes());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                self.apply_tree(&e.path(), &child);
            } else {
                self.apply(&child, true);
            }
        }
    }

    /// A newer mapping replaced ours: stop. A larger journal of the same
    /// mapping: switch to it.
    fn refresh(&mut self) -> bool {
        if !self.journal.is_superseded() {
            return true;
        }
        let Ok(index) = MappedSnapshot::open(&self.instance.index_path()) else {
            return false;
        };
        if index.snapshot().generation() != self.generation {
            tracing::info!("source monitor: a new mapping was published; stopping");
            return false;
        }
        match Journal::open(&self.instance.journal_path()) {
            Ok(j) => {
                self.index = index;
                self.journal = j;
                true
            }
            Err(_) => false,
        }
    }

    fn run(mut self, stop: OwnedFd) {
        let mut buf = vec![std::mem::MaybeUninit::<u8>::uninit(); 64 * 1024];
        loop {
            let mut fds = [
                libc::pollfd {
                    fd: self.fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: stop.as_fd().as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // SAFETY: two valid pollfd entries.
            let r = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
            if r < 0 {
                if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return;
            }
            if fds[1].revents != 0 {
                return;
            }
            if !self.refresh() {
                return;
            }
            let mut events: Vec<(i32, ReadFlags, Vec<u8>)> = Vec::new();
            let mut reader = inotify::Reader::new(&self.fd, &mut buf);
            while let Ok(ev) = reader.next() {
                let name = ev
                    .file_name()
                    .map(|n| n.to_bytes().to_vec())
                    .unwrap_or_default();
                events.push((ev.wd(), ev.events(), name));
            }
            for (wd, mask, name) in events {
                self.handle(wd, mask, &name);
            }
        }
    }

    fn handle(&mut self, wd: i32, mask: ReadFlags, name: &[u8]) {
        if mask.contains(ReadFlags::QUEUE_OVERFLOW) {
            tracing::warn!(
                "source monitor: the kernel dropped events (queue overflow); some source changes may not show until the mapping is set again"
            );
            return;
        }
        if mask.contains(ReadFlags::IGNORED) {
            self.watches.remove(&wd);
            return;
        }
        if name.is_empty() {
            return;
        }
        let appeared = mask.intersects(ReadFlags::CREATE | ReadFlags::MOVED_TO);
        let contents = !mask.intersects(
            ReadFlags::CREATE | ReadFlags::MOVED_TO | ReadFlags::DELETE | ReadFlags::MOVED_FROM,
        );
        let is_dir = mask.contains(ReadFlags::ISDIR);
        for w in self.watches.get(&wd).cloned().unwrap_or_default() {
            match w {
                Watch::File { rule } => {
                    let r = &self.rules[rule];
                    if r.source.file_name().map(|n| n.as_bytes()) == Some(name) {
                        let dest = bytes(&r.destination).to_vec();
                        if contents {
                            source_events::changed(&dest, SourceChange::Contents);
                        } else {
                            self.apply(&dest, appeared);
                        }
                    }
                }
                Watch::Dir { rule, rel } => {
                    let r = &self.rules[rule];
                    let n = OsStr::from_bytes(name);
                    if (is_dir && r.is_skipped_dir(n)) || (!is_dir && r.is_skipped_file(n)) {
                        continue;
                    }
                    let child_rel = join(&rel, name);
                    let virt = join(bytes(&r.destination), &child_rel);
                    let phys =
                        PathBuf::from(OsStr::from_bytes(&join(bytes(&r.source), &child_rel)));
                    if contents {
                        source_events::changed(&virt, SourceChange::Contents);
                    } else if appeared && is_dir && r.flags.has(LinkFlags::RECURSIVE) {
                        self.add_tree(rule, &phys, child_rel);
                        self.apply_tree(&phys, &virt);
                    } else {
                        self.apply(&virt, appeared);
                    }
                }
            }
        }
    }
}
