//! Typed errors of the control library. Every variant names the path it is about.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("source {path:?} does not exist: check the path, or create it first")]
    SourceMissing { path: PathBuf },
    #[error("source {path:?} cannot be read ({cause}): fix its permissions")]
    SourceUnreadable { path: PathBuf, cause: io::Error },
    #[error("source {path:?} is not a directory: use a file link (--file) for single files")]
    SourceNotDirectory { path: PathBuf },
    #[error("source {path:?} is a directory: use a directory link (--dir) for directories")]
    SourceIsDirectory { path: PathBuf },
    #[error(
        "destination {dest:?} lies inside its own source {source_dir:?}: this would make a cycle; pick a destination outside the source"
    )]
    DestinationInsideSource { source_dir: PathBuf, dest: PathBuf },
    #[error(
        "source {source_dir:?} lies inside its destination {dest:?}: this would make a cycle; move the source out of the destination"
    )]
    SourceInsideDestination { source_dir: PathBuf, dest: PathBuf },
    #[error(
        "destination {path:?} already exists in the view and the link asks to fail if it exists"
    )]
    DestinationExists { path: PathBuf },
    #[error("source {path:?} is skipped by the skip lists and the link asks to fail if skipped")]
    Skipped { path: PathBuf },
    #[error("path {path:?} is too long (over 4096 bytes)")]
    PathTooLong { path: PathBuf },
    #[error("profile {path:?}: {message}")]
    Profile { path: PathBuf, message: String },
    #[error("instance {name:?}: {message}")]
    Instance { name: String, message: String },
    /// `USVFS_RUNTIME_DIR` names no usable directory (before any instance).
    #[error("{0}")]
    RuntimeDir(String),
    /// The mount engine shows the view to every program in its namespace.
    #[error(
        "the mount engine cannot run programs outside the view (blacklist: {names}): every program \
         in its namespace sees it; drop the blacklist (--blacklist, a profile's blacklist) or use \
         the preload engine (--engine preload; in Python engine=\"preload\")"
    )]
    BlacklistWithMount { names: String },
    #[error(
        "a wineserver (pid {pid}) is already running for the Wine prefix {prefix:?} outside this view: \
         programs of the view would share it and see the real disk. Stop it first \
         (`WINEPREFIX={prefix:?} wineserver -k`), or start every program of this prefix inside the view"
    )]
    WineServerRunning { prefix: PathBuf, pid: i32 },
    #[error("Wine prefix {prefix:?}: {message}")]
    Wine { prefix: PathBuf, message: String },
    /// A Mod Organizer 2 instance that cannot be read (names the file and line).
    #[error(transparent)]
    Mo2(#[from] crate::mo2::Mo2Error),
    /// An I/O failure, or a bad index or journal (the view library's
    /// errors, which name the path).
    #[error(transparent)]
    View(#[from] usvfs_view::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(context: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::View(usvfs_view::Error::io(context, path, source))
    }
}
