//! Typed errors of the view library (opening an index or a journal). Every
//! variant names the path it is about and says what to do.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("index {path:?}: {message}")]
    Index { path: PathBuf, message: String },
    #[error("{context} {path:?}: {cause}")]
    Io {
        context: &'static str,
        path: PathBuf,
        cause: io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(context: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            context,
            path: path.into(),
            cause: source,
        }
    }
}
