//! A fast hasher for the server's maps (paths and inode numbers, which
//! every request looks up): the Fx multiply-rotate hash, eight bytes at a
//! time. Not resistant to chosen collisions, which could only slow down the
//! server of the program that chose them.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().unwrap_or([0; 8])));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(b));
        }
    }

    #[inline]
    fn write_u8(&mut self, n: u8) {
        self.add(n as u64);
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    /// Paths that differ anywhere (in the tail of a chunk too) hash apart.
    #[test]
    fn distinct_paths_distinct_hashes() {
        let h = |b: &[u8]| {
            let mut s = FxHasher::default();
            s.write(b);
            s.finish()
        };
        assert_ne!(h(b"/g/data/a.txt"), h(b"/g/data/b.txt"));
        assert_ne!(h(b"/g/data/abcdefg1"), h(b"/g/data/abcdefg2"));
        assert_ne!(h(b"/g/data/abcdefgh1"), h(b"/g/data/abcdefgh2"));
        let mut m: FastMap<Vec<u8>, u64> = FastMap::default();
        m.insert(b"/x".to_vec(), 1);
        assert_eq!(m.get(b"/x".as_slice()), Some(&1));
    }
}
