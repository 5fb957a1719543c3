//! The `usvfs` command.

mod cli;
mod launch;
mod mapping_args;
mod mount_join;
mod signals;

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow};
use clap::{CommandFactory, FromArgMatches};
use usvfs_control::engine::Engine;
use usvfs_control::index::dump::dump;
use usvfs_control::index::{MappedSnapshot, OwnedSnapshot};
use usvfs_control::monitor::Monitor;
use usvfs_control::wine::{Prefix, PrivateServer};
use usvfs_control::{Instance, build_snapshot, instance};

use crate::cli::{Cli, Command, ConflictsArgs, DumpArgs, LogArgs, PsArgs, RunArgs};
use usvfs_control::program::{self, ProgramError};

/// Exit codes, as `env` and `chroot` use them.
const EXIT_FAILURE: u8 = 125;
const EXIT_CANNOT_EXECUTE: u8 = 126;
const EXIT_NOT_FOUND: u8 = 127;

fn main() -> ExitCode {
    let matches = match Cli::command().try_get_matches() {
        Ok(m) => m,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_FAILURE } else { 0 });
        }
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    init_logging(cli.verbose);
    let r = match &cli.command {
        Command::Run(a) => run(a, &matches),
        Command::Dump(a) => dump_cmd(a, &matches).map(|()| 0),
        Command::Ps(a) => ps(a).map(|()| 0),
        Command::Log(a) => log_cmd(a).map(|()| 0),
        Command::Conflicts(a) => conflicts_cmd(a, &matches).map(|()| 0),
    };
    match r {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            let code = match e.downcast_ref::<ProgramError>() {
                Some(ProgramError::NotFound(_)) => EXIT_NOT_FOUND,
                Some(ProgramError::NotExecutable(_)) => EXIT_CANNOT_EXECUTE,
                _ => EXIT_FAILURE,
            };
            eprintln!("usvfs: error: {e:#}");
            ExitCode::from(code)
        }
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    // The FUSE library's own messages (a reply to a request the kernel
    // dropped while the mount namespace goes away) only with USVFS_LOG.
    let filter = tracing_subscriber::EnvFilter::try_from_env("USVFS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{default},fuser=off")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .try_init();
}

/// An instance this controller joined.
struct Joined {
    inst: Instance,
    /// The other live processes it had.
    others: Vec<i32>,
    /// The log level the profile asks for.
    log_level: Option<String>,
    private: Option<PrivateServer>,
    /// Watches monitored sources while the program runs.
    _monitor: Option<Monitor>,
}

/// Builds the mapping's index and publishes it in the instance, registering
/// `me` with it first.
fn publish(
    a: &cli::MappingArgs,
    m: &clap::ArgMatches,
    wine: Option<&Prefix>,
    me: i32,
    engine: Engine,
) -> Result<Joined> {
    let mut built = mapping_args::build(a, m)?;
    engine.check_mapping(&built.mapping)?;
    // Registered first, so nobody takes the instance for a leftover while
    // the index is built.
    let (inst, others) = Instance::join_new(&built.instance, me)?;
    // An instance has one engine: the one it was started with.
    let engine_set = if others.is_empty() {
        inst.set_engine(engine)
    } else {
        inst.check_engine(engine)
    };
    match engine_set
        .map_err(anyhow::Error::from)
        .and_then(|()| publish_into(&inst, &mut built, wine))
    {
        Ok((log_level, private, monitor)) => Ok(Joined {
            inst,
            others,
            log_level,
            private,
            _monitor: monitor,
        }),
        Err(e) => {
            let _ = inst.leave(me);
            Err(e)
        }
    }
}

fn publish_into(
    inst: &Instance,
    built: &mut mapping_args::Built,
    wine: Option<&Prefix>,
) -> Result<(Option<String>, Option<PrivateServer>, Option<Monitor>)> {
    // A Wine run gets its own wineserver, which programs outside never reach.
    let private = match wine {
        Some(prefix) => {
            let p = PrivateServer::prepare(prefix, &inst.dir)?;
            p.add_rules(&mut built.mapping)?;
            Some(p)
        }
        None => None,
    };
    let start = std::time::Instant::now();
    let generation = usvfs_control::index::new_generation();
    let bytes = build_snapshot(&built.mapping, generation).context("building the index")?;
    tracing::info!(bytes = bytes.len(), elapsed = ?start.elapsed(), "index built");
    inst.publish(&bytes)?;
    let monitor = Monitor::start(inst, &built.mapping)?;
    Ok((built.log_level.take(), private, monitor))
}

/// The running instance named by `--instance` (or the default), for commands
/// given no rules.
fn existing_instance(a: &cli::MappingArgs) -> Result<Instance> {
    if a.monitor {
        return Err(anyhow!(
            "--monitor applies to a new mapping: give --dir/--file/--create-target rules or --profile \
             (the controller that published a running instance's mapping monitors it)"
        ));
    }
    if a.case_insensitive {
        return Err(anyhow!(
            "--case-insensitive applies to a new mapping: give --dir/--file/--create-target rules or --profile \
             (a running instance keeps the mapping it was given)"
        ));
    }
    let name = a.instance.as_deref().unwrap_or(instance::DEFAULT_NAME);
    Instance::open_existing(name)?.ok_or_else(|| {
        anyhow!(
            "no mapping given and instance {name:?} is not running (no live process uses it): \
             add --dir/--file/--create-target rules or --profile to start it"
        )
    })
}

fn run(a: &RunArgs, m: &clap::ArgMatches) -> Result<i32> {
    // First, before any thread starts: every thread must block the signals
    // the forwarding thread takes; and the descriptor table grows cheaply.
    launch::reserve_instance_fd_number();
    let signals = signals::Forwarder::start().context("setting up signal forwarding")?;
    // The engine asked for; joining a running instance without one takes
    // the instance's.
    let chosen = match (a.engine, &a.mapping.profile) {
        (Some(cli::EngineArg::Mount), _) => Some(Engine::Mount),
        (Some(cli::EngineArg::Preload), _) => Some(Engine::Preload),
        (None, Some(p)) => usvfs_control::profile::load(p)?.engine,
        (None, None) => None,
    };
    let has_rules = mapping_args::has_rules(&a.mapping);
    // Looked for early, so a new preload instance fails before its index is
    // built; needed only when the engine is preload.
    let lib = launch::find_preload_lib();
    if has_rules && chosen.unwrap_or_default() == Engine::Preload {
        lib.as_ref().map_err(|e| anyhow!("{e:#}"))?;
    }
    let wine = Prefix::detect(&a.program, |k| std::env::var_os(k));
    if let Some(prefix) = &wine {
        prefix.check_no_outside_server()?;
    }
    let me = std::process::id() as i32;
    // This controller counts as live until the program ends (processes of
    // an earlier one that were killed are forgotten meanwhile).
    let Joined {
        inst,
        others,
        log_level: profile_level,
        private,
        _monitor,
    } = if has_rules {
        publish(&a.mapping, m, wine.as_ref(), me, chosen.unwrap_or_default())?
    } else {
        let inst = existing_instance(&a.mapping)?;
        if let Some(c) = chosen {
            inst.check_engine(c)?;
        }
        let others = inst.live_pids();
        inst.register(me)?;
        Joined {
            inst,
            others,
            log_level: None,
            private: None,
            _monitor: None,
        }
    };
    // Hooked processes read the level when they start. Without one given, a
    // running instance keeps its level and a new one (or the leftover of a
    // crashed one) logs nothing.
    match a.log_level.as_deref().or(profile_level.as_deref()) {
        Some(level) => inst.set_log_level(Some(level))?,
        None if others.is_empty() => inst.set_log_level(None)?,
        None => {}
    }
    let engine = inst.engine();
    let mount = engine == Engine::Mount;
    let lib = match (mount, lib) {
        (true, _) => std::path::PathBuf::new(),
        (false, Ok(lib)) => lib,
        (false, Err(e)) => {
            let _ = inst.leave(me);
            return Err(e);
        }
    };
    if a.strict || others.is_empty() {
        inst.set_strict(a.strict)?;
    }
    let result = (|| {
        let mapped = MappedSnapshot::open(&inst.index_path())?;
        let snap = mapped.snapshot();
        let (virt, phys) = program::locate(&snap, &a.program[0])?;
        engine.check_program(&phys, &virt)?;
        let cwd = match &a.cwd {
            None => None,
            Some(d) => {
                let here = std::env::current_dir()?;
                let v = usvfs_control::path::normalize(
                    d.as_os_str().as_bytes(),
                    here.as_os_str().as_bytes(),
                );
                let p = program::physical(&snap, d)
                    .filter(|p| p.is_dir())
                    .ok_or_else(|| {
                        anyhow!(
                            "--cwd {}: no such directory in the view: give a directory that exists on disk or in a layer",
                            d.display()
                        )
                    })?;
                Some((p, v))
            }
        };
        if mount {
            let cwd = match cwd {
                Some((_, v)) => std::path::PathBuf::from(std::ffi::OsStr::from_bytes(&v)),
                None => std::env::current_dir().context("reading the working directory")?,
            };
            // A running namespace of the instance is joined; without one
            // (a controller such as Python's published the mapping, or
            // the programs that had one ended) this run starts one.
            if !has_rules
                && let Some(code) = mount_join::run_joined(mount_join::JoinLaunch {
                    instance: &inst,
                    argv: &a.program,
                    cwd: cwd.clone(),
                    signals: &signals,
                })?
            {
                return Ok(code);
            }
            return launch::run_mount(launch::MountLaunch {
                instance: &inst,
                points: usvfs_mount::mount_points(&snap)?,
                argv: &a.program,
                cwd,
                signals: &signals,
            });
        }
        launch::run(launch::Launch {
            instance: &inst,
            lib: &lib,
            program_virt: &virt,
            program_phys: &phys,
            argv: &a.program,
            cwd,
            signals: &signals,
        })
    })();
    if let Some(p) = &private
        && others.is_empty()
    {
        // Wine's background programs (wineserver, services.exe, ...) end
        // with the view's wineserver, about 3 s after the last Windows
        // program: wait for that, so the caller's pipes close and the
        // registry is saved before we return.
        p.wait_for_server();
    }
    // The instance is gone when we were the last to leave, or when a hooked
    // process that left after our program (a background one) removed it.
    let mut gone = inst.leave(me).unwrap_or(false) || !inst.dir.exists();
    if !gone && private.is_some() && others.is_empty() {
        // The wineserver's last process may be exiting right now (its lock
        // is released before it is gone): give it a moment.
        for _ in 0..20 {
            std::thread::sleep(std::time::Duration::from_millis(50));
            gone = inst.leave(me).unwrap_or(false) || !inst.dir.exists();
            if gone {
                break;
            }
        }
    }
    if gone && let Some(p) = &private {
        p.remove();
    }
    result
}

fn dump_cmd(a: &DumpArgs, m: &clap::ArgMatches) -> Result<()> {
    let text = if mapping_args::has_rules(&a.mapping) {
        let built = mapping_args::build(&a.mapping, m)?;
        let bytes = build_snapshot(&built.mapping, 0)?;
        let owned =
            OwnedSnapshot::new(&bytes).ok_or_else(|| anyhow!("internal error: invalid index"))?;
        dump(&owned.snapshot())
    } else {
        let inst = existing_instance(&a.mapping)?;
        let mapped = MappedSnapshot::open(&inst.index_path())?;
        let mut text = dump(&mapped.snapshot());
        if let Ok(j) = usvfs_control::journal::Journal::open(&inst.journal_path()) {
            text.extend(usvfs_control::index::dump::dump_changes(
                &j,
                &mapped.snapshot(),
            ));
        }
        text
    };
    std::io::stdout()
        .write_all(&text)
        .context("writing the dump")?;
    Ok(())
}

/// `usvfs conflicts`: who wins each file provided by several layers.
fn conflicts_cmd(a: &ConflictsArgs, m: &clap::ArgMatches) -> Result<()> {
    if !mapping_args::has_rules(&a.mapping) {
        return Err(anyhow!(
            "no mapping given: add --mo2 INSTANCE_DIR, --profile or --dir/--file/--create-target rules"
        ));
    }
    let built = mapping_args::build(&a.mapping, m)?;
    // MO2's bookkeeping files in its mods are no conflict, as in MO2.
    let mo2_file = |rule: usize, rel: &[u8]| {
        built.mo2_data.get(rule).copied().unwrap_or(false)
            && usvfs_control::mo2::is_bookkeeping(rel)
    };
    let report = usvfs_control::conflicts::conflicts_ignoring(&built.mapping, mo2_file)
        .context("walking the layers for conflicts")?;
    let text = if a.json {
        report.json(&built.labels).into_bytes()
    } else {
        report.table(&built.labels)
    };
    let mut out = std::io::stdout().lock();
    match out.write_all(&text).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(e).context("writing the conflicts"))
        }
        _ => Ok(()),
    }
}

fn ps(a: &PsArgs) -> Result<()> {
    let instances = if a.all {
        instance::list_instances()?
    } else {
        Instance::open_existing(&a.instance)?.into_iter().collect()
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{:>8}  {:<20}  COMMAND", "PID", "INSTANCE")?;
    for inst in instances {
        for p in inst.processes() {
            write!(out, "{:>8}  {:<20}  ", p.pid, inst.name)?;
            out.write_all(&p.command)?;
            writeln!(out)?;
        }
    }
    Ok(())
}

/// `usvfs log`: prints the instance's log; with `--follow`, keeps printing new
/// lines until interrupted.
fn log_cmd(a: &LogArgs) -> Result<()> {
    let inst = Instance::open_existing(&a.instance)?.ok_or_else(|| {
        anyhow!(
            "no running instance named {:?}: an instance's log lives only while its programs run; \
             start them with `usvfs run --instance {} --log-level LEVEL ...` and read the log meanwhile",
            a.instance,
            a.instance
        )
    })?;
    let (text, mut offset) = inst.read_log(0)?;
    if text.is_empty() && inst.log_level().is_none() && !inst.log_path().exists() {
        eprintln!(
            "usvfs: instance {:?} has no log: its log level is off (start programs with `usvfs run --log-level LEVEL`)",
            a.instance
        );
    }
    if !print_log(&text)? {
        return Ok(());
    }
    if a.clear {
        inst.clear_log()?;
    }
    if !a.follow {
        return Ok(());
    }
    let identity = || {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(inst.log_path())
            .ok()
            .map(|m| (m.dev(), m.ino()))
    };
    let mut file = identity();
    let mut running = true;
    loop {
        std::thread::sleep(std::time::Duration::from_millis(200));
        let alive = inst.index_path().exists();
        if alive != running {
            running = alive;
            if !alive {
                eprintln!(
                    "usvfs: instance {:?} ended; waiting for it to start again (Ctrl-C to stop)",
                    a.instance
                );
            }
        }
        let now = identity();
        if now != file {
            // A new instance of the same name: its log starts over.
            file = now;
            offset = 0;
        }
        let (text, next) = inst.read_log(offset)?;
        offset = next;
        if !print_log(&text)? {
            return Ok(());
        }
    }
}

/// Writes log lines to stdout; false when the reader went away (`| head`).
fn print_log(text: &[u8]) -> Result<bool> {
    if text.is_empty() {
        return Ok(true);
    }
    let mut out = std::io::stdout().lock();
    match out.write_all(text).and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(anyhow::Error::new(e).context("writing the log")),
    }
}
