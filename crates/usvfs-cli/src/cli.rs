//! Command-line definitions.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "usvfs",
    version,
    about = "Show a process tree a merged view of many directories, without touching the disk",
    long_about = "Show a process tree a merged view of many directories (mods over a game's data \
folder, with a priority order and an overwrite folder for new files) without moving a byte on \
disk. Every other process keeps seeing the real disk."
)]
pub struct Cli {
    /// Log what usvfs does (repeat for more detail); USVFS_LOG=debug does the same.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a program inside the view.
    Run(RunArgs),
    /// Print the virtual tree of a mapping (or of a running instance).
    Dump(DumpArgs),
    /// List the live processes of an instance.
    Ps(PsArgs),
    /// Print the log hooked processes of an instance write (see run --log-level).
    Log(LogArgs),
    /// List the files more than one layer provides: the winner, the layers it
    /// hides, and per layer how many files it overwrites and loses.
    Conflicts(ConflictsArgs),
}

/// Options that describe a mapping. Rules apply in command-line order: later wins.
#[derive(Args, Debug, Clone)]
pub struct MappingArgs {
    /// Instance name (default: usvfs_instance, or the profile's `instance`).
    #[arg(long, value_name = "NAME")]
    pub instance: Option<String>,
    /// Merge the contents of directory SRC into directory DEST (recursively).
    #[arg(long = "dir", num_args = 2, value_names = ["SRC", "DEST"], action = clap::ArgAction::Append)]
    pub dir: Vec<PathBuf>,
    /// Show file SRC at path DEST.
    #[arg(long = "file", num_args = 2, value_names = ["SRC", "DEST"], action = clap::ArgAction::Append)]
    pub file: Vec<PathBuf>,
    /// Like --dir, and files created below DEST land in SRC (an "overwrite" folder).
    #[arg(long = "create-target", num_args = 2, value_names = ["SRC", "DEST"], action = clap::ArgAction::Append)]
    pub create_target: Vec<PathBuf>,
    /// Link only the direct files of each --dir source, not its subdirectories.
    #[arg(long)]
    pub no_recursive: bool,
    /// Never link files whose names end with S (case-insensitive; repeatable).
    #[arg(long = "skip-suffix", value_name = "S")]
    pub skip_suffix: Vec<OsString>,
    /// Never link directories named D (case-insensitive; repeatable).
    #[arg(long = "skip-dir", value_name = "D")]
    pub skip_dir: Vec<OsString>,
    /// Start executables named EXE (base name or full path) outside the view.
    #[arg(long = "blacklist", value_name = "EXE")]
    pub blacklist: Vec<OsString>,
    /// Read the mapping from a TOML profile (its rules come before command-line rules).
    #[arg(long, value_name = "FILE.toml")]
    pub profile: Option<PathBuf>,
    /// Match names case-insensitively below the destinations, as Windows
    /// programs (Wine, Proton) expect: names that differ only in case merge
    /// across all layers and the real destination, and any spelling finds
    /// the winner (Unicode simple case folding). Same as a profile's
    /// `case_insensitive = true`.
    #[arg(long)]
    pub case_insensitive: bool,
    /// Monitor every link's source: files added to or removed from a mod
    /// while the program runs appear or disappear in the view within a
    /// second (inotify). Same as a profile's `monitor = true`.
    #[arg(long)]
    pub monitor: bool,
    /// Map a Mod Organizer 2 instance's profile: its enabled mods in MO2's
    /// priority order onto the game's data folder, the overwrite folder as
    /// create target, and the profile's INI files, saves and plugins.txt
    /// where the game reads them in the Wine prefix (before the --dir rules).
    #[arg(long, value_name = "INSTANCE_DIR")]
    pub mo2: Option<PathBuf>,
    /// The MO2 profile (default: the one selected in MO2).
    #[arg(long, value_name = "NAME", requires = "mo2")]
    pub mo2_profile: Option<String>,
    /// Map the MO2 mods onto DIR instead of the game's data folder.
    #[arg(long, value_name = "DIR", requires = "mo2")]
    pub mo2_data_dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub mapping: MappingArgs,
    /// Start the program in DIR (a path of the view).
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<PathBuf>,
    /// Hooked processes log journal and hook failures at LEVEL and above to the
    /// instance's log (read it with `usvfs log`). Default: the profile's
    /// `log_level`; else a running instance keeps its level, a new one is off.
    #[arg(long, value_name = "LEVEL", value_parser = clap::builder::PossibleValuesParser::new(usvfs_control::instance::LOG_LEVELS))]
    pub log_level: Option<String>,
    /// Programs the view cannot follow (statically linked, set-id, with file
    /// capabilities, Go) fail to start from hooked processes with EACCES,
    /// instead of starting outside the view with a warning. A running
    /// instance joined without it keeps its setting.
    #[arg(long)]
    pub strict: bool,
    /// How the program is shown the view: `preload` (an LD_PRELOAD library in
    /// the program's processes) or `mount` (a private user + mount namespace in
    /// which FUSE mounts cover the destinations: static and Go programs,
    /// set-id programs and raw system calls see the view too).
    /// Default: the profile's `engine`, else, joining a running instance
    /// (no rules), the one it was started with, else `preload`. An instance
    /// has one engine: joining it with the other is refused.
    #[arg(long, value_enum)]
    pub engine: Option<EngineArg>,
    /// The program and its arguments.
    #[arg(last = true, required = true, value_name = "PROGRAM [ARGS]...")]
    pub program: Vec<OsString>,
}

#[derive(Args, Debug)]
pub struct DumpArgs {
    #[command(flatten)]
    pub mapping: MappingArgs,
}

#[derive(Args, Debug)]
pub struct ConflictsArgs {
    #[command(flatten)]
    pub mapping: MappingArgs,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct PsArgs {
    /// Instance name.
    #[arg(long, value_name = "NAME", default_value = usvfs_control::instance::DEFAULT_NAME)]
    pub instance: String,
    /// List the processes of every instance.
    #[arg(long, conflicts_with = "instance")]
    pub all: bool,
}

#[derive(Args, Debug)]
pub struct LogArgs {
    /// Instance name.
    #[arg(long, value_name = "NAME", default_value = usvfs_control::instance::DEFAULT_NAME)]
    pub instance: String,
    /// Keep printing lines as they are written, until interrupted (across
    /// restarts of the instance).
    #[arg(short, long)]
    pub follow: bool,
    /// Empty the log after printing it.
    #[arg(long, conflicts_with = "follow")]
    pub clear: bool,
}

/// `--engine`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineArg {
    Preload,
    Mount,
}
