//! From a physical path back to the view: a descriptor the engine did not see
//! opened (received over a socket, inherited across exec, opened by a raw
//! system call or before the engine loaded) is known only by the physical
//! path the kernel reports for it. Every layer knows its destination, so the
//! path below a layer's source names the same path below its destination.

use super::View;
use crate::path::{self, PathBuffer, TooLong};

impl View<'_> {
    /// The virtual path the physical path `phys` (absolute, normalized) shows
    /// in the view: below a layer's source, its destination plus the rest
    /// (the longest source wins when sources nest); anything else (the real
    /// disk, the lowest layer) is its own virtual path.
    pub fn virtual_of_physical(&self, phys: &[u8], out: &mut PathBuffer) -> Result<(), TooLong> {
        let mut best: Option<(usize, u32)> = None;
        for l in 0..self.snap.layer_count() as u32 {
            let src = self.snap.layer_source(l);
            if path::strip_prefix(phys, src).is_some() && best.is_none_or(|(n, _)| src.len() > n) {
                best = Some((src.len(), l));
            }
        }
        let Some((_, l)) = best else {
            return out.set(phys);
        };
        let rest = path::strip_prefix(phys, self.snap.layer_source(l)).unwrap_or(b"");
        out.set(self.snap.layer_dest(l))?;
        if !rest.is_empty() {
            out.push_component(rest)?;
        }
        Ok(())
    }
}
