//! `usvfs._native`: the extension module of the Python package. A thin layer:
//! every decision lives in usvfs-core; this file converts arguments and errors.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use usvfs_control::engine::Engine;
use usvfs_control::index::MappedSnapshot;
use usvfs_control::index::dump::dump as dump_tree;
use usvfs_control::instance::{ExecRules, Instance};
use usvfs_control::program::{self, ProgramError};
use usvfs_control::{Error, LinkFlags, Mapping, build_snapshot};

/// Raises the Python exception class `usvfs._errors.<name>(message, path)`.
fn raise(py: Python<'_>, name: &str, message: String, path: Option<PathBuf>) -> PyErr {
    let build = || -> PyResult<PyErr> {
        let cls = py.import("usvfs._errors")?.getattr(name)?;
        let kwargs = pyo3::types::PyDict::new(py);
        kwargs.set_item("path", path.clone())?;
        let obj = cls.call((message.clone(),), Some(&kwargs))?;
        Ok(PyErr::from_value(obj))
    };
    build().unwrap_or_else(|e| e)
}

fn core_err(py: Python<'_>, e: Error) -> PyErr {
    let message = e.to_string();
    let (name, path) = match e {
        Error::SourceMissing { path }
        | Error::SourceNotDirectory { path }
        | Error::SourceIsDirectory { path }
        | Error::DestinationExists { path }
        | Error::Skipped { path }
        | Error::PathTooLong { path } => ("LinkError", Some(path)),
        Error::SourceUnreadable { path, .. } => ("LinkError", Some(path)),
        Error::DestinationInsideSource { dest, .. }
        | Error::SourceInsideDestination { dest, .. } => ("LinkError", Some(dest)),
        Error::Profile { path, .. } => ("USVFSException", Some(path)),
        Error::Mo2(e) => ("USVFSException", Some(e.path().to_path_buf())),
        Error::Instance { .. } | Error::RuntimeDir(_) => ("InstanceError", None),
        Error::BlacklistWithMount { .. } => ("USVFSException", None),
        Error::WineServerRunning { prefix, .. } | Error::Wine { prefix, .. } => {
            ("USVFSException", Some(prefix))
        }
        Error::View(
            usvfs_control::view::Error::Index { path, .. }
            | usvfs_control::view::Error::Io { path, .. },
        ) => ("USVFSException", Some(path)),
    };
    raise(py, name, message, path)
}

fn program_err(py: Python<'_>, e: ProgramError) -> PyErr {
    let name = match e {
        ProgramError::NotFound(_) => "ProgramNotFound",
        ProgramError::NotExecutable(_) => "ProgramNotExecutable",
        ProgramError::Unhookable(_) => "ProgramNotHookable",
    };
    raise(py, name, e.to_string(), None)
}

/// An engine by name; ValueError naming the allowed ones otherwise.
fn parse_engine(name: &str) -> PyResult<Engine> {
    Engine::from_name(name).ok_or_else(|| {
        pyo3::exceptions::PyValueError::new_err(format!(
            "engine must be 'preload' or 'mount', not {name:?}"
        ))
    })
}

fn open_instance(py: Python<'_>, name: &str) -> PyResult<Instance> {
    Instance::open_existing(name)
        .map_err(|e| core_err(py, e))?
        .ok_or_else(|| {
            raise(
                py,
                "InstanceError",
                format!("no instance named {name:?} is set up: call UserspaceVFS.initialize() (or dll.CreateVFS) first"),
                None,
            )
        })
}

/// A rule as Python passes it: (is_directory, real_path, virtual_path, flags,
/// skip suffixes, skip directories) — skip lists as they were at link time.
type RuleArg = (bool, PathBuf, PathBuf, u32, Vec<OsString>, Vec<OsString>);

/// Checks one link like usvfs's VirtualLink* would, without publishing.
#[pyfunction]
fn check_link(py: Python<'_>, rule: RuleArg) -> PyResult<()> {
    add_rule(&mut Mapping::new(), rule).map_err(|e| core_err(py, e))
}

fn add_rule(
    m: &mut Mapping,
    (is_dir, src, dest, flags, skip_suffixes, skip_dirs): RuleArg,
) -> usvfs_control::Result<()> {
    m.skip_suffixes = skip_suffixes;
    m.skip_dirs = skip_dirs;
    if is_dir {
        m.link_directory(&src, &dest, LinkFlags(flags))
    } else {
        m.link_file(&src, &dest, LinkFlags(flags))
    }
}

/// Watches a published mapping's monitored sources (rules with
/// MONITOR_CHANGES); stops when `stop()` is called or it is collected.
#[pyclass(module = "usvfs._native")]
struct SourceMonitor {
    inner: std::sync::Mutex<Option<usvfs_control::monitor::Monitor>>,
}

#[pymethods]
impl SourceMonitor {
    /// Stops watching (idempotent).
    fn stop(&self, py: Python<'_>) {
        let m = self.inner.lock().ok().and_then(|mut g| g.take());
        py.allow_threads(move || drop(m));
    }

    /// Number of directories watched when it started.
    #[getter]
    fn watched(&self) -> usize {
        self.inner
            .lock()
            .ok()
            .and_then(|g| g.as_ref().map(|m| m.watched()))
            .unwrap_or(0)
    }
}

/// Builds the index of a mapping and publishes it in the instance (creating
/// it). Returns (instance directory, node count, source monitor or None when
/// no rule is monitored). Releases the GIL meanwhile.
/// `case_insensitive`: names match in any case below the destinations.
/// `engine`: the engine the instance runs (`preload` or `mount`); a running
/// instance of another engine is refused (InstanceError).
#[pyfunction]
#[pyo3(signature = (instance, rules, blacklist, case_insensitive = false, engine = "preload"))]
fn publish(
    py: Python<'_>,
    instance: &str,
    rules: Vec<RuleArg>,
    blacklist: Vec<OsString>,
    case_insensitive: bool,
    engine: &str,
) -> PyResult<(PathBuf, usize, Option<SourceMonitor>)> {
    let engine = parse_engine(engine)?;
    let name = instance.to_string();
    type Published = (PathBuf, usize, Option<SourceMonitor>);
    let r = py.allow_threads(move || -> usvfs_control::Result<Published> {
        let mut m = Mapping::new();
        m.blacklist = blacklist;
        m.case_insensitive = case_insensitive;
        for r in rules {
            add_rule(&mut m, r)?;
        }
        engine.check_mapping(&m)?;
        let generation = usvfs_control::index::new_generation();
        let bytes = build_snapshot(&m, generation)?;
        let nodes = usvfs_control::Snapshot::parse(&bytes)
            .map(|s| s.node_count())
            .unwrap_or(0);
        // The caller (the controller) is registered first, so nobody takes
        // the instance for a leftover of dead processes meanwhile.
        let me = std::process::id() as i32;
        let (inst, others) = Instance::join_new(&name, me)?;
        // An instance has one engine: the one it was started with.
        let checked = if others.is_empty() {
            inst.set_engine(engine)
        } else {
            inst.check_engine(engine)
        };
        if let Err(e) = checked {
            let _ = inst.leave(me);
            return Err(e);
        }
        inst.publish(&bytes)?;
        let monitor = usvfs_control::monitor::Monitor::start(&inst, &m)?.map(|m| SourceMonitor {
            inner: std::sync::Mutex::new(Some(m)),
        });
        Ok((inst.dir, nodes, monitor))
    });
    r.map_err(|e| core_err(py, e))
}

/// Joins a running instance: registers `pid` with it and returns its
/// directory, or None when no instance of that name runs (nothing is created).
/// A running instance of another engine than `engine` is refused.
#[pyfunction]
#[pyo3(signature = (instance, pid, engine = "preload"))]
fn join(py: Python<'_>, instance: &str, pid: i32, engine: &str) -> PyResult<Option<PathBuf>> {
    let engine = parse_engine(engine)?;
    let name = instance.to_string();
    let r = py.allow_threads(move || -> usvfs_control::Result<Option<PathBuf>> {
        let Some(running) = Instance::open_existing(&name)? else {
            return Ok(None);
        };
        running.check_engine(engine)?;
        // Under the instance lock: a leftover being removed meanwhile is
        // created again empty, which the caller then publishes into.
        let (inst, _) = Instance::join_new(&name, pid)?;
        Ok(inst.index_path().exists().then_some(inst.dir))
    });
    r.map_err(|e| core_err(py, e))
}

/// Replaces the instance's exec rules: blacklist and forced libraries.
#[pyfunction]
fn write_exec_rules(
    py: Python<'_>,
    instance: &str,
    blacklist: Vec<OsString>,
    force_loads: Vec<(OsString, PathBuf)>,
) -> PyResult<()> {
    use std::os::unix::ffi::OsStringExt;
    let inst = open_instance(py, instance)?;
    if !blacklist.is_empty() {
        let mut m = Mapping::new();
        m.blacklist = blacklist.clone();
        inst.engine()
            .check_mapping(&m)
            .map_err(|e| core_err(py, e))?;
    }
    let rules = ExecRules {
        blacklist: blacklist.into_iter().map(|b| b.into_vec()).collect(),
        force_loads: force_loads
            .into_iter()
            .map(|(p, l)| (p.into_vec(), l.into_os_string().into_vec()))
            .collect(),
        // Set by `usvfs run --strict`; the Python API leaves it as it is.
        strict: inst.read_exec_rules().strict,
    };
    inst.write_exec_rules(&rules).map_err(|e| core_err(py, e))
}

/// Registers a process (the controller itself) with the instance.
#[pyfunction]
fn register(py: Python<'_>, instance: &str, pid: i32) -> PyResult<()> {
    open_instance(py, instance)?
        .register(pid)
        .map_err(|e| core_err(py, e))
}

/// Forgets a process; removes the instance when none is left. True if removed.
#[pyfunction]
fn leave(py: Python<'_>, instance: &str, pid: i32) -> PyResult<bool> {
    match Instance::open_existing(instance).map_err(|e| core_err(py, e))? {
        Some(i) => i.leave(pid).map_err(|e| core_err(py, e)),
        None => Ok(true),
    }
}

/// Live processes of the instance: (pid, command line).
#[pyfunction]
fn processes(py: Python<'_>, instance: &str) -> PyResult<Vec<(i32, Py<PyBytes>)>> {
    let Some(inst) = Instance::open_existing(instance).map_err(|e| core_err(py, e))? else {
        return Ok(Vec::new());
    };
    Ok(inst
        .processes()
        .into_iter()
        .map(|p| (p.pid, PyBytes::new(py, &p.command).unbind()))
        .collect())
}

/// The text dump of the instance's virtual tree.
#[pyfunction]
fn dump<'py>(py: Python<'py>, instance: &str) -> PyResult<Bound<'py, PyBytes>> {
    let inst = open_instance(py, instance)?;
    let m = MappedSnapshot::open(&inst.index_path()).map_err(|e| core_err(py, e.into()))?;
    let mut text = dump_tree(&m.snapshot());
    if let Ok(j) = usvfs_control::journal::Journal::open(&inst.journal_path()) {
        text.extend(usvfs_control::index::dump::dump_changes(&j, &m.snapshot()));
    }
    Ok(PyBytes::new(py, &text))
}

/// Finds a program in the view like execvp and checks `engine` can show it
/// the view. Returns (executable to start, argv).
#[pyfunction]
#[pyo3(signature = (instance, argv, engine = "preload"))]
fn prepare_command(
    py: Python<'_>,
    instance: &str,
    argv: Vec<OsString>,
    engine: &str,
) -> PyResult<(PathBuf, Vec<OsString>)> {
    let engine = parse_engine(engine)?;
    let inst = open_instance(py, instance)?;
    let m = MappedSnapshot::open(&inst.index_path()).map_err(|e| core_err(py, e.into()))?;
    let snap = m.snapshot();
    let first = argv
        .first()
        .ok_or_else(|| raise(py, "ProgramNotFound", "empty command line".into(), None))?;
    let (virt, phys) = program::locate(&snap, first).map_err(|e| program_err(py, e))?;
    engine
        .check_program(&phys, &virt)
        .map_err(|e| program_err(py, e))?;
    Ok(program::command_line(&virt, &phys, &argv))
}

/// The physical directory behind a virtual directory (for a working directory).
#[pyfunction]
fn physical_dir(py: Python<'_>, instance: &str, path: PathBuf) -> PyResult<Option<PathBuf>> {
    let inst = open_instance(py, instance)?;
    let m = MappedSnapshot::open(&inst.index_path()).map_err(|e| core_err(py, e.into()))?;
    Ok(program::physical(&m.snapshot(), &path).filter(|p| Path::new(p).is_dir()))
}

/// Sets the level the instance's hooked processes log at (off, error, warn,
/// info, debug or trace; None turns logging off). Processes read it when they
/// start.
#[pyfunction]
#[pyo3(signature = (instance, level))]
fn set_log_level(py: Python<'_>, instance: &str, level: Option<&str>) -> PyResult<()> {
    open_instance(py, instance)?
        .set_log_level(level)
        .map_err(|e| core_err(py, e))
}

/// The complete lines hooked processes appended to the instance's log from
/// byte `offset` on, and the offset to read from next time. An instance that
/// is gone, or has no log yet, reads as empty.
#[pyfunction]
fn read_log<'py>(
    py: Python<'py>,
    instance: &str,
    offset: u64,
) -> PyResult<(Bound<'py, PyBytes>, u64)> {
    let Some(inst) = Instance::open_existing(instance).map_err(|e| core_err(py, e))? else {
        return Ok((PyBytes::new(py, b""), 0));
    };
    let (text, next) = inst.read_log(offset).map_err(|e| core_err(py, e))?;
    Ok((PyBytes::new(py, &text), next))
}

/// Checks an instance name (length, characters).
#[pyfunction]
fn validate_instance_name(py: Python<'_>, name: &str) -> PyResult<()> {
    usvfs_control::instance::validate_name(name).map_err(|e| core_err(py, e))
}

/// The version of the package (the workspace version).
#[pyfunction]
fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// The environment of a hooked child (`KEY=VALUE` byte strings), built by
/// the launcher every front end and the preload engine share.
#[pyfunction]
#[pyo3(signature = (envp, lib, instance_dir, vcwd=None, instance_fd=None))]
fn child_env(
    envp: Vec<Vec<u8>>,
    lib: Vec<u8>,
    instance_dir: Vec<u8>,
    vcwd: Option<Vec<u8>>,
    instance_fd: Option<Vec<u8>>,
) -> Vec<Vec<u8>> {
    let join = usvfs_control::launch_env::Join {
        instance_dir: &instance_dir,
        instance_fd: instance_fd.as_deref(),
        vcwd: vcwd.as_deref(),
        hold: None,
    };
    usvfs_control::launch_env::child_env(envp, &lib, Some(&join), &[])
}

/// (is_directory, source, destination, flags) per rule, a name per rule,
/// whether each is an MO2 mod or its overwrite folder, the warnings.
type Mo2Rules = (
    Vec<(bool, PathBuf, PathBuf, u32)>,
    Vec<String>,
    Vec<bool>,
    Vec<String>,
);

/// The rules of a Mod Organizer 2 profile (`usvfs::mo2`), lowest priority
/// first: ([(is_directory, source, destination, flags)], [layer name],
/// [warning]).
#[pyfunction]
#[pyo3(signature = (instance_dir, profile=None, data_dir=None))]
fn mo2_rules(
    py: Python<'_>,
    instance_dir: PathBuf,
    profile: Option<String>,
    data_dir: Option<PathBuf>,
) -> PyResult<Mo2Rules> {
    let mut m = Mapping::new();
    let opts = usvfs_control::mo2::Options {
        instance: instance_dir,
        profile,
        data_dir,
        wine_prefix: usvfs_control::mo2::env_prefix(),
    };
    let loaded =
        usvfs_control::mo2::add_to_mapping(&mut m, &opts).map_err(|e| core_err(py, e.into()))?;
    let labels = usvfs_control::mo2::labels(&m, &loaded);
    let data = usvfs_control::mo2::data_layers(&m, &loaded);
    let rules = m
        .rules
        .into_iter()
        .map(|r| {
            (
                r.kind == usvfs_control::LinkKind::Directory,
                r.source,
                r.destination,
                r.flags.0,
            )
        })
        .collect();
    let names = labels.into_iter().map(|l| l.unwrap_or_default()).collect();
    Ok((rules, names, data, loaded.warnings))
}

/// The conflicts of a mapping as `usvfs conflicts --json` prints them;
/// `names`: a name per rule ("" shows the source); `mo2_data`: the rules
/// that are MO2 mods (their bookkeeping files are no conflict).
#[pyfunction]
#[pyo3(signature = (rules, names, mo2_data=Vec::new(), case_insensitive=false))]
fn conflicts_json(
    py: Python<'_>,
    rules: Vec<RuleArg>,
    names: Vec<String>,
    mo2_data: Vec<bool>,
    case_insensitive: bool,
) -> PyResult<String> {
    let mut m = Mapping::new();
    m.case_insensitive = case_insensitive;
    for r in rules {
        add_rule(&mut m, r).map_err(|e| core_err(py, e))?;
    }
    let names: Vec<Option<String>> = names
        .into_iter()
        .map(|n| (!n.is_empty()).then_some(n))
        .collect();
    let report = py
        .allow_threads(|| {
            usvfs_control::conflicts::conflicts_ignoring(&m, |rule, rel| {
                mo2_data.get(rule).copied().unwrap_or(false)
                    && usvfs_control::mo2::is_bookkeeping(rel)
            })
        })
        .map_err(|e| core_err(py, e))?;
    Ok(report.json(&names))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(check_link, m)?)?;
    m.add_function(wrap_pyfunction!(publish, m)?)?;
    m.add_class::<SourceMonitor>()?;
    m.add_function(wrap_pyfunction!(write_exec_rules, m)?)?;
    m.add_function(wrap_pyfunction!(register, m)?)?;
    m.add_function(wrap_pyfunction!(join, m)?)?;
    m.add_function(wrap_pyfunction!(leave, m)?)?;
    m.add_function(wrap_pyfunction!(processes, m)?)?;
    m.add_function(wrap_pyfunction!(dump, m)?)?;
    m.add_function(wrap_pyfunction!(prepare_command, m)?)?;
    m.add_function(wrap_pyfunction!(physical_dir, m)?)?;
    m.add_function(wrap_pyfunction!(set_log_level, m)?)?;
    m.add_function(wrap_pyfunction!(read_log, m)?)?;
    m.add_function(wrap_pyfunction!(validate_instance_name, m)?)?;
    m.add_function(wrap_pyfunction!(version, m)?)?;
    m.add_function(wrap_pyfunction!(child_env, m)?)?;
    // Mod Organizer 2 profiles and conflict reports (python/usvfs/_mo2.py).
    m.add_function(wrap_pyfunction!(mo2_rules, m)?)?;
    m.add_function(wrap_pyfunction!(conflicts_json, m)?)?;
    Ok(())
}
