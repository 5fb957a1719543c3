//! Turns the mapping options (in the order given) into a `Mapping`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::ArgMatches;
use usvfs_control::{LinkFlags, Mapping, mo2, profile};

use crate::cli::MappingArgs;

pub struct Built {
    pub instance: String,
    pub mapping: Mapping,
    /// The profile's log level, if it gives one.
    pub log_level: Option<String>,
    /// Names of the rules an MO2 profile added (by rule index), for reports.
    pub labels: Vec<Option<String>>,
    /// The rules that are MO2 mods or its overwrite folder (by rule index).
    pub mo2_data: Vec<bool>,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Dir,
    File,
    CreateTarget,
}

/// Rules in command-line order: clap groups values by option, so the order
/// across options comes from each value's index on the command line.
fn ordered(args: &MappingArgs, m: &ArgMatches) -> Vec<(Kind, PathBuf, PathBuf)> {
    let mut rules: Vec<(usize, Kind, PathBuf, PathBuf)> = Vec::new();
    for (kind, id, vals) in [
        (Kind::Dir, "dir", &args.dir),
        (Kind::File, "file", &args.file),
        (Kind::CreateTarget, "create_target", &args.create_target),
    ] {
        let idx: Vec<usize> = m.indices_of(id).map(|i| i.collect()).unwrap_or_default();
        for (k, pair) in vals.chunks(2).enumerate() {
            if let [src, dest] = pair {
                rules.push((
                    idx.get(2 * k).copied().unwrap_or(usize::MAX),
                    kind,
                    src.clone(),
                    dest.clone(),
                ));
            }
        }
    }
    rules.sort_by_key(|r| r.0);
    rules.into_iter().map(|(_, k, s, d)| (k, s, d)).collect()
}

fn sub_matches(m: &ArgMatches) -> &ArgMatches {
    m.subcommand().map(|(_, s)| s).unwrap_or(m)
}

pub fn build(args: &MappingArgs, matches: &ArgMatches) -> Result<Built> {
    let m = sub_matches(matches);
    let mut mapping = Mapping::new();
    let mut instance = None;
    let mut log_level = None;
    let mut labels = Vec::new();
    let mut warnings = Vec::new();
    let mut mo2_data = Vec::new();
    if let Some(p) = &args.profile {
        let prof = profile::load(p)?;
        instance = prof.instance;
        log_level = prof.log_level;
        mapping = prof.mapping;
        labels = prof.labels;
        mo2_data = prof.mo2_data;
        warnings = prof.warnings;
    }
    if let Some(dir) = &args.mo2 {
        let loaded = mo2::add_to_mapping(
            &mut mapping,
            &mo2::Options {
                instance: dir.clone(),
                profile: args.mo2_profile.clone(),
                data_dir: args.mo2_data_dir.clone(),
                wine_prefix: mo2::env_prefix(),
            },
        )
        .with_context(|| format!("reading the Mod Organizer 2 instance {}", dir.display()))?;
        let new = mo2::labels(&mapping, &loaded);
        mo2_data.resize(mapping.rules.len(), false);
        for (slot, d) in mo2_data.iter_mut().zip(mo2::data_layers(&mapping, &loaded)) {
            *slot |= d;
        }
        labels.resize(mapping.rules.len(), None);
        for (slot, l) in labels.iter_mut().zip(new) {
            if l.is_some() {
                *slot = l;
            }
        }
        tracing::info!(profile = %loaded.profile, data = %loaded.data_dir.display(), layers = loaded.layers.len(), "Mod Organizer 2 profile mapped");
        warnings.extend(loaded.warnings);
    }
    // MO2 goes on without a mod whose folder is gone; so do we, saying so.
    for w in &warnings {
        eprintln!("usvfs: warning: {w}");
    }
    mapping.blacklist.extend(args.blacklist.iter().cloned());
    let recursive = if args.no_recursive {
        0
    } else {
        LinkFlags::RECURSIVE
    };
    for (kind, src, dest) in ordered(args, m) {
        match kind {
            Kind::Dir => mapping.link_directory(&src, &dest, LinkFlags(recursive)),
            Kind::CreateTarget => {
                mapping.link_directory(&src, &dest, LinkFlags(recursive | LinkFlags::CREATE_TARGET))
            }
            Kind::File => mapping.link_file(&src, &dest, LinkFlags(0)),
        }
        .with_context(|| format!("cannot link {} onto {}", src.display(), dest.display()))?;
    }
    mapping.case_insensitive |= args.case_insensitive;
    if args.monitor {
        for r in &mut mapping.rules {
            r.flags.0 |= LinkFlags::MONITOR_CHANGES;
        }
    }
    // Command-line skip lists apply to every rule, the profile's too.
    for r in &mut mapping.rules {
        r.skip_suffixes.extend(args.skip_suffix.iter().cloned());
        r.skip_dirs.extend(args.skip_dir.iter().cloned());
    }
    let instance = args
        .instance
        .clone()
        .or(instance)
        .unwrap_or_else(|| usvfs_control::instance::DEFAULT_NAME.to_string());
    labels.resize(mapping.rules.len(), None);
    mo2_data.resize(mapping.rules.len(), false);
    Ok(Built {
        instance,
        mapping,
        log_level,
        labels,
        mo2_data,
    })
}

pub fn has_rules(args: &MappingArgs) -> bool {
    !(args.dir.is_empty()
        && args.file.is_empty()
        && args.create_target.is_empty()
        && args.profile.is_none()
        && args.mo2.is_none())
}
