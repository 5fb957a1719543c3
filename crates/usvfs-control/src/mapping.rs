//! The mapping model: an ordered list of link rules plus skip lists and the
//! executable blacklist. Later rules win over earlier ones.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::path;

pub use usvfs_view::flags::LinkFlags;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkKind {
    File,
    Directory,
}

/// One link: `source` (a real path) appears at `destination` (a virtual path).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rule {
    pub kind: LinkKind,
    pub source: PathBuf,
    pub destination: PathBuf,
    pub flags: LinkFlags,
    /// The skip lists as they were when the rule was added (usvfs applies
    /// them at link time).
    pub skip_suffixes: Vec<OsString>,
    pub skip_dirs: Vec<OsString>,
}

impl Rule {
    pub fn is_skipped_file(&self, name: &OsStr) -> bool {
        suffix_matches(&self.skip_suffixes, name)
    }

    pub fn is_skipped_dir(&self, name: &OsStr) -> bool {
        dir_matches(&self.skip_dirs, name)
    }
}

fn suffix_matches(list: &[OsString], name: &OsStr) -> bool {
    let n = name.as_bytes();
    list.iter().any(|s| {
        let s = s.as_bytes();
        n.len() >= s.len() && n[n.len() - s.len()..].eq_ignore_ascii_case(s)
    })
}

fn dir_matches(list: &[OsString], name: &OsStr) -> bool {
    let n = name.as_bytes();
    list.iter().any(|s| n.eq_ignore_ascii_case(s.as_bytes()))
}

/// The whole mapping of an instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mapping {
    pub rules: Vec<Rule>,
    /// File-name suffixes not linked by rules added from now on (case-insensitive).
    pub skip_suffixes: Vec<OsString>,
    /// Directory names not linked by rules added from now on (case-insensitive).
    pub skip_dirs: Vec<OsString>,
    /// Executables (base names or full paths) started outside the view.
    pub blacklist: Vec<OsString>,
    /// Names compare case-insensitively at and below directory destinations
    /// (Unicode simple case folding, see `usvfs_view::fold`): the index
    /// merges names that differ only in case, the destinations' real
    /// contents included, and lookups in any spelling find the winner.
    pub case_insensitive: bool,
}

pub(crate) fn absolute(p: &Path) -> Result<PathBuf> {
    let cwd =
        std::env::current_dir().map_err(|e| Error::io("reading the current directory", ".", e))?;
    let n = path::normalize(p.as_os_str().as_bytes(), cwd.as_os_str().as_bytes());
    if n.len() >= path::PATH_MAX {
        return Err(Error::PathTooLong { path: p.into() });
    }
    Ok(PathBuf::from(OsString::from_vec(n)))
}

impl Mapping {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a directory link after checking the source (exists, is a readable
    /// directory, no cycle with the destination). Paths are made absolute.
    pub fn link_directory(
        &mut self,
        source: &Path,
        destination: &Path,
        flags: LinkFlags,
    ) -> Result<()> {
        let source = absolute(source)?;
        let destination = absolute(destination)?;
        check_source(&source, LinkKind::Directory)?;
        let s = source.as_os_str().as_bytes();
        let d = destination.as_os_str().as_bytes();
        if path::strip_prefix(d, s).is_some() {
            return Err(Error::DestinationInsideSource {
                source_dir: source,
                dest: destination,
            });
        }
        if path::strip_prefix(s, d).is_some() {
            return Err(Error::SourceInsideDestination {
                source_dir: source,
                dest: destination,
            });
        }
        // A destination reached through a symlink is the same place: check real paths too.
        if let (Ok(rs), Ok(rd)) = (source.canonicalize(), destination.canonicalize()) {
            let (rs, rd) = (rs.as_os_str().as_bytes(), rd.as_os_str().as_bytes());
            if path::strip_prefix(rd, rs).is_some() {
                return Err(Error::DestinationInsideSource {
                    source_dir: source,
                    dest: destination,
                });
            }
            if path::strip_prefix(rs, rd).is_some() {
                return Err(Error::SourceInsideDestination {
                    source_dir: source,
                    dest: destination,
                });
            }
        }
        if flags.has(LinkFlags::FAIL_IF_SKIPPED) && self.is_skipped_dir(file_name_os(&source)) {
            return Err(Error::Skipped { path: source });
        }
        self.push_rule(LinkKind::Directory, source, destination, flags);
        Ok(())
    }

    /// Appends a checked rule with the skip lists as they are now.
    fn push_rule(
        &mut self,
        kind: LinkKind,
        source: PathBuf,
        destination: PathBuf,
        flags: LinkFlags,
    ) {
        self.rules.push(Rule {
            kind,
            source,
            destination,
            flags,
            skip_suffixes: self.skip_suffixes.clone(),
            skip_dirs: self.skip_dirs.clone(),
        });
    }

    /// Adds a file link after checking the source.
    pub fn link_file(&mut self, source: &Path, destination: &Path, flags: LinkFlags) -> Result<()> {
        let source = absolute(source)?;
        let destination = absolute(destination)?;
        check_source(&source, LinkKind::File)?;
        if flags.has(LinkFlags::FAIL_IF_EXISTS)
            && self.rules.iter().any(|r| r.destination == destination)
        {
            return Err(Error::DestinationExists { path: destination });
        }
        if flags.has(LinkFlags::FAIL_IF_SKIPPED) && self.is_skipped_file(file_name_os(&source)) {
            return Err(Error::Skipped { path: source });
        }
        self.push_rule(LinkKind::File, source, destination, flags);
        Ok(())
    }

    pub fn is_skipped_file(&self, name: &OsStr) -> bool {
        let n = name.as_bytes();
        self.skip_suffixes.iter().any(|s| {
            let s = s.as_bytes();
            n.len() >= s.len() && n[n.len() - s.len()..].eq_ignore_ascii_case(s)
        })
    }

    pub fn is_skipped_dir(&self, name: &OsStr) -> bool {
        let n = name.as_bytes();
        self.skip_dirs
            .iter()
            .any(|s| n.eq_ignore_ascii_case(s.as_bytes()))
    }
}

fn file_name_os(p: &Path) -> &OsStr {
    OsStr::from_bytes(path::file_name(p.as_os_str().as_bytes()))
}

fn check_source(source: &Path, kind: LinkKind) -> Result<()> {
    let meta = match std::fs::metadata(source) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::SourceMissing {
                path: source.into(),
            });
        }
        Err(e) => {
            return Err(Error::SourceUnreadable {
                path: source.into(),
                cause: e,
            });
        }
    };
    match kind {
        LinkKind::Directory => {
            if !meta.is_dir() {
                return Err(Error::SourceNotDirectory {
                    path: source.into(),
                });
            }
            if let Err(e) = std::fs::read_dir(source) {
                return Err(Error::SourceUnreadable {
                    path: source.into(),
                    cause: e,
                });
            }
        }
        LinkKind::File => {
            if meta.is_dir() {
                return Err(Error::SourceIsDirectory {
                    path: source.into(),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_cycles_and_missing_sources() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        std::fs::create_dir_all(src.join("inner")).unwrap();
        let mut m = Mapping::new();
        let flags = LinkFlags(LinkFlags::RECURSIVE);
        assert!(matches!(
            m.link_directory(&src, &src.join("inner"), flags),
            Err(Error::DestinationInsideSource { .. })
        ));
        assert!(matches!(
            m.link_directory(&src.join("inner"), &src, flags),
            Err(Error::SourceInsideDestination { .. })
        ));
        assert!(matches!(
            m.link_directory(&t.path().join("nope"), &t.path().join("d"), flags),
            Err(Error::SourceMissing { .. })
        ));
        assert!(m.rules.is_empty());
        m.link_directory(&src, &t.path().join("dest"), flags)
            .unwrap();
        assert_eq!(m.rules.len(), 1);
    }

    #[test]
    fn skip_lists_are_case_insensitive() {
        let mut m = Mapping::new();
        m.skip_suffixes.push(".BAK".into());
        m.skip_dirs.push("Backup".into());
        assert!(m.is_skipped_file(OsStr::new("save.bak")));
        assert!(!m.is_skipped_file(OsStr::new("bak")));
        assert!(m.is_skipped_dir(OsStr::new("BACKUP")));
        assert!(!m.is_skipped_dir(OsStr::new("backups")));
    }
}
