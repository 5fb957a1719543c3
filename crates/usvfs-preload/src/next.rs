//! `dlsym(RTLD_NEXT, name)` for the whole table of originals at once. Each
//! `dlsym` call takes the dynamic linker's lock, finds the caller's object
//! and sets up error handling; for a hundred names that is most of the
//! constructor's time in every hooked process. Here the objects loaded after
//! this library (where `RTLD_NEXT` looks, in the same order) are listed once
//! and each name is found in their GNU hash tables directly, with `dlsym`'s
//! rules: a defined function, unversioned or the one non-hidden (default)
//! version. Anything unusual (an indirect function, an object without a GNU
//! hash table, a name found nowhere or ambiguously) is left to `dlsym`.

use std::ffi::CStr;

/// Objects searched; a process with more after this library than this is
/// left to `dlsym` for what they would hold.
const MAX_OBJECTS: usize = 64;

/// The dynamic symbol table of one loaded object.
#[derive(Clone, Copy)]
struct Object {
    symtab: *const libc::Elf64_Sym,
    strtab: *const u8,
    gnu_hash: *const u32,
    /// `DT_VERSYM`, or null for an object without symbol versions.
    versym: *const u16,
    base: usize,
}

/// The objects loaded after this library, in search order.
pub struct Next {
    objects: [Option<Object>; MAX_OBJECTS],
    len: usize,
    /// An object without a usable table, or more objects than fit: later
    /// ones are not searched (a name there would hide behind it), so what
    /// this search does not find is left to `dlsym`.
    incomplete: bool,
}

/// What [`Next::lookup`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    Address(usize),
    /// Ask `dlsym` (see the module comment).
    Unsure,
}

const DT_NULL: i64 = 0;
const DT_STRTAB: i64 = 5;
const DT_SYMTAB: i64 = 6;
const DT_GNU_HASH: i64 = 0x6fff_fef5;
const DT_VERSYM: i64 = 0x6fff_fff0;
const STT_FUNC: u8 = 2;
const STT_GNU_IFUNC: u8 = 10;
const STB_GLOBAL: u8 = 1;
const STB_WEAK: u8 = 2;

#[repr(C)]
struct Dyn {
    tag: i64,
    val: u64,
}

struct Walk {
    own: usize,
    seen_own: bool,
    next: Next,
}

impl Next {
    /// The objects after the one that holds address `own`.
    pub fn after(own: usize) -> Next {
        let mut w = Walk {
            own,
            seen_own: false,
            next: Next {
                objects: [None; MAX_OBJECTS],
                len: 0,
                incomplete: false,
            },
        };
        // SAFETY: the callback gets `w` back as its data pointer and only
        // reads the program headers glibc hands it.
        unsafe { libc::dl_iterate_phdr(Some(visit), (&raw mut w).cast()) };
        if !w.seen_own {
            w.next.incomplete = true;
            w.next.len = 0;
        }
        w.next
    }

    /// The address `dlsym(RTLD_NEXT, name)` gives, or `Unsure`.
    pub fn lookup(&self, name: &CStr) -> Found {
        let hash = gnu_hash(name.to_bytes());
        for o in self.objects[..self.len].iter().flatten() {
            // SAFETY: the tables of a loaded object, as its dynamic section
            // describes them.
            match unsafe { o.lookup(name.to_bytes(), hash) } {
                None => continue,
                Some(f) => return f,
            }
        }
        Found::Unsure
    }
}

/// `dl_iterate_phdr` callback: records each object after ours.
unsafe extern "C" fn visit(
    info: *mut libc::dl_phdr_info,
    _size: libc::size_t,
    data: *mut libc::c_void,
) -> libc::c_int {
    // SAFETY: `data` is the `Walk` passed to dl_iterate_phdr, `info` valid
    // for this call.
    let (w, info) = unsafe { (&mut *data.cast::<Walk>(), &*info) };
    let base = info.dlpi_addr as usize;
    // SAFETY: dlpi_phdr points to dlpi_phnum program headers.
    let phdrs = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) };
    if !w.seen_own {
        w.seen_own = phdrs.iter().any(|p| {
            let start = base.wrapping_add(p.p_vaddr as usize);
            p.p_type == libc::PT_LOAD && (start..start + p.p_memsz as usize).contains(&w.own)
        });
        return 0;
    }
    if w.next.incomplete {
        return 0;
    }
    let Some(dynamic) = phdrs.iter().find(|p| p.p_type == libc::PT_DYNAMIC) else {
        w.next.incomplete = true;
        return 0;
    };
    // SAFETY: the dynamic section of a loaded object, DT_NULL-terminated.
    let object = unsafe { object_of(base, base.wrapping_add(dynamic.p_vaddr as usize)) };
    match object {
        Some(o) if w.next.len < MAX_OBJECTS => {
            w.next.objects[w.next.len] = Some(o);
            w.next.len += 1;
        }
        _ => w.next.incomplete = true,
    }
    0
}

/// Reads the tables of an object from its dynamic section. glibc stores the
/// section's addresses relocated, the vDSO's (read-only) stay relative.
unsafe fn object_of(base: usize, dynamic: usize) -> Option<Object> {
    let (mut symtab, mut strtab, mut gnu_hash, mut versym) = (0usize, 0usize, 0usize, 0usize);
    let mut d = dynamic as *const Dyn;
    loop {
        // SAFETY: entries up to DT_NULL lie in the dynamic section.
        let e = unsafe { &*d };
        let v = e.val as usize;
        match e.tag {
            DT_NULL => break,
            DT_SYMTAB => symtab = v,
            DT_STRTAB => strtab = v,
            DT_GNU_HASH => gnu_hash = v,
            DT_VERSYM => versym = v,
            _ => {}
        }
        // SAFETY: not past DT_NULL yet.
        d = unsafe { d.add(1) };
    }
    if symtab == 0 || strtab == 0 || gnu_hash == 0 {
        return None;
    }
    let fix = |a: usize| if a != 0 && a < base { a + base } else { a };
    Some(Object {
        symtab: fix(symtab) as *const libc::Elf64_Sym,
        strtab: fix(strtab) as *const u8,
        gnu_hash: fix(gnu_hash) as *const u32,
        versym: fix(versym) as *const u16,
        base,
    })
}

fn gnu_hash(name: &[u8]) -> u32 {
    name.iter().fold(5381u32, |h, &c| {
        h.wrapping_mul(33).wrapping_add(u32::from(c))
    })
}

impl Object {
    /// `None`: not defined here. `Some(Address(a))`: dlsym's answer.
    unsafe fn lookup(&self, name: &[u8], hash: u32) -> Option<Found> {
        // SAFETY: the whole body reads the GNU hash table's layout, as the
        // ELF gABI extension defines it, over tables of a loaded object.
        unsafe {
            let h = self.gnu_hash;
            let (nbuckets, symoffset, bloom_size, bloom_shift) =
                (*h, *h.add(1), *h.add(2), *h.add(3));
            if nbuckets == 0 || bloom_size == 0 {
                return None;
            }
            let bloom = h.add(4) as *const u64;
            let word = *bloom.add(((hash / 64) % bloom_size) as usize);
            let mask = (1u64 << (hash % 64)) | (1u64 << ((hash >> bloom_shift) % 64));
            if word & mask != mask {
                return None;
            }
            let buckets = bloom.add(bloom_size as usize) as *const u32;
            let chain = buckets.add(nbuckets as usize);
            let mut idx = *buckets.add((hash % nbuckets) as usize);
            if idx < symoffset {
                return None;
            }
            // Versioned definitions that dlsym would take if there is only one.
            let (mut versioned, mut count) = (0usize, 0u32);
            loop {
                let h2 = *chain.add((idx - symoffset) as usize);
                if (h2 | 1) == (hash | 1) {
                    let sym = &*self.symtab.add(idx as usize);
                    let sname = CStr::from_ptr(self.strtab.add(sym.st_name as usize).cast());
                    let kind = sym.st_info & 0xf;
                    let bind = sym.st_info >> 4;
                    if sname.to_bytes() == name
                        && sym.st_shndx != 0
                        && (bind == STB_GLOBAL || bind == STB_WEAK)
                    {
                        if kind == STT_GNU_IFUNC {
                            return Some(Found::Unsure);
                        }
                        if kind == STT_FUNC {
                            let addr = self.base + sym.st_value as usize;
                            let ver = if self.versym.is_null() {
                                0
                            } else {
                                *self.versym.add(idx as usize)
                            };
                            if ver & 0x7fff < 2 {
                                return Some(Found::Address(addr));
                            }
                            if ver & 0x8000 == 0 {
                                versioned = addr;
                                count += 1;
                            }
                        }
                    }
                }
                if h2 & 1 != 0 {
                    break;
                }
                idx += 1;
            }
            match count {
                0 => None,
                1 => Some(Found::Address(versioned)),
                _ => Some(Found::Unsure),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same answers as `dlsym(RTLD_NEXT)` from this test program, for
    /// the C library's functions (including versioned ones such as
    /// `realpath` and `glob`, which have older hidden versions).
    #[test]
    fn agrees_with_dlsym() {
        let next = Next::after(agrees_with_dlsym as *const () as usize);
        assert!(next.len > 0);
        let mut found = 0;
        for name in [
            c"open",
            c"openat",
            c"stat",
            c"lstat",
            c"realpath",
            c"glob",
            c"glob64",
            c"fopen",
            c"readdir64",
            c"execve",
            c"posix_spawn",
            c"nftw",
            c"fts_open",
            c"syscall",
            c"dlopen",
            c"vfork",
            c"renameat2",
            c"__xstat",
            c"statx",
            c"opendir",
        ] {
            // SAFETY: a NUL-terminated name.
            let want = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) } as usize;
            match next.lookup(name) {
                Found::Address(a) => {
                    assert_eq!(a, want, "{name:?}");
                    found += 1;
                }
                Found::Unsure => {}
            }
        }
        assert!(found >= 15, "only {found} names found without dlsym");
        assert_eq!(
            next.lookup(c"no_such_function_anywhere"),
            Found::Unsure,
            "a missing name is left to dlsym"
        );
    }
}
