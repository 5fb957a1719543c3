//! The `usvfs` command.

mod cli;
mod launch;
mod mapping_args;

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow};
use clap::{CommandFactory, FromArgMatches};
use usvfs_control::index::dump::dump;
use usvfs_control::index::{MappedSnapshot, OwnedSnapshot};
use usvfs_control::{Instance, build_snapshot, instance};

use crate::cli::{Cli, Command, DumpArgs, PsArgs, RunArgs};
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
    let filter = tracing_subscriber::EnvFilter::try_from_env("USVFS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .try_init();
}

/// Builds the mapping's index and publishes it in the instance.
fn publish(a: &cli::MappingArgs, m: &clap::ArgMatches) -> Result<Instance> {
    let built = mapping_args::build(a, m)?;
    let start = std::time::Instant::now();
    let generation = usvfs_control::index::new_generation();
    let bytes = build_snapshot(&built.mapping, generation).context("building the index")?;
    tracing::info!(bytes = bytes.len(), elapsed = ?start.elapsed(), "index built");
    let inst = Instance::open_or_create(&built.instance)?;
    inst.publish(&bytes)?;
    Ok(inst)
}

/// The running instance named by `--instance` (or the default), for commands
/// given no rules.
fn existing_instance(a: &cli::MappingArgs) -> Result<Instance> {
    let name = a.instance.as_deref().unwrap_or(instance::DEFAULT_NAME);
    Instance::open_existing(name)?.ok_or_else(|| {
        anyhow!(
            "no mapping given and no running instance named {name:?}: add --dir/--file/--create-target rules or --profile"
        )
    })
}

fn run(a: &RunArgs, m: &clap::ArgMatches) -> Result<i32> {
    let lib = launch::find_preload_lib()?;
    let inst = if mapping_args::has_rules(&a.mapping) {
        publish(&a.mapping, m)?
    } else {
        existing_instance(&a.mapping)?
    };
    // Forget processes of an earlier controller that were killed (no exit hook
    // ran), then count this controller as live until the program ends.
    let _ = inst.live_pids();
    let me = std::process::id() as i32;
    inst.register(me)?;
    let result = (|| {
        let mapped = MappedSnapshot::open(&inst.index_path())?;
        let snap = mapped.snapshot();
        let (virt, phys) = program::locate(&snap, &a.program[0])?;
        usvfs_control::engine::Engine::Preload.check_program(&phys, &virt)?;
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
        launch::run(launch::Launch {
            instance: &inst,
            lib: &lib,
            program_virt: &virt,
            program_phys: &phys,
            argv: &a.program,
            cwd,
        })
    })();
    let _ = inst.leave(me);
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
            text.extend(usvfs_control::index::dump::dump_changes(&j));
        }
        text
    };
    std::io::stdout()
        .write_all(&text)
        .context("writing the dump")?;
    Ok(())
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
