//! Unix sockets named by a path: `bind` creates the socket file where a new
//! file at that path of the view goes (the create target), `connect` (and
//! `sendto`/`sendmsg` with an address) reaches the socket the path names in
//! the view. Abstract and unnamed sockets, and other families, pass through.

#![allow(clippy::missing_safety_doc)]

use libc::{AT_FDCWD, c_char, c_int, c_void, sockaddr, sockaddr_un, socklen_t, ssize_t};

use usvfs_view::FileKind;
use usvfs_view::path::PathBuffer;
use usvfs_view::semantics::Probe;

use super::{Detour, hook_result, or_bypass, resolve_in_view};
use crate::guard::errno;
use crate::lookup::{Lookup, certainly_outside, virtual_target};
use crate::real;

/// The path of a named unix socket address (`None`: not one).
///
/// # Safety
/// `addr` is null or valid for `len` bytes.
unsafe fn socket_path<'a>(addr: *const sockaddr, len: socklen_t) -> Option<&'a [u8]> {
    let off = std::mem::offset_of!(sockaddr_un, sun_path);
    if addr.is_null() || (len as usize) <= off {
        return None;
    }
    // SAFETY: addr is valid for len bytes (contract), len > off >= 2.
    let family = unsafe { (*addr).sa_family };
    if c_int::from(family) != libc::AF_UNIX {
        return None;
    }
    let max = (len as usize - off).min(108);
    // SAFETY: sun_path starts at off and max bytes of it lie within len.
    let raw = unsafe { std::slice::from_raw_parts(addr.cast::<u8>().add(off), max) };
    let end = raw.iter().position(|&c| c == 0).unwrap_or(raw.len());
    // An abstract address starts with a NUL byte: empty here.
    (end > 0).then(|| &raw[..end])
}

/// A `sockaddr_un` naming physical path `p` (`ENAMETOOLONG` past 107 bytes,
/// as the kernel would say for the caller's own path).
fn address(p: &[u8]) -> Result<(sockaddr_un, socklen_t), i32> {
    // SAFETY: an all-zero sockaddr_un is a valid value.
    let mut a: sockaddr_un = unsafe { std::mem::zeroed() };
    if p.len() >= a.sun_path.len() {
        return Err(libc::ENAMETOOLONG);
    }
    a.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, s) in a.sun_path.iter_mut().zip(p) {
        *d = *s as c_char;
    }
    let len = std::mem::offset_of!(sockaddr_un, sun_path) + p.len() + 1;
    Ok((a, len as socklen_t))
}

/// # Safety
/// As `bind(2)`: `addr` is valid for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bind(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    // SAFETY: addr is valid for len bytes (our contract).
    if unsafe { socket_path(addr, len) }.is_none() {
        // SAFETY: the caller's arguments, passed on unchanged.
        return unsafe { real::bind(fd, addr, len) };
    }
    hook_result(
        // SAFETY: the caller's arguments, passed on unchanged.
        || unsafe { real::bind(fd, addr, len) },
        |st| {
            // SAFETY: addr is valid for len bytes (our contract).
            let p = or_bypass!(unsafe { socket_path(addr, len) });
            if certainly_outside(st, AT_FDCWD, p) {
                return Detour::Bypass;
            }
            let mut virt = PathBuffer::new();
            or_bypass!(virtual_target(st, AT_FDCWD, p, &mut virt));
            let v = st.view();
            match v.probe(virt.as_bytes(), false, FileKind::Other) {
                Probe::Outside => Detour::Bypass,
                Probe::Fail(e) => Detour::Error(e),
                Probe::Exists(_) => Detour::Error(libc::EADDRINUSE),
                Probe::New(place) => {
                    let (a, alen) = match address(place.loc.as_bytes()) {
                        Ok(x) => x,
                        Err(e) => {
                            place.abort(&v);
                            return Detour::Error(e);
                        }
                    };
                    // SAFETY: a complete sockaddr_un of length alen.
                    let r = unsafe { real::bind(fd, (&raw const a).cast(), alen) };
                    if r != 0 {
                        let e = errno();
                        place.abort(&v);
                        return Detour::Error(e);
                    }
                    place.commit(&v, FileKind::Other);
                    Detour::Success(0)
                }
            }
        },
    )
}

/// The physical address a named unix socket address reaches in the view:
/// `Success(Some(..))` to use instead, `Bypass` when the view does not
/// change it.
fn redirected(
    addr: *const sockaddr,
    len: socklen_t,
) -> impl FnOnce(&'static crate::state::State) -> Detour<(sockaddr_un, socklen_t)> {
    move |st| {
        // SAFETY: addr is valid for len bytes (the hooks' contract).
        let p = or_bypass!(unsafe { socket_path(addr, len) });
        let mut lk = Lookup::new();
        match resolve_in_view(st, AT_FDCWD, p, true, &mut lk) {
            Detour::Success(()) => {}
            Detour::Error(e) => return Detour::Error(e),
            Detour::Bypass => return Detour::Bypass,
        }
        match address(lk.phys.as_bytes()) {
            Ok(a) => Detour::Success(a),
            Err(e) => Detour::Error(e),
        }
    }
}

/// # Safety
/// As `connect(2)`: `addr` is valid for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    // SAFETY: addr is valid for len bytes (our contract).
    if unsafe { socket_path(addr, len) }.is_none() {
        // SAFETY: the caller's arguments, passed on unchanged.
        return unsafe { real::connect(fd, addr, len) };
    }
    super::hook(
        // SAFETY: the caller's arguments, passed on unchanged.
        || unsafe { real::connect(fd, addr, len) },
        redirected(addr, len),
        // SAFETY: a complete sockaddr_un of the given length.
        |_, (a, alen)| unsafe { real::connect(fd, (&raw const a).cast(), alen) },
    )
}

/// # Safety
/// As `sendto(2)`: `buf` is valid for `n` bytes, `addr` for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sendto(
    fd: c_int,
    buf: *const c_void,
    n: usize,
    flags: c_int,
    addr: *const sockaddr,
    len: socklen_t,
) -> ssize_t {
    // SAFETY: addr is null or valid for len bytes (our contract).
    if unsafe { socket_path(addr, len) }.is_none() {
        // SAFETY: the caller's arguments, passed on unchanged.
        return unsafe { real::sendto(fd, buf, n, flags, addr, len) };
    }
    super::hook(
        // SAFETY: the caller's arguments, passed on unchanged.
        || unsafe { real::sendto(fd, buf, n, flags, addr, len) },
        redirected(addr, len),
        // SAFETY: the caller's buffer; a complete sockaddr_un of length alen.
        |_, (a, alen)| unsafe { real::sendto(fd, buf, n, flags, (&raw const a).cast(), alen) },
    )
}
