//! Programs a preload engine cannot follow: statically linked ones (no
//! dynamic loader to preload anything), set-id ones and ones with file
//! capabilities (the loader ignores `LD_PRELOAD` for them), and Go programs
//! (they make raw system calls even when linked dynamically). One
//! implementation for the controllers (which refuse such a program) and the
//! preload engine (which warns, or refuses under `--strict`, at each exec).
//!
//! Cheap and allocation-free: raw system calls, the headers read with
//! `pread` into stack buffers, nothing cached. Little-endian ELF files are
//! examined (a 32-bit one is unfollowable by a 64-bit library); anything
//! else counts as followable.

use std::os::fd::{AsFd, BorrowedFd};

use rustix::fs::{CWD, Mode, OFlags};

/// Why a program runs outside the view when a hooked process starts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unfollowable {
    Static,
    SetId,
    Capabilities,
    Go,
    /// A 32-bit program: the loader ignores a 64-bit preload library.
    Bits32,
}

impl Unfollowable {
    /// Completes "`<program>` ...".
    pub fn describe(self) -> &'static str {
        match self {
            Unfollowable::Static => "is statically linked",
            Unfollowable::SetId => "is set-user-ID or set-group-ID",
            Unfollowable::Capabilities => "has file capabilities",
            Unfollowable::Go => "is a Go program (it makes system calls without the C library)",
            Unfollowable::Bits32 => "is a 32-bit program (the preload library is 64-bit)",
        }
    }
}

/// What the ELF headers say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ElfInfo {
    /// No `PT_INTERP`: no dynamic loader runs, so nothing is preloaded.
    pub is_static: bool,
    /// A `.note.go.buildid` note or a `.go.buildinfo` section.
    pub go: bool,
    /// ELFCLASS32 (headers not examined further).
    pub bits32: bool,
}

const PT_INTERP: u32 = 3;
const PT_NOTE: u32 = 4;
/// The Go linker's build-id note: owner "Go", type 4.
const NT_GO_BUILDID: u32 = 4;

/// Bytes of a file through one stack window refilled by `pread`: a few
/// system calls for headers that lie close together.
struct Reader<'f> {
    fd: BorrowedFd<'f>,
    buf: [u8; WINDOW],
    start: u64,
    len: usize,
}

const WINDOW: usize = 1024;

impl<'f> Reader<'f> {
    fn new(fd: BorrowedFd<'f>) -> Self {
        Reader {
            fd,
            buf: [0; WINDOW],
            start: 0,
            len: 0,
        }
    }

    /// `n` (at most [`WINDOW`]) bytes at `off`; `None` past the end.
    fn at(&mut self, off: u64, n: usize) -> Option<&[u8]> {
        if n > WINDOW {
            return None;
        }
        let end = off.checked_add(n as u64)?;
        if off < self.start || end > self.start + self.len as u64 {
            self.start = off;
            self.len = 0;
            while self.len < WINDOW {
                let want = WINDOW - self.len;
                match rustix::io::pread(self.fd, &mut self.buf[self.len..], off + self.len as u64) {
                    Ok(k) => {
                        self.len += k;
                        // Short: the end of the file.
                        if k < want {
                            break;
                        }
                    }
                    Err(rustix::io::Errno::INTR) => {}
                    Err(_) => break,
                }
            }
            if self.len < n {
                return None;
            }
        }
        let s = (off - self.start) as usize;
        Some(&self.buf[s..s + n])
    }
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(a)
}

/// Reads the ELF headers of `fd`; `None` when it is not a 64-bit
/// little-endian ELF file (a script, another architecture's format).
pub fn elf_info(fd: BorrowedFd<'_>) -> Option<ElfInfo> {
    let mut r = Reader::new(fd);
    let mut eh = [0u8; 64];
    eh.copy_from_slice(r.at(0, 64)?);
    if &eh[..4] != b"\x7fELF" || eh[5] != 1 {
        return None;
    }
    if eh[4] == 1 && cfg!(target_pointer_width = "64") {
        return Some(ElfInfo {
            bits32: true,
            ..ElfInfo::default()
        });
    }
    if eh[4] != 2 {
        return None;
    }
    let phoff = u64_at(&eh, 32);
    let (phentsize, phnum) = (u16_at(&eh, 54) as u64, u16_at(&eh, 56) as u64);
    if phentsize < 56 {
        return None;
    }
    let mut info = ElfInfo {
        is_static: true,
        ..ElfInfo::default()
    };
    let mut notes: [(u64, u64); 8] = [(0, 0); 8];
    let mut n_notes = 0;
    for i in 0..phnum.min(256) {
        let ph = r.at(phoff + i * phentsize, 56)?;
        match u32_at(ph, 0) {
            PT_INTERP => info.is_static = false,
            PT_NOTE if n_notes < notes.len() => {
                notes[n_notes] = (u64_at(ph, 8), u64_at(ph, 32));
                n_notes += 1;
            }
            _ => {}
        }
    }
    info.go = notes[..n_notes]
        .iter()
        .any(|&(off, size)| has_go_note(&mut r, off, size))
        || has_go_section(fd, &eh);
    Some(info)
}

/// A note segment at `off` (`size` bytes) holds the Go build-id note.
fn has_go_note(r: &mut Reader<'_>, off: u64, size: u64) -> bool {
    let (mut pos, end) = (off, off.saturating_add(size.min(64 * 1024)));
    while pos + 16 <= end {
        let Some(h) = r.at(pos, 16) else {
            return false;
        };
        let (namesz, descsz, kind) = (u32_at(h, 0) as u64, u32_at(h, 4) as u64, u32_at(h, 8));
        if namesz == 3 && kind == NT_GO_BUILDID && &h[12..15] == b"Go\0" {
            return true;
        }
        pos += 12 + namesz.next_multiple_of(4) + descsz.next_multiple_of(4);
    }
    false
}

/// The section table names a `.go.buildinfo` section (a Go program built
/// without a build ID has no note).
fn has_go_section(fd: BorrowedFd<'_>, eh: &[u8; 64]) -> bool {
    const WANT: &[u8] = b".go.buildinfo\0";
    let shoff = u64_at(eh, 40);
    let (shentsize, shnum, shstrndx) = (
        u16_at(eh, 58) as u64,
        u16_at(eh, 60) as u64,
        u16_at(eh, 62) as u64,
    );
    if shoff == 0 || shentsize < 64 || shstrndx >= shnum {
        return false;
    }
    // Two windows: the section table, and the names it points into.
    let (mut table, mut names) = (Reader::new(fd), Reader::new(fd));
    let Some((strtab, strsize)) = table
        .at(shoff + shstrndx * shentsize, 64)
        .map(|sh| (u64_at(sh, 24), u64_at(sh, 32)))
    else {
        return false;
    };
    // Most programs' section names fit one window: without the name among
    // them (any program but Go's), the table need not be read.
    if strsize <= WINDOW as u64 {
        let Some(all) = names.at(strtab, strsize as usize) else {
            return false;
        };
        if !all.windows(WANT.len()).any(|w| w == WANT) {
            return false;
        }
    }
    for i in 0..shnum.min(1024) {
        let Some(sh) = table.at(shoff + i * shentsize, 64) else {
            return false;
        };
        let at = strtab + u64::from(u32_at(sh, 0));
        if names.at(at, WANT.len()) == Some(WANT) {
            return true;
        }
    }
    false
}

/// The file carries capabilities (a `security.capability` attribute).
fn has_capabilities(fd: BorrowedFd<'_>) -> bool {
    // Room for every version of the attribute (20 or 24 bytes).
    let mut value = [0u8; 64];
    match rustix::fs::fgetxattr(fd, c"security.capability", &mut value[..]) {
        Ok(n) => n > 0,
        Err(e) => e == rustix::io::Errno::RANGE,
    }
}

/// Whether the process calling this would start `fd`'s program with the
/// loader in secure mode (`AT_SECURE`), or outside the C library.
pub fn unfollowable_fd(fd: BorrowedFd<'_>, name: &[u8]) -> Option<Unfollowable> {
    let st = rustix::fs::fstat(fd).ok()?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return None;
    }
    // Only what applies is asked (each is a system call in every exec of a
    // hooked process): the ids when a set-id bit is there, the mount's
    // flags when something would make the program unfollowable.
    let set_id = (st.st_mode & libc::S_ISUID != 0
        && st.st_uid != rustix::process::geteuid().as_raw())
        || (st.st_mode & libc::S_ISGID != 0 && st.st_gid != rustix::process::getegid().as_raw());
    // Root keeps its identity and gains nothing: no secure mode then.
    let caps = || !rustix::process::getuid().is_root() && has_capabilities(fd);
    if set_id || caps() {
        // A nosuid mount ignores set-id bits and file capabilities.
        let nosuid = rustix::fs::fstatvfs(fd)
            .is_ok_and(|v| v.f_flag.contains(rustix::fs::StatVfsMountFlags::NOSUID));
        if !nosuid {
            return Some(if set_id {
                Unfollowable::SetId
            } else {
                Unfollowable::Capabilities
            });
        }
    }
    let info = elf_info(fd)?;
    if info.bits32 {
        return Some(Unfollowable::Bits32);
    }
    if info.go {
        return Some(Unfollowable::Go);
    }
    // The dynamic loader run as a program has no PT_INTERP itself, and
    // honours LD_PRELOAD for the program it loads.
    let base = crate::path::file_name(name);
    let loader =
        base.starts_with(b"ld-linux") || base.starts_with(b"ld.so") || base.starts_with(b"ld64.so");
    (info.is_static && !loader).then_some(Unfollowable::Static)
}

/// [`unfollowable_fd`] for a physical path (`None` when it cannot be read:
/// the exec itself reports why).
pub fn unfollowable(path: &[u8]) -> Option<Unfollowable> {
    let fd = rustix::fs::openat(
        CWD,
        path,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    )
    .ok()?;
    unfollowable_fd(fd.as_fd(), path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_programs_are_followable() {
        assert_eq!(unfollowable(b"/bin/ls"), None);
        assert_eq!(unfollowable(b"/bin/sh"), None);
        let f = std::fs::File::open("/bin/ls").unwrap();
        let i = elf_info(f.as_fd()).unwrap();
        assert!(!i.is_static && !i.go);
    }

    #[test]
    fn file_capabilities_are_seen() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("prog");
        std::fs::copy("/bin/true", &p).unwrap();
        let f = std::fs::File::open(&p).unwrap();
        assert!(!has_capabilities(f.as_fd()));
        let set = std::process::Command::new("setcap")
            .arg("cap_net_bind_service+ep")
            .arg(&p)
            .status();
        if !set.is_ok_and(|s| s.success()) {
            return; // no setcap (or no privilege): the integration test says more
        }
        assert!(has_capabilities(f.as_fd()));
    }

    #[test]
    fn scripts_and_missing_files_are_not_examined() {
        let t = tempfile::tempdir().unwrap();
        let s = t.path().join("s.sh");
        std::fs::write(&s, "#!/bin/sh\n").unwrap();
        let f = std::fs::File::open(&s).unwrap();
        assert_eq!(elf_info(f.as_fd()), None);
        assert_eq!(unfollowable(b"/no/such/program"), None);
    }

    /// A hand-made ELF header with one program header: PT_INTERP or not.
    fn tiny_elf(interp: bool, go_note: bool) -> Vec<u8> {
        let mut b = vec![0u8; 64 + 2 * 56 + 32];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&2u16.to_le_bytes());
        let ph0 = 64;
        b[ph0..ph0 + 4].copy_from_slice(&(if interp { PT_INTERP } else { 1 }).to_le_bytes());
        let ph1 = 64 + 56;
        let note = 64 + 2 * 56;
        b[ph1..ph1 + 4].copy_from_slice(&PT_NOTE.to_le_bytes());
        b[ph1 + 8..ph1 + 16].copy_from_slice(&(note as u64).to_le_bytes());
        b[ph1 + 32..ph1 + 40].copy_from_slice(&20u64.to_le_bytes());
        b[note..note + 4].copy_from_slice(&3u32.to_le_bytes());
        b[note + 4..note + 8].copy_from_slice(&4u32.to_le_bytes());
        let kind = if go_note { NT_GO_BUILDID } else { 1 };
        b[note + 8..note + 12].copy_from_slice(&kind.to_le_bytes());
        b[note + 12..note + 15].copy_from_slice(if go_note { b"Go\0" } else { b"GN\0" });
        b
    }

    /// `elf` with a section table of `names` (and the name table itself,
    /// its own name padded by `pad` bytes), like a linker writes it: the
    /// names first, then the table, at the end of the file.
    fn with_sections(mut elf: Vec<u8>, names: &[&[u8]], pad: usize) -> Vec<u8> {
        let strtab_at = elf.len();
        let mut strtab = vec![0u8];
        let mut name_at = Vec::new();
        for n in names.iter().copied().chain([&b".shstrtab"[..]]) {
            name_at.push(strtab.len() as u32);
            strtab.extend_from_slice(n);
            strtab.push(0);
        }
        strtab.extend(std::iter::repeat_n(b'x', pad));
        strtab.push(0);
        elf.extend_from_slice(&strtab);
        let shoff = elf.len();
        elf.extend_from_slice(&[0u8; 64]); // the null section
        for (i, &at) in name_at.iter().enumerate() {
            let mut sh = [0u8; 64];
            sh[..4].copy_from_slice(&at.to_le_bytes());
            if i == names.len() {
                sh[24..32].copy_from_slice(&(strtab_at as u64).to_le_bytes());
                sh[32..40].copy_from_slice(&(strtab.len() as u64).to_le_bytes());
            }
            elf.extend_from_slice(&sh);
        }
        elf[40..48].copy_from_slice(&(shoff as u64).to_le_bytes());
        elf[58..60].copy_from_slice(&64u16.to_le_bytes());
        elf[60..62].copy_from_slice(&(names.len() as u16 + 2).to_le_bytes());
        elf[62..64].copy_from_slice(&(names.len() as u16 + 1).to_le_bytes());
        elf
    }

    #[test]
    fn the_go_section_is_found_by_name_with_short_and_long_name_tables() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("prog");
        let go: &[&[u8]] = &[b".text", b".go.buildinfo", b".data"];
        let other: &[&[u8]] = &[b".text", b".go.buildinfoX", b".data"];
        // pad 0: the names fit one window (checked at once); 3000: they do
        // not, and each section's name is read.
        for pad in [0, 3000] {
            for (names, want) in [(go, true), (other, false)] {
                std::fs::write(&p, with_sections(tiny_elf(true, false), names, pad)).unwrap();
                let f = std::fs::File::open(&p).unwrap();
                assert_eq!(
                    elf_info(f.as_fd()).unwrap().go,
                    want,
                    "pad {pad}, names {names:?}"
                );
            }
        }
    }

    #[test]
    fn headers_tell_static_dynamic_and_go() {
        let t = tempfile::tempdir().unwrap();
        for (interp, go, want) in [
            (true, false, None),
            (false, false, Some(Unfollowable::Static)),
            (true, true, Some(Unfollowable::Go)),
            (false, true, Some(Unfollowable::Go)),
        ] {
            let p = t.path().join("prog");
            std::fs::write(&p, tiny_elf(interp, go)).unwrap();
            let pb = p.as_os_str().as_encoded_bytes();
            assert_eq!(unfollowable(pb), want, "interp={interp} go={go}");
            // The loader run as a program is followable.
            let ld = t.path().join("ld-linux-x86-64.so.2");
            std::fs::write(&ld, tiny_elf(false, false)).unwrap();
            assert_eq!(unfollowable(ld.as_os_str().as_encoded_bytes()), None);
        }
    }
}
