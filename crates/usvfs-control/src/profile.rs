//! TOML profiles: a file that describes a mapping, rule by rule, in priority
//! order (later wins). Relative paths are taken from the profile's directory.
//!
//! ```toml
//! instance = "skyrim"            # optional
//! skip_suffixes = [".bak"]       # optional
//! skip_dirs = [".git"]           # optional
//! blacklist = ["crashreporter"]  # optional
//! log_level = "warn"             # optional: off, error, warn, info, debug, trace
//! case_insensitive = true        # optional: names match in any case (Wine, Proton)
//! monitor = true                 # optional: every link's source is monitored
//! mo2 = { instance = "mo2", profile = "Default" }  # optional: a Mod Organizer 2
//!                                # profile's mods (see `crate::mo2`), before the links;
//!                                # also `data_dir = "…"`
//! engine = "mount"               # optional: preload (default) or mount
//!
//! [[link]]
//! dir = "mods/a"                 # or file = "…"
//! to = "game/data"
//! recursive = true               # optional, default true
//! create_target = false          # optional
//! monitor = false                # optional: files added to or removed from
//!                                # the source show while running
//! ```

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::mapping::{LinkFlags, Mapping};
use crate::path;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    instance: Option<String>,
    #[serde(default)]
    skip_suffixes: Vec<String>,
    #[serde(default)]
    skip_dirs: Vec<String>,
    #[serde(default)]
    blacklist: Vec<String>,
    log_level: Option<String>,
    #[serde(default)]
    case_insensitive: bool,
    #[serde(default)]
    monitor: bool,
    engine: Option<String>,
    #[serde(default)]
    link: Vec<LinkEntry>,
    mo2: Option<Mo2Entry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Mo2Entry {
    instance: PathBuf,
    profile: Option<String>,
    data_dir: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkEntry {
    dir: Option<PathBuf>,
    file: Option<PathBuf>,
    to: PathBuf,
    #[serde(default = "yes")]
    recursive: bool,
    #[serde(default)]
    create_target: bool,
    #[serde(default)]
    fail_if_exists: bool,
    #[serde(default)]
    monitor: bool,
}

fn yes() -> bool {
    true
}

/// A parsed profile: the mapping plus the instance name and log level it
/// asks for.
#[derive(Debug, Clone)]
pub struct Profile {
    pub instance: Option<String>,
    /// One of [`crate::instance::LOG_LEVELS`], lowercase.
    pub log_level: Option<String>,
    /// The engine it asks for (`usvfs run --engine` overrides it).
    pub engine: Option<crate::engine::Engine>,
    pub mapping: Mapping,
    /// Names of the rules an MO2 profile added (by rule index; `None` for
    /// the profile's own links), for reports.
    pub labels: Vec<Option<String>>,
    /// The rules that are MO2 mods or its overwrite folder (by rule index).
    pub mo2_data: Vec<bool>,
    /// Warnings of reading the MO2 instance (mods without a folder, ...).
    pub warnings: Vec<String>,
}

/// Loads a profile; rules are validated like command-line rules.
pub fn load(file: &Path) -> Result<Profile> {
    let err = |message: String| Error::Profile {
        path: file.into(),
        message,
    };
    let text = std::fs::read_to_string(file).map_err(|e| err(format!("cannot read it: {e}")))?;
    if text.trim().is_empty() {
        return Err(err(
            "the profile is empty: add at least one [[link]] table".into()
        ));
    }
    let parsed: ProfileFile =
        toml::from_str(&text).map_err(|e| err(format!("malformed TOML: {e}")))?;
    if parsed.link.is_empty() && parsed.mo2.is_none() {
        return Err(err(
            "no [[link]] tables and no mo2 key: add at least one rule".into(),
        ));
    }
    let log_level = match parsed.log_level {
        None => None,
        Some(l) => Some(crate::instance::parse_log_level(&l).ok_or_else(|| {
            err(format!(
                "log_level {l:?} is not a log level: use one of {}",
                crate::instance::LOG_LEVELS.join(", ")
            ))
        })?),
    };
    let engine = match parsed.engine.as_deref() {
        None => None,
        Some(e) => Some(crate::engine::Engine::from_name(e).ok_or_else(|| {
            err(format!(
                "engine {e:?} is not an engine: use \"preload\" or \"mount\""
            ))
        })?),
    };
    let base = file.parent().unwrap_or(Path::new("."));
    let base = if base.as_os_str().is_empty() {
        Path::new(".")
    } else {
        base
    };
    let cwd =
        std::env::current_dir().map_err(|e| Error::io("reading the current directory", ".", e))?;
    let abs_base = path::normalize(base.as_os_str().as_bytes(), cwd.as_os_str().as_bytes());
    let resolve = |p: &Path| -> PathBuf {
        PathBuf::from(OsString::from_vec(path::normalize(
            p.as_os_str().as_bytes(),
            &abs_base,
        )))
    };
    let mut mapping = Mapping::new();
    mapping.skip_suffixes = parsed
        .skip_suffixes
        .into_iter()
        .map(OsString::from)
        .collect();
    mapping.skip_dirs = parsed.skip_dirs.into_iter().map(OsString::from).collect();
    mapping.blacklist = parsed.blacklist.into_iter().map(OsString::from).collect();
    mapping.case_insensitive = parsed.case_insensitive;
    let mut labels = Vec::new();
    let mut warnings = Vec::new();
    let mut mo2_data = Vec::new();
    if let Some(mo2) = &parsed.mo2 {
        let loaded = crate::mo2::add_to_mapping(
            &mut mapping,
            &crate::mo2::Options {
                instance: resolve(&mo2.instance),
                profile: mo2.profile.clone(),
                data_dir: mo2.data_dir.as_deref().map(resolve),
                wine_prefix: crate::mo2::env_prefix(),
            },
        )?;
        labels = crate::mo2::labels(&mapping, &loaded);
        mo2_data = crate::mo2::data_layers(&mapping, &loaded);
        warnings = loaded.warnings;
        if parsed.monitor {
            for r in &mut mapping.rules {
                r.flags.0 |= LinkFlags::MONITOR_CHANGES;
            }
        }
    }
    for (i, l) in parsed.link.iter().enumerate() {
        let mut flags = 0;
        if l.recursive {
            flags |= LinkFlags::RECURSIVE;
        }
        if l.monitor || parsed.monitor {
            flags |= LinkFlags::MONITOR_CHANGES;
        }
        if l.create_target {
            flags |= LinkFlags::CREATE_TARGET;
        }
        if l.fail_if_exists {
            flags |= LinkFlags::FAIL_IF_EXISTS;
        }
        let to = resolve(&l.to);
        match (&l.dir, &l.file) {
            (Some(d), None) => mapping.link_directory(&resolve(d), &to, LinkFlags(flags))?,
            (None, Some(f)) => mapping.link_file(&resolve(f), &to, LinkFlags(flags))?,
            _ => {
                return Err(err(format!(
                    "link #{}: give exactly one of `dir` or `file`",
                    i + 1
                )));
            }
        }
    }
    Ok(Profile {
        instance: parsed.instance,
        log_level,
        labels,
        mo2_data,
        warnings,
        engine,
        mapping,
    })
}
