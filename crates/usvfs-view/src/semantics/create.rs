//! Where new files go: below the innermost create target that covers the path,
//! at the same relative path (usvfs's "overwrite" folder).

use crate::flags::LinkFlags;
use crate::index::Snapshot;
use crate::path::{self, PathBuffer, TooLong};

/// The create target covering `vpath`: the one with the longest destination
/// that is a strict ancestor; for equal destinations the later rule wins.
pub fn create_target(snap: &Snapshot<'_>, vpath: &[u8]) -> Option<u32> {
    let mut best: Option<(usize, u32)> = None;
    for l in 0..snap.layer_count() as u32 {
        if snap.layer_flags(l) & LinkFlags::CREATE_TARGET == 0 {
            continue;
        }
        let dest = snap.layer_dest(l);
        let covers = path::strip_prefix(vpath, dest).is_some_and(|rest| !rest.is_empty());
        if covers && best.is_none_or(|(len, _)| dest.len() >= len) {
            best = Some((dest.len(), l));
        }
    }
    best.map(|(_, l)| l)
}

/// The physical path a new `vpath` gets under create target `layer`.
pub fn location(
    snap: &Snapshot<'_>,
    layer: u32,
    vpath: &[u8],
    out: &mut PathBuffer,
) -> Result<(), TooLong> {
    let rest = path::strip_prefix(vpath, snap.layer_dest(layer)).unwrap_or(b"");
    out.set(snap.layer_source(layer))?;
    if !rest.is_empty() {
        out.push_component(rest)?;
    }
    Ok(())
}
