//! Starting programs from inside the view: a program that lives in the view
//! starts from its physical file; a script in the view runs through its
//! interpreter with its *virtual* path (so `$0` and `dirname "$0"` stay in the
//! view); blacklisted executables start outside the view; forced libraries
//! are preloaded into the programs they name. Shared by every engine and by
//! the controllers.

use crate::path;

/// Rules applied when a hooked process starts a program, changeable while the
/// instance runs (kept beside the index, read at each exec).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecRules {
    /// Executables (base name or full path) started outside the view.
    pub blacklist: Vec<Vec<u8>>,
    /// (executable base name, library) pairs: the library is preloaded too.
    pub force_loads: Vec<(Vec<u8>, Vec<u8>)>,
    /// Refuse (`EACCES`) to start a program the engine cannot follow
    /// (`usvfs run --strict`) instead of warning and starting it.
    pub strict: bool,
}

impl ExecRules {
    /// The stored form: NUL-separated tagged fields.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for b in &self.blacklist {
            out.extend_from_slice(b"B\0");
            out.extend_from_slice(b);
            out.push(0);
        }
        for (p, l) in &self.force_loads {
            out.extend_from_slice(b"F\0");
            out.extend_from_slice(p);
            out.push(0);
            out.extend_from_slice(l);
            out.push(0);
        }
        if self.strict {
            out.extend_from_slice(b"S\0");
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Self {
        let mut r = ExecRules::default();
        let mut it = bytes.split(|&c| c == 0);
        while let Some(tag) = it.next() {
            match tag {
                b"B" => {
                    if let Some(n) = it.next() {
                        r.blacklist.push(n.to_vec());
                    }
                }
                b"F" => {
                    if let (Some(p), Some(l)) = (it.next(), it.next()) {
                        r.force_loads.push((p.to_vec(), l.to_vec()));
                    }
                }
                b"S" => r.strict = true,
                _ => {}
            }
        }
        r
    }

    /// True when `exe` (a path) is blacklisted by base name or full path.
    pub fn is_blacklisted(&self, exe: &[u8]) -> bool {
        let base = path::file_name(exe);
        self.blacklist
            .iter()
            .any(|b| b.as_slice() == exe || b.as_slice() == base)
    }

    /// Libraries to preload into `exe`.
    pub fn libraries_for<'a>(&'a self, exe: &[u8]) -> impl Iterator<Item = &'a [u8]> + use<'a> {
        let base = path::file_name(exe).to_vec();
        self.force_loads
            .iter()
            .filter(move |(p, _)| p.as_slice() == base.as_slice())
            .map(|(_, l)| l.as_slice())
    }
}

/// The interpreter and its optional argument of a script starting with `#!`
/// (`head`: the file's first bytes).
pub fn shebang(head: &[u8]) -> Option<(Vec<u8>, Option<Vec<u8>>)> {
    let line = head
        .strip_prefix(b"#!")?
        .split(|&c| c == b'\n')
        .next()?
        .trim_ascii();
    let mut parts = line.splitn(2, |c| c.is_ascii_whitespace());
    let interp = parts.next().filter(|i| !i.is_empty())?;
    let arg = parts
        .next()
        .map(|a| a.trim_ascii())
        .filter(|a| !a.is_empty());
    Some((interp.to_vec(), arg.map(|a| a.to_vec())))
}

/// The candidates `execvp` tries for `file` (no slash) along `path_var`
/// (`PATH`; an empty entry is the working directory).
pub fn path_candidates<'a>(
    file: &'a [u8],
    path_var: &'a [u8],
) -> impl Iterator<Item = Vec<u8>> + use<'a> {
    search_candidates(file, path_var, |c| c == b':')
}

/// `dir/file` for each directory of a search list split where `sep` says
/// (an empty entry is the working directory).
pub fn search_candidates<'a>(
    file: &'a [u8],
    list: &'a [u8],
    sep: fn(u8) -> bool,
) -> impl Iterator<Item = Vec<u8>> + use<'a> {
    list.split(move |&c| sep(c)).map(move |dir| {
        let mut cand = if dir.is_empty() {
            b".".to_vec()
        } else {
            dir.to_vec()
        };
        cand.push(b'/');
        cand.extend_from_slice(file);
        cand
    })
}

/// Tries each `PATH` candidate like glibc's `execvp`: the first success wins,
/// "not there" errors move on, `EACCES` is remembered, other errors stop.
pub fn search_path<T>(
    file: &[u8],
    path_var: &[u8],
    mut attempt: impl FnMut(&[u8]) -> Result<T, i32>,
) -> Result<T, i32> {
    let mut saw_eacces = false;
    for cand in path_candidates(file, path_var) {
        match attempt(&cand) {
            Ok(v) => return Ok(v),
            Err(libc::EACCES) => saw_eacces = true,
            Err(libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT) => {}
            Err(e) => return Err(e),
        }
    }
    Err(if saw_eacces {
        libc::EACCES
    } else {
        libc::ENOENT
    })
}

/// Where a program path leads in the view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Located {
    /// Outside the view: the path as given.
    AsGiven,
    /// In the view: this physical file, reached at this virtual path.
    Physical { phys: Vec<u8>, virt: Vec<u8> },
}

/// How to start a program: what to execute, with which arguments, and
/// whether it joins the view (with which extra libraries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecPlan {
    pub program: Vec<u8>,
    pub argv: Vec<Vec<u8>>,
    /// False for blacklisted programs: they start outside the view.
    pub join: bool,
    /// Forced libraries to preload besides the engine.
    pub extra_libs: Vec<Vec<u8>>,
}

/// Works out how to start `path` (as the program gave it) with `argv`.
/// `located` is where `path` leads; `locate` finds an interpreter in the
/// view; `head` reads a physical file's first bytes (for `#!`);
/// `blacklisted` is the index's own blacklist.
pub fn plan(
    path: &[u8],
    located: Located,
    argv: Vec<Vec<u8>>,
    rules: &ExecRules,
    blacklisted: &dyn Fn(&[u8]) -> bool,
    locate: &mut dyn FnMut(&[u8]) -> Result<Located, i32>,
    head: &mut dyn FnMut(&[u8]) -> Option<Vec<u8>>,
) -> Result<ExecPlan, i32> {
    let (target, virt) = match &located {
        Located::AsGiven => (path.to_vec(), path.to_vec()),
        Located::Physical { phys, virt } => (phys.clone(), virt.clone()),
    };
    let is_blacklisted = blacklisted(path)
        || blacklisted(&virt)
        || rules.is_blacklisted(path)
        || rules.is_blacklisted(&virt);
    let extra_libs: Vec<Vec<u8>> = rules.libraries_for(&virt).map(|l| l.to_vec()).collect();
    if is_blacklisted {
        // Outside the view: the real disk decides what runs.
        return Ok(ExecPlan {
            program: path.to_vec(),
            argv,
            join: false,
            extra_libs,
        });
    }
    if matches!(located, Located::Physical { .. })
        && let Some((interp, arg)) = head(&target).and_then(|h| shebang(&h))
    {
        let mut args = vec![interp.clone()];
        args.extend(arg);
        args.push(virt);
        args.extend(argv.into_iter().skip(1));
        let program = match locate(&interp) {
            Ok(Located::Physical { phys, .. }) => phys,
            _ => interp,
        };
        return Ok(ExecPlan {
            program,
            argv: args,
            join: true,
            extra_libs,
        });
    }
    Ok(ExecPlan {
        program: target,
        argv,
        join: true,
        extra_libs,
    })
}
