//! Case folding for case-insensitive views (Windows programs under Wine or
//! Proton expect `Textures/ARMOR.dds` and `textures/armor.DDS` to be one file).
//!
//! The rule, per name (one path component):
//!
//! * a name that is valid UTF-8 folds character by character with Unicode
//!   **simple** case folding (the `C` and `S` mappings of `CaseFolding.txt`,
//!   Unicode 16.0): one character never becomes several, as with the upcase
//!   table NTFS compares names by. So `Ärger.txt` and `äRGER.TXT` are one name,
//!   the Kelvin sign `K` is `k`, `ẞ` is `ß`, but `ß` and `SS` stay different,
//!   and so do the Turkic dotted/dotless `İ`/`i`/`ı` (no `T` mappings);
//! * a name that is not valid UTF-8 folds its ASCII letters only; its other
//!   bytes compare as they are.
//!
//! The folded form of a name (its *key*) is the UTF-8 (or byte) string of
//! its folded characters; each class of equivalent characters folds to one
//! canonical member (the lowercase one). Nothing here allocates but
//! [`fold_vec`]: the resolver folds into a caller's stack buffer.

use std::cmp::Ordering;

use crate::fold_table::FOLD;

/// The longest key [`fold_into`] is asked to hold: a name of `NAME_MAX`
/// (255) bytes folds to at most this many (a 2-byte character can fold to
/// a 3-byte one).
pub const KEY_MAX: usize = 384;

/// Folds one character.
#[inline]
pub fn fold_char(c: char) -> char {
    if c.is_ascii() {
        return c.to_ascii_lowercase();
    }
    let u = c as u32;
    match FOLD.binary_search_by_key(&u, |&(from, _)| from) {
        // The table holds only valid scalar values.
        Ok(i) => char::from_u32(FOLD[i].1).unwrap_or(c),
        Err(_) => c,
    }
}

/// The bytes of a name's key, one at a time.
pub struct Folded<'a> {
    inner: Inner<'a>,
    pending: [u8; 4],
    at: u8,
    len: u8,
}

enum Inner<'a> {
    Chars(std::str::Chars<'a>),
    Bytes(std::slice::Iter<'a, u8>),
}

/// The key of `name`, as an iterator of bytes.
#[inline]
pub fn folded(name: &[u8]) -> Folded<'_> {
    let inner = match std::str::from_utf8(name) {
        Ok(s) => Inner::Chars(s.chars()),
        Err(_) => Inner::Bytes(name.iter()),
    };
    Folded {
        inner,
        pending: [0; 4],
        at: 0,
        len: 0,
    }
}

impl Iterator for Folded<'_> {
    type Item = u8;

    #[inline]
    fn next(&mut self) -> Option<u8> {
        if self.at < self.len {
            let b = self.pending[self.at as usize];
            self.at += 1;
            return Some(b);
        }
        match &mut self.inner {
            Inner::Bytes(it) => it.next().map(|b| b.to_ascii_lowercase()),
            Inner::Chars(it) => {
                let c = fold_char(it.next()?);
                if c.is_ascii() {
                    return Some(c as u8);
                }
                let n = c.encode_utf8(&mut self.pending).len();
                self.len = n as u8;
                self.at = 1;
                Some(self.pending[0])
            }
        }
    }
}

/// Writes the key of `name` into `out`; returns its length, or `None` when
/// it does not fit.
#[inline]
pub fn fold_into(name: &[u8], out: &mut [u8]) -> Option<usize> {
    if name.is_ascii() {
        // The common case: no decoding, no table.
        let out = out.get_mut(..name.len())?;
        for (o, &b) in out.iter_mut().zip(name) {
            *o = b.to_ascii_lowercase();
        }
        return Some(name.len());
    }
    let mut n = 0;
    for b in folded(name) {
        *out.get_mut(n)? = b;
        n += 1;
    }
    Some(n)
}

/// The key of `name` in a new vector (controllers, not the hot path).
pub fn fold_vec(name: &[u8]) -> Vec<u8> {
    folded(name).collect()
}

/// True when two names are the same name under folding.
#[inline]
pub fn eq(a: &[u8], b: &[u8]) -> bool {
    a == b || (a.is_ascii() && b.is_ascii() && a.eq_ignore_ascii_case(b)) || {
        !(a.is_ascii() && b.is_ascii()) && folded(a).eq(folded(b))
    }
}

/// Orders `name`'s key against an already folded `key`.
#[inline]
pub fn cmp_key(name: &[u8], key: &[u8]) -> Ordering {
    folded(name).cmp(key.iter().copied())
}

/// Calls `each` with every byte of a path's key: each component folds as a
/// name, separators stay.
pub fn path_key(p: &[u8], each: &mut impl FnMut(u8)) {
    for (i, c) in p.split(|&b| b == b'/').enumerate() {
        if i > 0 {
            each(b'/');
        }
        folded(c).for_each(&mut *each);
    }
}

/// True when two paths are the same path under folding (component by
/// component).
pub fn path_eq(a: &[u8], b: &[u8]) -> bool {
    a == b || {
        let mut x = a.split(|&c| c == b'/');
        let mut y = b.split(|&c| c == b'/');
        loop {
            match (x.next(), y.next()) {
                (None, None) => return true,
                (Some(p), Some(q)) if eq(p, q) => {}
                _ => return false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &[u8]) -> Vec<u8> {
        fold_vec(s)
    }

    #[test]
    fn folds_names() {
        assert_eq!(key(b"Textures"), b"textures");
        assert!(eq(b"ARMOR.DDS", b"armor.dds"));
        assert!(eq("Ärger.txt".as_bytes(), "äRGER.TXT".as_bytes()));
        assert!(eq("\u{212A}elvin".as_bytes(), b"kELVIN"));
        assert!(eq("STRAẞE".as_bytes(), "straße".as_bytes()));
        assert!(eq("ΣΊΣΥΦΟΣ".as_bytes(), "σίσυφος".as_bytes()));
        // Simple folding: one character stays one character.
        assert!(!eq("straße".as_bytes(), b"STRASSE"));
        // No Turkic mappings.
        assert!(!eq("İ".as_bytes(), b"i"));
        assert!(!eq("ı".as_bytes(), b"I"));
        // Not UTF-8: ASCII letters only.
        assert!(eq(b"Caf\xe9.TXT", b"cAF\xe9.txt"));
        assert!(!eq(b"caf\xe9", b"caf\xc9"));
        assert!(!eq(b"a", b"ab"));
        // A name whose key is longer than the name.
        assert_eq!(key("\u{23A}".as_bytes()), "\u{2C65}".as_bytes());
    }

    #[test]
    fn keys_order_and_fit() {
        assert_eq!(cmp_key(b"ABC", b"abc"), Ordering::Equal);
        assert_eq!(cmp_key(b"ABC", b"abd"), Ordering::Less);
        assert_eq!(cmp_key(b"b", b"abc"), Ordering::Greater);
        let mut buf = [0u8; 4];
        assert_eq!(fold_into(b"ABCD", &mut buf), Some(4));
        assert_eq!(&buf, b"abcd");
        assert_eq!(fold_into(b"ABCDE", &mut buf), None);
        let mut out = Vec::new();
        path_key(b"/Game/Data/\xffX", &mut |b| out.push(b));
        assert_eq!(out, b"/game/data/\xffx");
        assert!(path_eq(b"/a/Textures/ARMOR.dds", b"/a/textures/armor.DDS"));
        assert!(!path_eq(b"/a/b", b"/a/b/c"));
        assert!(!path_eq(b"/a/bc", b"/a/b/c"));
    }

    /// The table gives exactly Unicode's simple case folding classes: two
    /// characters fold alike if and only if simple case folding relates them
    /// (checked against regex-syntax's table of all pairs).
    #[test]
    fn table_matches_unicode() {
        use regex_syntax::hir::{ClassUnicode, ClassUnicodeRange};
        assert!(FOLD.windows(2).all(|w| w[0].0 < w[1].0), "sorted");
        for u in 0u32..=0x10FFFF {
            let Some(c) = char::from_u32(u) else { continue };
            let mut cl = ClassUnicode::new([ClassUnicodeRange::new(c, c)]);
            cl.case_fold_simple();
            for r in cl.iter() {
                for m in r.start()..=r.end() {
                    assert_eq!(fold_char(m), fold_char(c), "{c:?} ~ {m:?}");
                }
            }
            let f = fold_char(c);
            if f != c {
                // The canonical member is in the class and folds to itself.
                assert!(cl.iter().any(|r| r.start() <= f && f <= r.end()), "{c:?}");
                assert_eq!(fold_char(f), f);
            }
        }
    }
}
