//! Process-wide state of a hooked process: the mapped index, where the
//! instance lives, this library's own path, and the logical working directory.

use std::ffi::{CStr, CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

use usvfs_view::instance_dir::InstanceDir;
use usvfs_view::journal::Journal;
use usvfs_view::path::PathBuffer;
use usvfs_view::{Snapshot, SysFs, View};

pub struct State {
    pub snap: Snapshot<'static>,
    /// Changes made by hooked processes since the snapshot (shared, live).
    pub journal: Option<Journal>,
    pub instance_dir: CString,
    /// `instance_dir/exec_rules`, read at every exec.
    pub exec_rules_path: CString,
    /// Per layer, a tag of its source path (`layerfd`: a descriptor opened
    /// for one layer is never used for another after a new mapping).
    pub layer_tags: Box<[u32]>,
    pub lib_path: CString,
    /// The root node has a layer: every path may be virtual (no fast path).
    pub root_mapped: bool,
    /// Switching to a newer mapping failed: stop trying.
    refresh_failed: AtomicBool,
}

impl State {
    /// The semantics over this process's index and journal, on the real disk.
    #[inline(always)]
    pub fn view(&self) -> View<'_> {
        View {
            snap: &self.snap,
            journal: self.journal.as_ref(),
            fs: &SysFs,
        }
    }

    /// Maps the instance's current index and the journal that belongs to it
    /// (the error says why not).
    pub fn load(instance_dir: &CStr, lib_path: CString) -> Result<State, usvfs_view::Error> {
        let inst = InstanceDir::new(Path::new(OsStr::from_bytes(instance_dir.to_bytes())));
        let (snap, journal) = inst.load_view(true)?;
        let mut rules = instance_dir.to_bytes().to_vec();
        rules.extend_from_slice(b"/exec_rules");
        let layer_tags = (0..snap.layer_count() as u32)
            .map(|l| source_tag(snap.layer_source(l)))
            .collect();
        // No NUL inside: it extends a C string.
        let exec_rules_path = CString::new(rules).unwrap_or_default();
        Ok(State {
            root_mapped: snap.layer(snap.root()).is_some(),
            snap,
            journal,
            instance_dir: instance_dir.to_owned(),
            exec_rules_path,
            layer_tags,
            lib_path,
            refresh_failed: AtomicBool::new(false),
        })
    }
}

/// FNV-1a of a layer's source path, never 0 (0 marks an empty slot).
fn source_tag(src: &[u8]) -> u32 {
    let h = src.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    h.max(1)
}

/// Replaced when a new mapping is published, never mutated; old states are
/// leaked on purpose (other threads may still read them).
static STATE: AtomicPtr<State> = AtomicPtr::new(std::ptr::null_mut());

#[inline(always)]
pub fn get() -> Option<&'static State> {
    let p = STATE.load(Ordering::Acquire);
    if p.is_null() {
        return None;
    }
    // SAFETY: set only from leaked boxes.
    let st = unsafe { &*p };
    if st.journal.as_ref().is_some_and(|j| j.is_superseded())
        && !st.refresh_failed.load(Ordering::Relaxed)
    {
        return Some(refresh(p, st));
    }
    Some(st)
}

pub fn set(s: State) {
    STATE.store(Box::into_raw(Box::new(s)), Ordering::Release);
}

/// A controller set a new mapping: switch this process to it.
#[cold]
#[inline(never)]
fn refresh(old: *mut State, st: &'static State) -> &'static State {
    let Some(_g) = crate::guard::enter() else {
        return st;
    };
    let loaded = std::panic::catch_unwind(|| State::load(&st.instance_dir, st.lib_path.clone()));
    let Ok(Ok(new)) = loaded else {
        st.refresh_failed.store(true, Ordering::Relaxed);
        return st;
    };
    let newp = Box::into_raw(Box::new(new));
    match STATE.compare_exchange(old, newp, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => {
            // SAFETY: just published, never freed.
            let new = unsafe { &*newp };
            // The working directory may now be (or no longer be) in the view.
            if let Some(c) = cwd() {
                let path = c.path.clone();
                let _ = std::panic::catch_unwind(|| crate::hooks::cwd::adopt_cwd(new, &path));
            }
            new
        }
        Err(cur) => {
            // Another thread switched first.
            // SAFETY: newp came from Box::into_raw above and was not published.
            drop(unsafe { Box::from_raw(newp) });
            // SAFETY: cur is a published, never-freed state.
            unsafe { &*cur }
        }
    }
}

/// The logical working directory. Replaced, never mutated: readers load one
/// pointer, no lock (a lock held across `fork` would deadlock the child).
/// Old values are leaked on purpose; `chdir` is rare.
pub struct Cwd {
    pub path: Box<[u8]>,
    /// Relative paths may name index entries: resolve them in full.
    pub on_node: bool,
    /// `getcwd` must report `path` (the physical directory differs).
    pub is_virtual: bool,
}

static CWD: AtomicPtr<Cwd> = AtomicPtr::new(std::ptr::null_mut());

#[inline(always)]
pub fn cwd() -> Option<&'static Cwd> {
    // A vfork child that changed directory shares our memory but not our
    // directory: it resolves relative paths as the kernel does.
    if crate::hooks::calls::vfork_child_moved() {
        return None;
    }
    let p = CWD.load(Ordering::Acquire);
    // SAFETY: set only from leaked boxes.
    (!p.is_null()).then(|| unsafe { &*p })
}

pub fn set_cwd(path: &[u8], on_node: bool, is_virtual: bool) {
    // A vfork child must leave its parent's working directory as it was.
    if crate::hooks::calls::vfork_child_chdir() {
        return;
    }
    let c = Box::into_raw(Box::new(Cwd {
        path: path.into(),
        on_node,
        is_virtual,
    }));
    CWD.store(c, Ordering::Release);
}

/// Reads the kernel's idea of the working directory.
pub fn real_cwd(out: &mut PathBuffer) -> bool {
    let mut buf = [0u8; usvfs_view::path::PATH_MAX];
    // SAFETY: buf has the size we pass.
    let r = unsafe { crate::real::getcwd(buf.as_mut_ptr().cast(), buf.len()) };
    if r.is_null() {
        return false;
    }
    // SAFETY: getcwd NUL-terminates on success.
    let s = unsafe { CStr::from_ptr(buf.as_ptr().cast()) };
    out.clear();
    out.push_bytes(s.to_bytes()).is_ok()
}
