//! Resolution of a normalized absolute virtual path to its physical path.
//!
//! Walks the index component by component. Symlinks that a layer contributes are
//! expanded inside the view (a relative link in a mod resolves against the merged
//! directory, as in a real merged copy). A path that leaves the index below a
//! directory falls through to the real disk, which is the lowest layer. Nothing
//! here allocates: the preload library calls it on every hooked path.
//!
//! In a case-insensitive index a name that misses exactly is looked up again
//! by its folded form (directories at and below destinations only), and the
//! virtual path comes out spelled as the view lists it: each index component
//! as the index spells it, each journal-placed path as its record spells it,
//! the rest as given.

use crate::fs::Fs;
use crate::index::{NodeId, NodeKind, Snapshot};
use crate::journal::{self, Entry, Journal};
use crate::path::{self, PathBuffer};

mod prefix_cache;
use prefix_cache::PrefixCache;

/// Symlink expansions before `ELOOP`, as the kernel allows.
const MAX_EXPANSIONS: u32 = 40;
/// How many candidate prefixes to canonicalize when looking for a symlinked prefix.
const MAX_ALIAS_PROBES: u32 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolution {
    /// The index node the whole path names, if it is in the index.
    pub node: Option<NodeId>,
    /// True when the physical path differs from the input path, i.e. the view
    /// changes where this path goes.
    pub redirected: bool,
    /// The journal placed this path (or an ancestor) at a physical location.
    pub from_journal: bool,
}

impl Resolution {
    /// Not resolved yet.
    pub const NONE: Resolution = Resolution {
        node: None,
        redirected: false,
        from_journal: false,
    };
}

/// Resolves `input` (absolute, normalized). On success `virt` holds the virtual
/// path after symlink expansion and `phys` the physical path to use.
/// `follow` says whether a symlink in the last component is followed.
pub fn resolve(
    snap: &Snapshot<'_>,
    fs: &dyn Fs,
    input: &[u8],
    follow: bool,
    virt: &mut PathBuffer,
    phys: &mut PathBuffer,
) -> Result<Resolution, i32> {
    resolve_with(snap, None, fs, input, follow, virt, phys)
}

/// What the journal says about the path in `virt` (hash `h`), if anything:
/// absent, or at a physical path (with its kind and the path as the record
/// spells it).
enum JournalStep<'j> {
    Nothing,
    Absent,
    At(&'j [u8], u8, &'j [u8]),
}

/// `parent` is the key hash of the path's directory (see
/// [`Journal::get_child_record`]).
#[inline(always)]
fn journal_step<'j>(j: &'j Journal, virt: &PathBuffer, parent: u64, h: u64) -> JournalStep<'j> {
    match j.get_child_record(parent, virt.as_bytes(), h) {
        None => JournalStep::Nothing,
        Some((Entry::Whiteout, _)) => JournalStep::Absent,
        Some((Entry::Physical { phys, kind }, v)) => JournalStep::At(phys, kind, v),
    }
}

/// The working buffers of a resolution (20 KiB), and the last directory a
/// resolution went through. Callers that may run on small thread stacks
/// keep one on the heap and use [`resolve_in`].
pub struct Scratch {
    work: PathBuffer,
    next: PathBuffer,
    link: LinkBuf,
    cache: PrefixCache,
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

impl Scratch {
    /// Makes the scratch at `p` valid without touching its buffers' storage.
    ///
    /// # Safety
    /// `p` must point to writable memory for a `Scratch`.
    pub unsafe fn init_at(p: *mut Scratch) {
        // SAFETY: per the contract; LinkBuf needs no initialization, the
        // cache only its (empty) stamp and depth.
        unsafe {
            PathBuffer::init_at(std::ptr::addr_of_mut!((*p).work));
            PathBuffer::init_at(std::ptr::addr_of_mut!((*p).next));
            PrefixCache::init_at(std::ptr::addr_of_mut!((*p).cache));
        }
    }

    /// Empties the path buffers for another walk; the prefix cache stays.
    pub fn reuse(&mut self) {
        self.work.clear();
        self.next.clear();
    }

    #[inline(always)]
    pub fn new() -> Self {
        Scratch {
            work: PathBuffer::new(),
            next: PathBuffer::new(),
            link: LinkBuf::new(),
            cache: PrefixCache::new(),
        }
    }
}

/// Like [`resolve`], with the instance's journal of changes on top of the index.
pub fn resolve_with(
    snap: &Snapshot<'_>,
    journal: Option<&Journal>,
    fs: &dyn Fs,
    input: &[u8],
    follow: bool,
    virt: &mut PathBuffer,
    phys: &mut PathBuffer,
) -> Result<Resolution, i32> {
    let mut scratch = Scratch::new();
    resolve_in(snap, journal, fs, input, follow, virt, phys, &mut scratch)
}

/// Like [`resolve_with`], using the caller's working buffers. `input` is
/// read more than once and prefixes of it are cached in `scratch`: it must be
/// the caller's own copy, never a string another thread may be rewriting.
#[allow(clippy::too_many_arguments)]
pub fn resolve_in(
    snap: &Snapshot<'_>,
    journal: Option<&Journal>,
    fs: &dyn Fs,
    input: &[u8],
    follow: bool,
    virt: &mut PathBuffer,
    phys: &mut PathBuffer,
    scratch: &mut Scratch,
) -> Result<Resolution, i32> {
    let jr = journal.filter(|j| !j.is_empty());
    let Scratch {
        work,
        next,
        link,
        cache,
    } = scratch;
    // The walk reads the input where it is; `work` holds the path only
    // once a link or alias rewrote it.
    if input.len() >= path::PATH_MAX {
        return Err(libc::ENAMETOOLONG);
    }
    let mut rewritten = false;
    let mut expansions = 0u32;
    let mut alias_probes = 0u32;
    // Before the walk: a change published while it runs makes what it
    // caches stale at once.
    let stamp = prefix_cache::Stamp::now(snap, jr);
    'restart: loop {
        let bytes = if rewritten { work.as_bytes() } else { input };
        let mut node = snap.root();
        let mut pos = 0usize;
        let mut h = journal::FNV_OFFSET;
        match cache.start(stamp, bytes) {
            Some(at) => {
                virt.set(cache.virt(at.virt_len))
                    .map_err(|_| libc::ENAMETOOLONG)?;
                node = at.node;
                pos = at.pos;
                h = at.hash;
            }
            None => {
                virt.clear();
                virt.push_bytes(b"/").map_err(|_| libc::ENAMETOOLONG)?;
            }
        }
        while let Some((start, end)) = next_component(bytes, &mut pos) {
            let comp = &bytes[start..end];
            let last = bytes[end..].iter().all(|&c| c == b'/');
            if let Some(j) = jr {
                // Changes recorded after the snapshot take precedence.
                let before = virt.len();
                virt.push_component(comp).map_err(|_| libc::ENAMETOOLONG)?;
                let parent_h = h;
                h = j.key_extend(h, comp);
                match journal_step(j, virt, parent_h, h) {
                    JournalStep::Nothing => virt.truncate(before),
                    JournalStep::Absent => return Err(libc::ENOENT),
                    JournalStep::At(p, kind, spelled) => {
                        if j.folds() {
                            // The view spells it as the record does.
                            virt.set(spelled).map_err(|_| libc::ENAMETOOLONG)?;
                        }
                        if kind == crate::index::format::KIND_SYMLINK && (!last || follow) {
                            phys.set(p).map_err(|_| libc::ENAMETOOLONG)?;
                            expand_link(
                                fs,
                                link,
                                phys,
                                virt,
                                &bytes[end..],
                                next,
                                &mut expansions,
                            )?;
                            path::normalize_into(next.as_bytes(), b"/", work)
                                .map_err(|_| libc::ENAMETOOLONG)?;
                            rewritten = true;
                            continue 'restart;
                        }
                        if !last {
                            // Deeper records place what was made below it
                            // (in the create target) and spell it.
                            if let Some(r) = deepest_record(
                                j,
                                Some((p, spelled, end)),
                                bytes,
                                end,
                                h,
                                virt,
                                phys,
                            )? {
                                return Ok(r);
                            }
                        }
                        return physical_below(p, &bytes[end..], virt, phys);
                    }
                }
            }
            match snap.lookup(node, comp) {
                Some(ch) => {
                    // As the index spells it (the same bytes but after a
                    // case-insensitive match).
                    virt.push_component(snap.name(ch))
                        .map_err(|_| libc::ENAMETOOLONG)?;
                    match snap.kind(ch) {
                        NodeKind::Symlink if snap.layer(ch).is_some() && (!last || follow) => {
                            snap.physical_path(ch, virt.as_bytes(), phys)
                                .map_err(|_| libc::ENAMETOOLONG)?;
                            expand_link(
                                fs,
                                link,
                                phys,
                                virt,
                                &bytes[end..],
                                next,
                                &mut expansions,
                            )?;
                            path::normalize_into(next.as_bytes(), b"/", work)
                                .map_err(|_| libc::ENAMETOOLONG)?;
                            rewritten = true;
                            continue 'restart;
                        }
                        NodeKind::Dir => {
                            // An index directory with no record on it or
                            // above: where a later walk may start.
                            cache.record(bytes, end, virt.as_bytes(), ch, h);
                            node = ch;
                        }
                        _ if !last => return Err(libc::ENOTDIR),
                        _ => node = ch,
                    }
                }
                None => {
                    match jr {
                        Some(j) if j.folds() => {
                            // Below the index: the deepest record decides.
                            let saved = virt.len();
                            virt.push_component(comp).map_err(|_| libc::ENAMETOOLONG)?;
                            if let Some(r) = deepest_record(j, None, bytes, end, h, virt, phys)? {
                                return Ok(r);
                            }
                            virt.truncate(saved);
                        }
                        Some(j) => {
                            // Below the index: the journal may still know deeper
                            // paths (created in the create target, or deleted).
                            // `h` already covers `comp`.
                            let saved = virt.len();
                            virt.push_component(comp).map_err(|_| libc::ENAMETOOLONG)?;
                            let (mut hh, mut k) = (h, end);
                            while let Some((s0, e0)) = next_component(bytes, &mut k) {
                                let c = &bytes[s0..e0];
                                virt.push_component(c).map_err(|_| libc::ENAMETOOLONG)?;
                                let parent_h = hh;
                                hh = j.key_extend(hh, c);
                                match journal_step(j, virt, parent_h, hh) {
                                    JournalStep::Absent => return Err(libc::ENOENT),
                                    JournalStep::At(p, _, _) => {
                                        return physical_below(p, &bytes[e0..], virt, phys);
                                    }
                                    JournalStep::Nothing => {}
                                }
                            }
                            virt.truncate(saved);
                        }
                        None => {}
                    }
                    if snap.hides_base(node) {
                        return Err(libc::ENOENT);
                    }
                    if snap.layer(node).is_none() && alias_probes < MAX_ALIAS_PROBES {
                        // Outside every layer: the path may still reach a destination
                        // through a symlinked prefix (Wine's dosdevices/z: -> /).
                        if let Some(()) =
                            probe_alias(snap, fs, bytes, start, &mut alias_probes, next, phys)?
                        {
                            path::normalize_into(next.as_bytes(), b"/", work)
                                .map_err(|_| libc::ENAMETOOLONG)?;
                            rewritten = true;
                            continue 'restart;
                        }
                    }
                    virt.push_component(&bytes[start..])
                        .map_err(|_| libc::ENAMETOOLONG)?;
                    if virt.as_bytes().ends_with(b"/") && virt.len() > 1 {
                        let l = virt.len();
                        virt.truncate(l - 1);
                    }
                    phys.clear();
                    phys.push_bytes(virt.as_bytes())
                        .map_err(|_| libc::ENAMETOOLONG)?;
                    return Ok(Resolution {
                        node: None,
                        redirected: phys.as_bytes() != input,
                        from_journal: false,
                    });
                }
            }
        }
        snap.physical_path(node, virt.as_bytes(), phys)
            .map_err(|_| libc::ENAMETOOLONG)?;
        return Ok(Resolution {
            node: Some(node),
            redirected: phys.as_bytes() != input,
            from_journal: false,
        });
    }
}

/// The next non-empty component of `bytes` at or after `*pos`, as `[start, end)`.
#[inline]
fn next_component(bytes: &[u8], pos: &mut usize) -> Option<(usize, usize)> {
    while *pos < bytes.len() && bytes[*pos] == b'/' {
        *pos += 1;
    }
    if *pos >= bytes.len() {
        return None;
    }
    let start = *pos;
    while *pos < bytes.len() && bytes[*pos] != b'/' {
        *pos += 1;
    }
    Some((start, *pos))
}

/// Reads the symlink at physical `phys` (reached at `virt`) and writes the
/// path to resolve next into `next`; counts expansions up to `ELOOP`.
fn expand_link(
    fs: &dyn Fs,
    link: &mut LinkBuf,
    phys: &mut PathBuffer,
    virt: &mut PathBuffer,
    rest: &[u8],
    next: &mut PathBuffer,
    expansions: &mut u32,
) -> Result<(), i32> {
    *expansions += 1;
    if *expansions > MAX_EXPANSIONS {
        return Err(libc::ELOOP);
    }
    let target = link.read(fs, phys)?;
    splice_link(target, virt, rest, next)
}

/// The path to resolve after meeting a symlink at `virt` whose target is
/// `target`, with `rest` still to walk: relative targets count from the
/// link's directory in the view.
fn splice_link(
    target: &[u8],
    virt: &mut PathBuffer,
    rest: &[u8],
    next: &mut PathBuffer,
) -> Result<(), i32> {
    let long = |_| libc::ENAMETOOLONG;
    next.clear();
    if target.first() != Some(&b'/') {
        virt.pop_component();
        next.push_bytes(virt.as_bytes()).map_err(long)?;
        next.push_bytes(b"/").map_err(long)?;
    }
    next.push_bytes(target).map_err(long)?;
    next.push_bytes(b"/").map_err(long)?;
    next.push_bytes(rest).map_err(long)
}

/// In a folding journal, below a journal-placed path `found` (physical path,
/// spelled path, end of its component in `bytes`) or below the index: the
/// remaining components of `bytes` from `k` are looked up (`virt` holds the
/// path up to `k`, `h` its key hash); a deeper record wins over a shallower
/// one, so a file created below a created directory keeps its own spelling.
/// `None` when no record applies.
fn deepest_record<'j>(
    j: &'j Journal,
    mut found: Option<(&'j [u8], &'j [u8], usize)>,
    bytes: &[u8],
    mut k: usize,
    mut h: u64,
    virt: &mut PathBuffer,
    phys: &mut PathBuffer,
) -> Result<Option<Resolution>, i32> {
    while let Some((s0, e0)) = next_component(bytes, &mut k) {
        let c = &bytes[s0..e0];
        virt.push_component(c).map_err(|_| libc::ENAMETOOLONG)?;
        let parent_h = h;
        h = j.key_extend(h, c);
        match journal_step(j, virt, parent_h, h) {
            JournalStep::Absent => return Err(libc::ENOENT),
            JournalStep::At(p, _, spelled) => found = Some((p, spelled, e0)),
            JournalStep::Nothing => {}
        }
    }
    let Some((p, spelled, end)) = found else {
        return Ok(None);
    };
    virt.set(spelled).map_err(|_| libc::ENAMETOOLONG)?;
    physical_below(p, &bytes[end..], virt, phys).map(Some)
}

/// The path lives at physical `at` (from the journal); `rest` continues below it.
fn physical_below(
    at: &[u8],
    rest: &[u8],
    virt: &mut PathBuffer,
    phys: &mut PathBuffer,
) -> Result<Resolution, i32> {
    phys.set(at).map_err(|_| libc::ENAMETOOLONG)?;
    for c in path::components(rest) {
        phys.push_component(c).map_err(|_| libc::ENAMETOOLONG)?;
        virt.push_component(c).map_err(|_| libc::ENAMETOOLONG)?;
    }
    Ok(Resolution {
        node: None,
        redirected: true,
        from_journal: true,
    })
}

/// Looks for a component of `bytes[from..]` named like a destination's last
/// component; if the prefix up to it canonicalizes elsewhere, writes the
/// canonical prefix plus the rest into `next`.
fn probe_alias(
    snap: &Snapshot<'_>,
    fs: &dyn Fs,
    bytes: &[u8],
    from: usize,
    probes: &mut u32,
    next: &mut PathBuffer,
    scratch: &mut PathBuffer,
) -> Result<Option<()>, i32> {
    let mut pos = from;
    while *probes < MAX_ALIAS_PROBES {
        let Some((start, end)) = next_component(bytes, &mut pos) else {
            break;
        };
        let comp = &bytes[start..end];
        if !snap.anchors().any(|a| a == comp) {
            continue;
        }
        *probes += 1;
        scratch.clear();
        scratch
            .push_bytes(&bytes[..pos])
            .map_err(|_| libc::ENAMETOOLONG)?;
        if fs.realpath(scratch.as_bytes(), next).is_err() || next.as_bytes() == &bytes[..pos] {
            continue;
        }
        next.push_bytes(&bytes[pos..])
            .map_err(|_| libc::ENAMETOOLONG)?;
        return Ok(Some(()));
    }
    Ok(None)
}

/// A readlink target buffer, left uninitialized until a link is read (zeroing
/// 4 KiB on every resolution would cost more than the lookup).
struct LinkBuf {
    buf: [std::mem::MaybeUninit<u8>; path::PATH_MAX],
}

impl LinkBuf {
    #[inline(always)]
    fn new() -> Self {
        LinkBuf {
            // SAFETY: an array of MaybeUninit needs no initialization.
            buf: unsafe {
                std::mem::MaybeUninit::<[std::mem::MaybeUninit<u8>; path::PATH_MAX]>::uninit()
                    .assume_init()
            },
        }
    }

    fn read(&mut self, fs: &dyn Fs, p: &mut PathBuffer) -> Result<&[u8], i32> {
        // Zero only when a link is actually read; readlink fills the prefix.
        let buf: &mut [u8] = {
            for b in self.buf.iter_mut() {
                *b = std::mem::MaybeUninit::new(0);
            }
            // SAFETY: every byte was just initialized.
            unsafe {
                std::slice::from_raw_parts_mut(self.buf.as_mut_ptr().cast::<u8>(), self.buf.len())
            }
        };
        let n = fs.readlink(p.as_bytes(), buf)?;
        Ok(&buf[..n.min(path::PATH_MAX)])
    }
}
