//! Byte-oriented path helpers. Linux paths are bytes: nothing here assumes UTF-8,
//! and nothing allocates, so the preload hot path can use it on stack buffers.

/// Longest path we handle in a fixed buffer (Linux `PATH_MAX`).
pub const PATH_MAX: usize = 4096;

/// A fixed-capacity path buffer that never allocates.
#[derive(Clone)]
pub struct PathBuffer {
    // Left uninitialized: zeroing 4 KiB on every hooked call would cost more
    // than the lookup itself. Only `buf[..len]` is ever read.
    buf: [std::mem::MaybeUninit<u8>; PATH_MAX],
    len: usize,
}

/// The path did not fit in [`PATH_MAX`] bytes (`ENAMETOOLONG`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLong;

impl Default for PathBuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl PathBuffer {
    #[inline(always)]
    pub fn new() -> Self {
        Self {
            // SAFETY: an array of MaybeUninit needs no initialization (written
            // this way, unlike an array repeat expression, it is not zeroed).
            buf: unsafe {
                std::mem::MaybeUninit::<[std::mem::MaybeUninit<u8>; PATH_MAX]>::uninit()
                    .assume_init()
            },
            len: 0,
        }
    }

    /// Makes the buffer at `p` a valid empty buffer without touching its 4 KiB
    /// of storage (for buffers allocated uninitialized on the heap).
    ///
    /// # Safety
    /// `p` must point to writable memory for a `PathBuffer`.
    pub unsafe fn init_at(p: *mut PathBuffer) {
        // SAFETY: per the contract; only the length needs a value.
        unsafe { std::ptr::addr_of_mut!((*p).len).write(0) };
    }

    /// Copies `b` into a new buffer. Moves 4 KiB: hot paths use `new` + `set`.
    pub fn from_bytes(b: &[u8]) -> Result<Self, TooLong> {
        let mut p = Self::new();
        p.push_bytes(b)?;
        Ok(p)
    }

    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: bytes below `len` were written by push_bytes.
        unsafe { std::slice::from_raw_parts(self.buf.as_ptr().cast::<u8>(), self.len) }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Replaces the contents with `b`.
    #[inline]
    pub fn set(&mut self, b: &[u8]) -> Result<(), TooLong> {
        self.len = 0;
        self.push_bytes(b)
    }

    pub fn truncate(&mut self, len: usize) {
        if len < self.len {
            self.len = len;
        }
    }

    /// Appends raw bytes (no separator handling).
    pub fn push_bytes(&mut self, b: &[u8]) -> Result<(), TooLong> {
        // Keep one byte free for the NUL terminator.
        if self.len + b.len() >= PATH_MAX {
            return Err(TooLong);
        }
        // SAFETY: bounds checked above; MaybeUninit<u8> has u8's layout.
        unsafe {
            std::ptr::copy_nonoverlapping(
                b.as_ptr(),
                self.buf.as_mut_ptr().add(self.len).cast::<u8>(),
                b.len(),
            )
        };
        self.len += b.len();
        Ok(())
    }

    /// Appends `/component`, never doubling the separator.
    pub fn push_component(&mut self, c: &[u8]) -> Result<(), TooLong> {
        if self.as_bytes().last() != Some(&b'/') {
            self.push_bytes(b"/")?;
        }
        self.push_bytes(c)
    }

    /// Drops the last component of an absolute normalized path (`/a/b` -> `/a`, `/a` -> `/`).
    pub fn pop_component(&mut self) {
        match self.as_bytes().iter().rposition(|&c| c == b'/') {
            Some(0) | None => self.len = 1.min(self.len),
            Some(i) => self.len = i,
        }
        if self.len == 0 {
            self.buf[0] = std::mem::MaybeUninit::new(b'/');
            self.len = 1;
        }
    }

    /// NUL-terminated pointer for libc calls.
    pub fn as_c_ptr(&mut self) -> *const libc::c_char {
        self.buf[self.len] = std::mem::MaybeUninit::new(0);
        self.buf.as_ptr().cast()
    }

    /// The path as a C string, NUL-terminated in place.
    pub fn as_c_str(&mut self) -> &std::ffi::CStr {
        let p = self.as_c_ptr();
        // SAFETY: as_c_ptr wrote a NUL right after the path's initialized
        // bytes, so the string ends inside the buffer, which `&mut self`
        // keeps alive and unchanged for the borrow.
        unsafe { std::ffi::CStr::from_ptr(p) }
    }
}

/// The absolute path of a node of a tree from the names met walking up from
/// it to the root (`leaf_up`: the node's own name first; none: `/`).
pub fn from_leaf_up<'a>(leaf_up: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
    let parts: Vec<&[u8]> = leaf_up.collect();
    let mut out = Vec::new();
    for p in parts.iter().rev() {
        out.push(b'/');
        out.extend_from_slice(p);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    out
}

/// `v` in decimal, written into `buf` without allocating.
pub fn decimal(v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let (mut i, mut v) = (buf.len(), v);
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            return &buf[i..];
        }
    }
}

/// Iterates the non-empty components of a path, `.` included.
pub fn components(p: &[u8]) -> impl Iterator<Item = &[u8]> {
    p.split(|&c| c == b'/').filter(|c| !c.is_empty())
}

/// Writes the lexical normal form of `path` into `out`: absolute (relative paths are
/// taken from `cwd`), no `.`, `..` applied lexically, single slashes, no trailing slash.
pub fn normalize_into(path: &[u8], cwd: &[u8], out: &mut PathBuffer) -> Result<(), TooLong> {
    // Most paths programs pass are absolute and normal already: one copy.
    // The quick check first; a name starting with a dot (`~/.wine/...`)
    // takes the exact one.
    if plainly_normal(path) || is_normal_absolute(path) {
        return out.set(path);
    }
    out.clear();
    out.push_bytes(b"/")?;
    if path.first() != Some(&b'/') {
        append_normalized(cwd, out)?;
    }
    append_normalized(path, out)
}

/// `path` is absolute and normal, judged without a branch per byte: no `//`
/// and no `/.` anywhere (so a name starting with a dot counts as not), no
/// trailing slash. Only a quick yes: [`is_normal_absolute`] is the exact
/// answer.
#[inline]
fn plainly_normal(path: &[u8]) -> bool {
    match path {
        [b'/'] => true,
        [b'/', .., last] if *last != b'/' => {
            // Folded with `|` rather than stopped early, so it vectorizes.
            let pairs = path.iter().zip(&path[1..]).fold(false, |acc, (&a, &b)| {
                acc | ((a == b'/') & ((b == b'/') | (b == b'.')))
            });
            !pairs
        }
        _ => false,
    }
}

/// Applies the components of `path` onto the absolute normalized path in `out`.
pub fn append_normalized(path: &[u8], out: &mut PathBuffer) -> Result<(), TooLong> {
    for c in components(path) {
        match c {
            b"." => {}
            b".." => out.pop_component(),
            c => out.push_component(c)?,
        }
    }
    Ok(())
}

/// Lexically normalizes into a new vector (for controllers, not the hot path).
pub fn normalize(path: &[u8], cwd: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len() + cwd.len() + 1);
    out.push(b'/');
    let push_all = |p: &[u8], out: &mut Vec<u8>| {
        for c in components(p) {
            match c {
                b"." => {}
                b".." => {
                    let cut = out.iter().rposition(|&b| b == b'/').unwrap_or(0);
                    out.truncate(cut.max(1));
                }
                c => {
                    if out.last() != Some(&b'/') {
                        out.push(b'/');
                    }
                    out.extend_from_slice(c);
                }
            }
        }
    };
    if path.first() != Some(&b'/') {
        push_all(cwd, &mut out);
    }
    push_all(path, &mut out);
    out
}

/// If `path` equals `prefix` or lies below it (component-wise), returns the rest
/// without its leading slash (empty when equal).
pub fn strip_prefix<'a>(path: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    if prefix == b"/" {
        return path.strip_prefix(b"/");
    }
    let rest = path.strip_prefix(prefix)?;
    if rest.is_empty() {
        Some(rest)
    } else {
        rest.strip_prefix(b"/")
    }
}

/// True when the path is already in normal form (the common case: skip the copy).
pub fn is_normal_absolute(p: &[u8]) -> bool {
    if p.first() != Some(&b'/') {
        return false;
    }
    if p.len() > 1 && p.ends_with(b"/") {
        return false;
    }
    !p[1..]
        .split(|&c| c == b'/')
        .any(|c| c.is_empty() && p.len() > 1 || c == b"." || c == b"..")
}

/// The last component of a path (the whole path when it has no slash).
pub fn file_name(p: &[u8]) -> &[u8] {
    match p.iter().rposition(|&c| c == b'/') {
        Some(i) => &p[i + 1..],
        None => p,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_lexically() {
        assert_eq!(normalize(b"/a//b/./c/", b"/"), b"/a/b/c");
        assert_eq!(normalize(b"/a/b/../c", b"/"), b"/a/c");
        assert_eq!(normalize(b"/../..", b"/"), b"/");
        assert_eq!(normalize(b"x/y", b"/cwd/dir"), b"/cwd/dir/x/y");
        assert_eq!(normalize(b"../y", b"/cwd/dir"), b"/cwd/y");
        assert_eq!(normalize(b"", b"/cwd"), b"/cwd");
        assert_eq!(normalize(b"/caf\xe9/\xff", b"/"), b"/caf\xe9/\xff");
    }

    #[test]
    fn buffer_normalization_matches_vec() {
        for (p, cwd) in [
            (&b"/a//b/./c/"[..], &b"/"[..]),
            (b"../../x/./y", b"/one/two/three"),
            (b"/..", b"/"),
            (b"a", b"/"),
            (b"..", b"/"),
        ] {
            let mut out = PathBuffer::new();
            normalize_into(p, cwd, &mut out).unwrap();
            assert_eq!(out.as_bytes(), normalize(p, cwd).as_slice(), "{p:?}");
        }
    }

    #[test]
    fn a_normal_path_is_copied_as_it_is() {
        for p in [&b"/"[..], b"/a/b", b"/a/.hidden/..x", b"/caf\xe9/\xff"] {
            assert_eq!(
                plainly_normal(p),
                !p.windows(2).any(|w| w == b"/."),
                "{p:?}"
            );
            let mut out = PathBuffer::new();
            normalize_into(p, b"/cwd", &mut out).unwrap();
            assert_eq!(out.as_bytes(), p);
            assert_eq!(normalize(p, b"/cwd"), p);
        }
    }

    #[test]
    fn only_plainly_normal_paths_skip_normalization() {
        for p in [
            &b"a/b"[..],
            b"/a/",
            b"/a//b",
            b"/a/./b",
            b"/a/..",
            b"/.",
            b"//",
            b"",
        ] {
            assert!(!plainly_normal(p), "{p:?}");
            let mut out = PathBuffer::new();
            normalize_into(p, b"/cwd", &mut out).unwrap();
            assert_eq!(out.as_bytes(), normalize(p, b"/cwd").as_slice(), "{p:?}");
        }
    }

    #[test]
    fn detects_normal_form() {
        assert!(is_normal_absolute(b"/"));
        assert!(is_normal_absolute(b"/a/b"));
        assert!(!is_normal_absolute(b"/a/"));
        assert!(!is_normal_absolute(b"/a//b"));
        assert!(!is_normal_absolute(b"/a/./b"));
        assert!(!is_normal_absolute(b"/a/.."));
        assert!(!is_normal_absolute(b"a/b"));
        assert!(is_normal_absolute(b"/a/.hidden/..x"));
    }

    #[test]
    fn strips_prefix_at_component_boundary() {
        assert_eq!(strip_prefix(b"/a/b/c", b"/a/b"), Some(&b"c"[..]));
        assert_eq!(strip_prefix(b"/a/b", b"/a/b"), Some(&b""[..]));
        assert_eq!(strip_prefix(b"/a/bc", b"/a/b"), None);
        assert_eq!(strip_prefix(b"/a", b"/"), Some(&b"a"[..]));
    }

    #[test]
    fn too_long_is_reported() {
        let long = vec![b'x'; PATH_MAX];
        let mut out = PathBuffer::new();
        assert_eq!(normalize_into(&long, b"/", &mut out), Err(TooLong));
    }
}
