//! Starting the program with the preload engine attached, and waiting for it.

use std::ffi::OsStr;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use usvfs_control::Instance;
use usvfs_control::launch_env;

pub const LIB_NAME: &str = "libusvfs_preload.so";

/// The preload library: `$USVFS_PRELOAD`, else beside this executable, else in
/// `../lib/usvfs/` relative to it.
pub fn find_preload_lib() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("USVFS_PRELOAD") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p.canonicalize().unwrap_or(p));
        }
        bail!(
            "USVFS_PRELOAD names {}, which is not a file: point it at {LIB_NAME}",
            p.display()
        );
    }
    let exe = std::env::current_exe().context("cannot find the usvfs executable's own path")?;
    let dir = exe.parent().unwrap_or(Path::new("/"));
    for cand in [dir.join(LIB_NAME), dir.join("../lib/usvfs").join(LIB_NAME)] {
        if cand.is_file() {
            return Ok(cand.canonicalize().unwrap_or(cand));
        }
    }
    bail!(
        "cannot find {LIB_NAME} next to {} or in ../lib/usvfs: build it with `cargo build --release` \
         or set USVFS_PRELOAD to its path",
        exe.display()
    )
}

pub struct Launch<'a> {
    pub instance: &'a Instance,
    pub lib: &'a Path,
    pub program_virt: &'a Path,
    pub program_phys: &'a Path,
    pub argv: &'a [std::ffi::OsString],
    /// (physical dir to chdir to, virtual path to report)
    pub cwd: Option<(PathBuf, Vec<u8>)>,
    /// Takes the signals sent to usvfs and forwards them to the program.
    pub signals: &'a crate::signals::Forwarder,
}

/// The first descriptor number tried for the instance directory: high, out
/// of the way of programs that expect 0..N to be theirs.
const INSTANCE_FD_MIN: i32 = 900;

/// Grows this process's descriptor table past [`INSTANCE_FD_MIN`] now, while
/// it has one thread: the kernel grows a table that threads share only
/// after an RCU grace period (about 10 ms here), which the launch would
/// otherwise wait for when it places the instance's descriptor.
pub fn reserve_instance_fd_number() {
    if let Ok(fd) = rustix::fs::open(
        "/",
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    ) {
        // Dropped at once: the table keeps its size.
        let _ = rustix::io::fcntl_dupfd_cloexec(&fd, INSTANCE_FD_MIN);
    }
}

/// Opens `dir` as a descriptor the program inherits (not close-on-exec), and
/// its [`launch_env::ENV_INSTANCE_FD`] value. `None` when it cannot (the
/// path alone then leads to the instance).
fn instance_dir_fd(dir: &std::path::Path) -> Option<(std::os::fd::OwnedFd, Vec<u8>)> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(
        dir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let high = rustix::io::fcntl_dupfd_cloexec(&fd, INSTANCE_FD_MIN).ok()?;
    rustix::io::fcntl_setfd(&high, rustix::io::FdFlags::empty()).ok()?;
    let st = rustix::fs::fstat(&high).ok()?;
    let spec =
        launch_env::instance_fd_spec(std::os::fd::AsRawFd::as_raw_fd(&high), st.st_dev, st.st_ino);
    Some((high, spec))
}

/// Runs the program and returns its exit code (128+N when killed by signal N).
pub fn run(l: Launch<'_>) -> Result<i32> {
    let (exe, argv) = usvfs_control::program::command_line(l.program_virt, l.program_phys, l.argv);
    let mut cmd = Command::new(&exe);
    cmd.arg0(&argv[0]).args(&argv[1..]);
    // One environment builder for every launcher (the exec hooks use it too).
    let vcwd = l.cwd.as_ref().map(|(_, v)| v.as_slice());
    // The instance directory as an inherited descriptor too: a container
    // with a private /tmp (or another mount namespace) still reaches it.
    let dir_fd = instance_dir_fd(&l.instance.dir);
    let fd_spec = dir_fd.as_ref().map(|(_, spec)| spec.clone());
    let join = launch_env::Join {
        instance_dir: l.instance.dir.as_os_str().as_bytes(),
        instance_fd: fd_spec.as_deref(),
        vcwd,
        hold: None,
    };
    let env = launch_env::child_env(
        std::env::vars_os().map(|(k, v)| {
            let mut e = k.into_vec();
            e.push(b'=');
            e.extend(v.into_vec());
            e
        }),
        l.lib.as_os_str().as_bytes(),
        Some(&join),
        &[],
    );
    cmd.env_clear();
    for e in env {
        let i = e.iter().position(|&c| c == b'=').unwrap_or(e.len());
        cmd.env(
            OsStr::from_bytes(&e[..i]),
            OsStr::from_bytes(&e[(i + 1).min(e.len())..]),
        );
    }
    if let Some((phys, _)) = &l.cwd {
        cmd.current_dir(phys);
    }
    // The program stays in our process group, so the terminal's ^C and ^\
    // reach it; other signals sent to usvfs are forwarded (signals.rs).
    // SAFETY: getpid cannot fail.
    let parent = unsafe { libc::getpid() };
    // SAFETY: child_setup makes async-signal-safe calls only.
    unsafe {
        cmd.pre_exec(move || crate::signals::child_setup(parent));
    }
    let mut child = l
        .signals
        .spawn(|| {
            let c = cmd.spawn()?;
            let pid = c.id() as libc::pid_t;
            Ok((c, pid))
        })
        .with_context(|| format!("cannot start {}", l.program_phys.display()))?;
    tracing::debug!(pid = child.id(), "started");
    l.signals.wait_exit(child.id() as libc::pid_t);
    let status = child.wait().context("waiting for the program")?;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

/// Starting the program with the mount engine.
pub struct MountLaunch<'a> {
    pub instance: &'a Instance,
    pub points: Vec<Vec<u8>>,
    pub argv: &'a [std::ffi::OsString],
    /// The view's working directory for the program (a virtual path).
    pub cwd: PathBuf,
    pub signals: &'a crate::signals::Forwarder,
}

/// Runs the program in its private namespaces with the view mounted, serves
/// the mounts until the namespace's last process is gone, and returns the
/// program's exit code (128+N when killed by signal N).
pub fn run_mount(l: MountLaunch<'_>) -> Result<i32> {
    use usvfs_mount::ns::Namespace;
    let (ns, receiver) = Namespace::prepare(&l.points, Some(&l.cwd))?;
    let server = usvfs_mount::Server::start(&l.instance.dir, l.points, receiver)?;
    let ns = std::sync::Arc::new(ns);
    // The program's name is looked up (PATH, a relative path) by exec, after
    // the namespace setup entered the working directory: in the view.
    let mut cmd = Command::new(&l.argv[0]);
    cmd.args(&l.argv[1..]);
    // SAFETY: getpid cannot fail.
    let parent = unsafe { libc::getpid() };
    let child_ns = ns.clone();
    // SAFETY: child_setup and Namespace::enter make async-signal-safe calls
    // only (no allocation: everything was prepared before the fork).
    unsafe {
        cmd.pre_exec(move || crate::signals::child_setup(parent));
        cmd.pre_exec(move || child_ns.enter());
    }
    let spawned = l.signals.spawn(|| {
        let c = cmd.spawn()?;
        let pid = c.id() as libc::pid_t;
        Ok((c, pid))
    });
    // Our copies of the child's socket end go, so a child that died without
    // handing the mounts over ends the server's wait.
    drop(cmd);
    if let Ok(ns) = std::sync::Arc::try_unwrap(ns) {
        ns.close_child_end();
    }
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            return match server.wait(e.raw_os_error()) {
                Err(setup @ usvfs_mount::Error::Namespace(Some(_), _)) => Err(setup.into()),
                _ => {
                    let shown = l.argv[0].to_string_lossy().into_owned();
                    Err(match e.kind() {
                        std::io::ErrorKind::NotFound => {
                            anyhow::Error::new(usvfs_control::program::ProgramError::NotFound(
                                format!("{shown}: not found in the view"),
                            ))
                        }
                        std::io::ErrorKind::PermissionDenied => {
                            anyhow::Error::new(usvfs_control::program::ProgramError::NotExecutable(
                                format!("{shown}: {e}"),
                            ))
                        }
                        _ => anyhow::Error::new(e).context(format!("cannot start {shown}")),
                    })
                }
            };
        }
    };
    tracing::debug!(pid = child.id(), "started in the mount namespace");
    // Recorded while served: joining controllers and `usvfs ps` find it.
    let mnt_ns = usvfs_control::mount_ns::ns_inode(child.id() as i32, "mnt");
    if let Some(ino) = mnt_ns {
        let _ = l.instance.record_namespace(ino, std::process::id() as i32);
    }
    l.signals.wait_exit(child.id() as libc::pid_t);
    let status = child.wait().context("waiting for the program")?;
    // Background processes the program left keep the namespace, and so the
    // mounts, alive: serve them until the last one is gone.
    if let Err(e) = server.wait(None) {
        tracing::warn!(error = %e, "mount engine");
    }
    if let Some(ino) = mnt_ns {
        l.instance.forget_namespace(ino);
    }
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}
