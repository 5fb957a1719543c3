//! usvfs-mount: the mount engine. The program runs in a private mount
//! namespace (and a user namespace unless root) in which each destination
//! is covered by a FUSE file system this controller serves from the same
//! semantics library the preload engine uses (`usvfs_view::View`): every
//! program sees the view, static and Go programs and raw system calls
//! included, and everything outside the namespace sees the real disk.
//!
//! Use: [`mount_points`] for the snapshot, [`ns::Namespace::prepare`],
//! [`Server::start`] before spawning the program with
//! [`ns::Namespace::enter`] in its `pre_exec`, then [`Server::wait`].

mod descriptors;
mod fast_hash;
pub mod join;
pub mod ns;
mod server;
mod state;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use usvfs_view::Snapshot;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    #[error("path contains a NUL byte: {}", String::from_utf8_lossy(.0))]
    Nul(Vec<u8>),
    #[error("instance: {0}")]
    Instance(String),
    #[error("{0}")]
    Unsupported(String),
    /// The child's namespace setup failed at a step (`None`: it died
    /// before saying), with the errno the spawn reported.
    #[error("{}", ns::explain(*.0, *.1))]
    Namespace(Option<ns::Step>, Option<i32>),
    #[error("the FUSE server panicked")]
    Panicked,
}

/// The directories to cover: each destination that is a directory on disk,
/// else its nearest existing ancestor (a `--file` link's directory, a
/// destination the view makes up); only the outermost of nested ones.
pub fn mount_points(snap: &Snapshot<'_>) -> Result<Vec<Vec<u8>>, Error> {
    let mut points: Vec<Vec<u8>> = Vec::new();
    for l in 0..snap.layer_count() as u32 {
        let mut p = PathBuf::from(OsStr::from_bytes(snap.layer_dest(l)));
        while !p.is_dir() {
            if !p.pop() {
                break;
            }
        }
        points.push(p.as_os_str().as_bytes().to_vec());
    }
    points.sort();
    points.dedup();
    let all = points.clone();
    points.retain(|p| {
        !all.iter()
            .any(|q| q != p && usvfs_view::path::strip_prefix(p, q).is_some())
    });
    if let Some(p) = points.iter().find(|p| p.as_slice() == b"/") {
        return Err(Error::Unsupported(format!(
            "the mount engine would have to cover {} (a destination's nearest existing \
             directory): create the destination directory first",
            String::from_utf8_lossy(p)
        )));
    }
    if points.len() > ns::Namespace::MAX_POINTS {
        return Err(Error::Unsupported(format!(
            "the mount engine covers at most {} directories; this mapping needs {}",
            ns::Namespace::MAX_POINTS,
            points.len()
        )));
    }
    Ok(points)
}

/// The FUSE servers of one program: a thread receives the mounts'
/// descriptors from the child, then serves each mount until the kernel ends
/// it (the namespace's last process exited).
pub struct Server {
    thread: std::thread::JoinHandle<Result<(), Error>>,
}

impl Server {
    /// Starts serving instance `instance_dir` over `points` as soon as the
    /// child hands the descriptors over.
    pub fn start(
        instance_dir: &Path,
        points: Vec<Vec<u8>>,
        receiver: ns::Receiver,
    ) -> Result<Server, Error> {
        let shared = state::Shared::open(instance_dir)?;
        let _ = shared.snapshot();
        let thread = std::thread::Builder::new()
            .name("usvfs-mount".into())
            .spawn(move || serve(shared, points, receiver))
            .map_err(|e| Error::Io("starting the FUSE server thread".into(), e))?;
        Ok(Server { thread })
    }

    /// Waits until every mount ended (the namespace is gone). The error
    /// explains a failed namespace setup (`errno` from the failed spawn).
    pub fn wait(self, errno: Option<i32>) -> Result<(), Error> {
        match self.thread.join() {
            Ok(Err(Error::Namespace(step, _))) => Err(Error::Namespace(step, errno)),
            Ok(r) => r,
            Err(_) => Err(Error::Panicked),
        }
    }
}

fn serve(
    shared: &'static state::Shared,
    points: Vec<Vec<u8>>,
    receiver: ns::Receiver,
) -> Result<(), Error> {
    let fds = match receiver.receive() {
        Ok(fds) => fds,
        Err(step) => {
            drop(receiver);
            return Err(Error::Namespace(step, None));
        }
    };
    drop(receiver);
    let opens = server::Opens::from_env();
    tracing::debug!(?opens, "mount engine: serving opens");
    let mut threads = Vec::new();
    for (point, fd) in points.into_iter().zip(fds) {
        let fs = server::MountFs::new(point.clone(), shared, opens);
        let invalidator = fs.invalidator();
        let mut config = fuser::Config::default();
        config.acl = fuser::SessionACL::All;
        // Two workers per mount: requests of one program do not wait behind
        // another's slow read (each has its own cloned descriptor).
        config.n_threads = Some(2);
        config.clone_fd = true;
        let t = std::thread::Builder::new()
            .name("usvfs-fuse".into())
            .spawn(move || {
                let session = fuser::Session::from_fd(fs, fd, fuser::SessionACL::All, config);
                // Source changes the monitor applies (same process) drop
                // the kernel's cached entries, attributes and pages.
                let _listening = session.as_ref().ok().map(|s| {
                    let notifier = s.notifier();
                    usvfs_view::source_events::subscribe(move |virt, what| {
                        invalidator.changed(&notifier, virt, what)
                    })
                });
                match session.and_then(|s| s.run()) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::ENODEV) => {}
                    Err(e) => tracing::debug!(
                        point = %String::from_utf8_lossy(&point),
                        error = %e,
                        "FUSE session ended"
                    ),
                }
            })
            .map_err(|e| Error::Io("starting a FUSE server thread".into(), e))?;
        threads.push(t);
    }
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}
