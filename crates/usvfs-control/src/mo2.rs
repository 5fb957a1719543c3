//! Mod Organizer 2 instances: reads `ModOrganizer.ini` and a profile's
//! `modlist.txt` / `settings.ini` and turns them into link rules, the way
//! MO2's own usvfs mapping does (`OrganizerCore::fileMapping`, the game
//! plugin's `mappings()`, `IniBakery`, `LocalSavegames`).
//!
//! * `ModOrganizer.ini` is a QSettings INI file: `[General] gameName`,
//!   `gamePath` and `selected_profile` (QByteArrays, written
//!   `@ByteArray(...)`), `game_edition`; `[Settings] base_directory`,
//!   `mod_directory`, `overwrite_directory`, `profiles_directory` (default
//!   `%BASE_DIR%/mods` etc., `%BASE_DIR%` the base directory, itself by
//!   default the ini's directory). Values use QSettings escapes (`\\`,
//!   `\xHHHH`, quotes).
//! * Paths are Windows paths, translated through the Wine prefix's
//!   `dosdevices` links ([`windows_to_unix`]).
//! * `modlist.txt`: one mod per line, first line = highest priority; `+`
//!   enabled, `-` disabled, `*` unmanaged (DLCs, not a folder), `#` comment;
//!   names ending in `_separator` are separators.
//!
//! Paths built here are bytes; only ini values and mod names are text.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::mapping::{LinkFlags, Mapping};

/// What can go wrong reading an MO2 instance. Every variant names the file
/// (and the line, when one is at fault).
#[derive(Debug, thiserror::Error)]
pub enum Mo2Error {
    #[error("{path:?}: cannot read it ({source}): check that the MO2 instance and profile exist")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path:?} line {line}: {message}")]
    Malformed {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path:?}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("mod {name:?} ({path:?}): {source}")]
    Link {
        name: String,
        path: PathBuf,
        source: Box<Error>,
    },
}

impl Mo2Error {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            Mo2Error::Read { path, .. }
            | Mo2Error::Malformed { path, .. }
            | Mo2Error::Invalid { path, .. }
            | Mo2Error::Link { path, .. } => path,
        }
    }
}

type Result<T> = std::result::Result<T, Mo2Error>;

// ------------------------------------------------------------- QSettings INI

/// One `key=value` of an INI file, its value unescaped.
#[derive(Debug, Clone)]
struct Entry {
    section: String,
    key: String,
    value: String,
    line: usize,
}

/// A QSettings-style INI file.
#[derive(Debug, Clone)]
pub struct Ini {
    path: PathBuf,
    entries: Vec<Entry>,
}

impl Ini {
    pub fn read(path: &Path) -> Result<Ini> {
        let bytes = std::fs::read(path).map_err(|source| Mo2Error::Read {
            path: path.into(),
            source,
        })?;
        Ini::parse(&bytes, path)
    }

    /// A game's own INI file (read as Windows' GetPrivateProfileString
    /// does: values as written, no QSettings escapes); `None` when it
    /// cannot be read.
    fn read_game_ini(path: &Path) -> Option<Ini> {
        let bytes = std::fs::read(path).ok()?;
        let text = String::from_utf8_lossy(&bytes);
        let mut entries = Vec::new();
        let mut section = String::new();
        for (i, l) in text.lines().enumerate() {
            let l = l.trim();
            if let Some(name) = l.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
                section = name.trim().to_ascii_lowercase();
            } else if let Some((k, v)) = l.split_once('=') {
                entries.push(Entry {
                    section: section.clone(),
                    key: k.trim().to_ascii_lowercase(),
                    value: v.trim().to_string(),
                    line: i + 1,
                });
            }
        }
        Some(Ini {
            path: path.into(),
            entries,
        })
    }

    pub fn parse(bytes: &[u8], path: &Path) -> Result<Ini> {
        // Qt 6 writes UTF-8; Qt 5 wrote Latin-1 with \x escapes for the
        // rest. Either way a byte that is not UTF-8 is a Latin-1 character.
        let text = match std::str::from_utf8(bytes) {
            Ok(t) => t.to_string(),
            Err(_) => bytes.iter().map(|&b| b as char).collect(),
        };
        let mut entries = Vec::new();
        let mut section = String::from("General");
        for (i, raw) in text.split('\n').enumerate() {
            let line = i + 1;
            let l = raw.trim();
            if l.is_empty() || l.starts_with(';') || l.starts_with('#') {
                continue;
            }
            if let Some(rest) = l.strip_prefix('[') {
                let Some(name) = rest.strip_suffix(']') else {
                    return Err(Mo2Error::Malformed {
                        path: path.into(),
                        line,
                        message: format!("section header {l:?} has no closing ']'"),
                    });
                };
                section = name.trim().to_string();
                continue;
            }
            let Some((k, v)) = l.split_once('=') else {
                return Err(Mo2Error::Malformed {
                    path: path.into(),
                    line,
                    message: format!("{l:?} is neither a [section] nor a key=value line"),
                });
            };
            let value = unescape(v.trim()).map_err(|message| Mo2Error::Malformed {
                path: path.into(),
                line,
                message,
            })?;
            entries.push(Entry {
                section: section.clone(),
                key: k.trim().to_string(),
                value,
                line,
            });
        }
        Ok(Ini {
            path: path.into(),
            entries,
        })
    }

    /// The last value of `section`/`key` (QSettings keys are case-sensitive)
    /// with its line.
    fn get(&self, section: &str, key: &str) -> Option<(&str, usize)> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.section == section && e.key == key)
            .map(|e| (e.value.as_str(), e.line))
    }

    /// A value that may be written `@ByteArray(...)` (MO2 stores paths and
    /// the profile name as UTF-8 byte arrays).
    fn get_text(&self, section: &str, key: &str) -> Result<Option<(String, usize)>> {
        let Some((v, line)) = self.get(section, key) else {
            return Ok(None);
        };
        let text = match byte_array(v) {
            Some(bytes) => String::from_utf8(bytes).map_err(|_| Mo2Error::Malformed {
                path: self.path.clone(),
                line,
                message: format!("{key}: the byte array is not UTF-8"),
            })?,
            None => v.to_string(),
        };
        Ok(Some((text, line)))
    }

    fn get_bool(&self, section: &str, key: &str) -> Option<bool> {
        self.get(section, key)
            .map(|(v, _)| v.eq_ignore_ascii_case("true") || v == "1")
    }
}

/// Undoes QSettings' escaping of a value: `"..."` quoting, `\\`, `\"`,
/// `\n`-style escapes, `\xHHHH` (any number of hex digits: QSettings
/// escapes a hex digit that follows one) and `\NNN` octal.
fn unescape(v: &str) -> std::result::Result<String, String> {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {}
            '\\' => {
                let Some(e) = chars.next() else {
                    return Err("the value ends with a lone backslash".into());
                };
                match e {
                    'a' => out.push('\x07'),
                    'b' => out.push('\x08'),
                    'f' => out.push('\x0c'),
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    'v' => out.push('\x0b'),
                    'x' => {
                        let mut n: u32 = 0;
                        let mut any = false;
                        while let Some(d) = chars.peek().and_then(|c| c.to_digit(16)) {
                            n = n.saturating_mul(16).saturating_add(d);
                            any = true;
                            chars.next();
                        }
                        let ch = char::from_u32(n).filter(|_| any).ok_or_else(|| {
                            format!("\\x escape with no valid character code in {v:?}")
                        })?;
                        out.push(ch);
                    }
                    '0'..='7' => {
                        let mut n = e.to_digit(8).unwrap_or(0);
                        while let Some(d) = chars.peek().and_then(|c| c.to_digit(8)) {
                            n = n * 8 + d;
                            chars.next();
                        }
                        out.push(char::from_u32(n).unwrap_or('\u{fffd}'));
                    }
                    other => out.push(other),
                }
            }
            other => out.push(other),
        }
    }
    Ok(out)
}

/// The bytes of a `@ByteArray(...)` value (each character one byte, as
/// QSettings writes them), or `None` for a plain value.
fn byte_array(v: &str) -> Option<Vec<u8>> {
    let inner = v.strip_prefix("@ByteArray(")?.strip_suffix(')')?;
    let mut out = Vec::with_capacity(inner.len());
    for c in inner.chars() {
        if (c as u32) < 0x100 {
            out.push(c as u32 as u8);
        } else {
            let mut b = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
        }
    }
    Some(out)
}

// ---------------------------------------------------------- Windows paths

/// Translates a path MO2 wrote (`C:\Games\Skyrim`, `Z:/home/me/mods`, or
/// already a Unix path) into a Linux path through the Wine prefix's
/// `dosdevices` drive links (`c:` -> `../drive_c`, `z:` -> `/`). Windows
/// names are case-insensitive: a component missing in the given case takes
/// the spelling of a directory entry that matches it in any case.
pub fn windows_to_unix(prefix: Option<&Path>, value: &str) -> std::result::Result<PathBuf, String> {
    let v = value.trim();
    if v.starts_with('/') {
        return Ok(PathBuf::from(v));
    }
    let b = v.as_bytes();
    if b.len() < 2 || !b[0].is_ascii_alphabetic() || b[1] != b':' {
        return Err(format!(
            "{v:?} is not an absolute path (expected a drive letter like C:\\ or a Unix path)"
        ));
    }
    let letter = (b[0].to_ascii_lowercase() as char).to_string() + ":";
    let mut out = match prefix {
        Some(prefix) => {
            let link = prefix.join("dosdevices").join(&letter);
            let target = std::fs::read_link(&link).map_err(|e| {
                format!(
                    "{v:?}: drive {} is not defined in the Wine prefix ({}: {e})",
                    letter.to_uppercase(),
                    link.display()
                )
            })?;
            let t = if target.is_absolute() {
                target
            } else {
                prefix.join("dosdevices").join(target)
            };
            PathBuf::from(OsString::from_vec(crate::path::normalize(
                t.as_os_str().as_bytes(),
                b"/",
            )))
        }
        // Wine's default Z: is the root in every prefix.
        None if letter == "z:" => PathBuf::from("/"),
        None => {
            return Err(format!(
                "{v:?} is a Windows path, and no Wine prefix was found to translate it: \
                 set WINEPREFIX (or keep the instance inside the prefix's drive_c)"
            ));
        }
    };
    for comp in v[2..]
        .split(['\\', '/'])
        .filter(|c| !c.is_empty() && *c != ".")
    {
        if comp == ".." {
            out.pop();
            continue;
        }
        out = join_any_case(&out, comp);
    }
    Ok(out)
}

/// `dir/name`, spelled as an existing entry of `dir` that equals `name` in
/// any case when `name` itself does not exist.
fn join_any_case(dir: &Path, name: &str) -> PathBuf {
    let exact = dir.join(name);
    if std::fs::symlink_metadata(&exact).is_ok() {
        return exact;
    }
    let key = usvfs_view::fold::fold_vec(name.as_bytes());
    if let Ok(rd) = std::fs::read_dir(dir) {
        let mut found: Vec<OsString> = rd
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .filter(|n| usvfs_view::fold::fold_vec(n.as_bytes()) == key)
            .collect();
        found.sort();
        if let Some(n) = found.into_iter().next() {
            return dir.join(n);
        }
    }
    exact
}

/// The Wine prefix an instance directory lives in: the nearest ancestor
/// holding `dosdevices/`.
pub fn prefix_of(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .find(|a| a.join("dosdevices").is_dir())
        .map(Path::to_path_buf)
}

// ------------------------------------------------------------------ games

/// What MO2's game plugins say about a game: where the game reads its
/// configuration and load order inside the Wine prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Game {
    /// MO2's `gameName` (the plugin's name for the game).
    pub name: String,
    /// Below the game folder, where mods go (`Data`); empty: the game folder.
    pub data: &'static str,
    /// `Documents/My Games/<this>`: the game's INI files and saves.
    pub my_games: Option<String>,
    /// `AppData/Local/<this>`: `plugins.txt` and `loadorder.txt`.
    pub app_data: Option<String>,
    /// The game's INI files (MO2's `iniFiles()`), copied per profile when
    /// the profile has local settings.
    pub ini_files: &'static [&'static str],
}

/// The Bethesda games MO2 knows (its game_bethesda plugins), by `gameName`
/// and `game_edition`; any other game maps mods onto the game folder.
pub fn game(name: &str, edition: Option<&str>) -> Game {
    let variant = |steam: &str, gog: &str, epic: &str| -> String {
        match edition {
            Some("GOG") => gog.to_string(),
            Some("Epic Games") => epic.to_string(),
            _ => steam.to_string(),
        }
    };
    let g = |data, my: String, app: String, ini: &'static [&'static str]| Game {
        name: name.to_string(),
        data,
        my_games: Some(my),
        app_data: Some(app),
        ini_files: ini,
    };
    const SKYRIM_SE: &[&str] = &["skyrim.ini", "skyrimprefs.ini", "skyrimcustom.ini"];
    const FALLOUT: &[&str] = &[
        "fallout.ini",
        "falloutprefs.ini",
        "falloutcustom.ini",
        "GECKCustom.ini",
        "GECKPrefs.ini",
    ];
    const FALLOUT4: &[&str] = &["fallout4.ini", "fallout4prefs.ini", "fallout4custom.ini"];
    const OBLIVION: &[&str] = &["oblivion.ini", "oblivionprefs.ini"];
    match name {
        "Skyrim Special Edition" => {
            let d = variant(
                "Skyrim Special Edition",
                "Skyrim Special Edition GOG",
                "Skyrim Special Edition EPIC",
            );
            g("Data", d.clone(), d, SKYRIM_SE)
        }
        "Skyrim" => g(
            "Data",
            "Skyrim".into(),
            "Skyrim".into(),
            &["skyrim.ini", "skyrimprefs.ini"],
        ),
        "Skyrim VR" => g(
            "Data",
            "Skyrim VR".into(),
            "Skyrim VR".into(),
            &["skyrimvr.ini", "skyrimprefs.ini"],
        ),
        "Enderal" => g(
            "Data",
            "Enderal".into(),
            "Enderal".into(),
            &["enderal.ini", "enderalprefs.ini"],
        ),
        "Enderal Special Edition" => {
            let d = variant(
                "Enderal Special Edition",
                "Enderal Special Edition GOG",
                "Enderal Special Edition",
            );
            g("Data", d.clone(), d, &["Enderal.ini", "EnderalPrefs.ini"])
        }
        "Oblivion" => g("Data", "Oblivion".into(), "Oblivion".into(), OBLIVION),
        "Nehrim" => g("Data", "Nehrim".into(), "Oblivion".into(), OBLIVION),
        "Fallout 3" => g("Data", "Fallout3".into(), "Fallout3".into(), FALLOUT),
        "New Vegas" | "TTW" => {
            let d = variant("FalloutNV", "FalloutNV", "FalloutNV_Epic");
            g("Data", d.clone(), "FalloutNV".into(), FALLOUT)
        }
        "Fallout 4" | "Fallout 4 London" => {
            g("Data", "Fallout4".into(), "Fallout4".into(), FALLOUT4)
        }
        "Fallout 4 VR" => g("Data", "Fallout4VR".into(), "Fallout4VR".into(), FALLOUT4),
        "Fallout 76" => g(
            "Data",
            "Fallout 76".into(),
            "Fallout76".into(),
            &["Fallout76.ini", "Fallout76Prefs.ini", "Fallout76Custom.ini"],
        ),
        "Starfield" => g(
            "Data",
            "Starfield".into(),
            "Starfield".into(),
            &["StarfieldPrefs.ini", "StarfieldCustom.ini"],
        ),
        // Morrowind keeps morrowind.ini in the game folder and has no
        // plugins.txt.
        "Morrowind" => Game {
            name: name.into(),
            data: "Data Files",
            my_games: None,
            app_data: None,
            ini_files: &[],
        },
        _ => Game {
            name: name.into(),
            data: "",
            my_games: None,
            app_data: None,
            ini_files: &[],
        },
    }
}

// -------------------------------------------------------------- instance

/// A mod of a profile's `modlist.txt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModEntry {
    pub name: String,
    pub state: ModState,
    pub line: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModState {
    Enabled,
    Disabled,
    /// `*`: a mod MO2 does not manage (a DLC, the game's own files).
    Unmanaged,
}

/// Reads `modlist.txt`: mods in file order (highest priority first). A name
/// listed again is ignored (as MO2 does).
pub fn read_modlist(path: &Path) -> Result<Vec<ModEntry>> {
    let bytes = std::fs::read(path).map_err(|source| Mo2Error::Read {
        path: path.into(),
        source,
    })?;
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = i + 1;
        let bad = |message: String| Mo2Error::Malformed {
            path: path.into(),
            line,
            message,
        };
        let l = std::str::from_utf8(raw)
            .map_err(|_| bad("the line is not UTF-8 text".into()))?
            .trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let (state, name) = match l.as_bytes()[0] {
            b'+' => (ModState::Enabled, l[1..].trim()),
            b'-' => (ModState::Disabled, l[1..].trim()),
            b'*' => (ModState::Unmanaged, l[1..].trim()),
            _ => (ModState::Enabled, l),
        };
        if name.is_empty() {
            continue;
        }
        if name.contains(['/', '\\', '\0']) || name == "." || name == ".." {
            return Err(bad(format!(
                "{name:?} is not a mod folder name (it contains a path separator)"
            )));
        }
        if !seen.insert(name.to_string()) {
            continue;
        }
        out.push(ModEntry {
            name: name.into(),
            state,
            line,
        });
    }
    Ok(out)
}

/// An MO2 instance as its `ModOrganizer.ini` describes it.
#[derive(Debug, Clone)]
pub struct Instance {
    pub ini: PathBuf,
    pub game: Game,
    pub game_dir: PathBuf,
    pub mods_dir: PathBuf,
    pub overwrite_dir: PathBuf,
    pub profiles_dir: PathBuf,
    pub selected_profile: Option<String>,
    /// The prefix Windows paths of the ini were translated through.
    pub prefix: Option<PathBuf>,
}

impl Instance {
    /// Reads `dir/ModOrganizer.ini`. `wine_prefix`: the prefix to translate
    /// Windows paths through when the instance does not live inside one.
    pub fn open(dir: &Path, wine_prefix: Option<&Path>) -> Result<Instance> {
        let dir = crate::mapping::absolute(dir).map_err(|e| Mo2Error::Invalid {
            path: dir.into(),
            message: e.to_string(),
        })?;
        let ini_path = dir.join("ModOrganizer.ini");
        let ini = Ini::read(&ini_path)?;
        let prefix = prefix_of(&dir).or_else(|| wine_prefix.map(Path::to_path_buf));
        let path_of = |value: &str, line: usize| -> Result<PathBuf> {
            windows_to_unix(prefix.as_deref(), value).map_err(|message| Mo2Error::Malformed {
                path: ini_path.clone(),
                line,
                message,
            })
        };
        let (name, _) = ini
            .get_text("General", "gameName")?
            .ok_or_else(|| Mo2Error::Invalid {
                path: ini_path.clone(),
                message: "no gameName in [General]: is this a Mod Organizer 2 instance?".into(),
            })?;
        let edition = ini.get_text("General", "game_edition")?.map(|(e, _)| e);
        let (gp, gp_line) =
            ini.get_text("General", "gamePath")?
                .ok_or_else(|| Mo2Error::Invalid {
                    path: ini_path.clone(),
                    message:
                        "no gamePath in [General]: open the instance in MO2 once to set the game"
                            .into(),
                })?;
        let game_dir = path_of(&gp, gp_line)?;
        // [Settings] directories: %BASE_DIR% is base_directory, itself the
        // instance directory by default.
        let base = match ini.get_text("Settings", "base_directory")? {
            Some((b, line)) => path_of(&b, line)?,
            None => dir.clone(),
        };
        let setting = |key: &str, default: &str| -> Result<PathBuf> {
            match ini.get_text("Settings", key)? {
                Some((v, line)) => {
                    let bs = base.as_os_str().as_bytes();
                    match v.strip_prefix("%BASE_DIR%") {
                        Some(rest) => {
                            let mut p = bs.to_vec();
                            for c in rest.split(['\\', '/']).filter(|c| !c.is_empty()) {
                                p = join_any_case(Path::new(OsStr::from_bytes(&p)), c)
                                    .into_os_string()
                                    .into_vec();
                            }
                            Ok(PathBuf::from(OsString::from_vec(p)))
                        }
                        None => path_of(&v, line),
                    }
                }
                None => Ok(join_any_case(&base, default)),
            }
        };
        let selected_profile = ini.get_text("General", "selected_profile")?.map(|(p, _)| p);
        Ok(Instance {
            game: game(&name, edition.as_deref()),
            game_dir,
            mods_dir: setting("mod_directory", "mods")?,
            overwrite_dir: setting("overwrite_directory", "overwrite")?,
            profiles_dir: setting("profiles_directory", "profiles")?,
            selected_profile,
            prefix,
            ini: ini_path,
        })
    }

    /// The profile names (folders of the profiles directory), sorted.
    pub fn profiles(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.profiles_dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter(|e| e.path().is_dir())
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

/// One layer of an MO2 mapping: a rule and the name to show for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub name: String,
    /// Index of its rule in the mapping.
    pub rule: usize,
    /// A mod or the overwrite folder (merged onto the data folder), as
    /// opposed to a profile file.
    pub data: bool,
}

/// What loading a profile into a mapping did.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// The layers added, lowest priority first.
    pub layers: Vec<Layer>,
    /// Things skipped (a mod whose folder is missing, ...), one sentence each.
    pub warnings: Vec<String>,
    pub profile: String,
    pub data_dir: PathBuf,
}

/// Options of an MO2 mapping.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub instance: PathBuf,
    /// The profile; default the instance's `selected_profile`, else `Default`.
    pub profile: Option<String>,
    /// Where mods go; default the game's data folder.
    pub data_dir: Option<PathBuf>,
    /// The Wine prefix the game runs in (WINEPREFIX, Proton's pfx); also
    /// used to translate Windows paths when the instance is not inside a
    /// prefix.
    pub wine_prefix: Option<PathBuf>,
}

/// The Wine prefix the environment names: `WINEPREFIX`, else Proton's
/// `STEAM_COMPAT_DATA_PATH/pfx`.
pub fn env_prefix() -> Option<PathBuf> {
    let nonempty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    nonempty("WINEPREFIX")
        .map(PathBuf::from)
        .or_else(|| nonempty("STEAM_COMPAT_DATA_PATH").map(|p| PathBuf::from(p).join("pfx")))
}

/// The name of each rule of `m` that `loaded` added (by rule index).
pub fn labels(m: &Mapping, loaded: &Loaded) -> Vec<Option<String>> {
    let mut v = vec![None; m.rules.len()];
    for l in &loaded.layers {
        if let Some(slot) = v.get_mut(l.rule) {
            *slot = Some(l.name.clone());
        }
    }
    v
}

/// Which rules of `m` are MO2 mods or its overwrite folder (by rule index).
pub fn data_layers(m: &Mapping, loaded: &Loaded) -> Vec<bool> {
    let mut v = vec![false; m.rules.len()];
    for l in loaded.layers.iter().filter(|l| l.data) {
        if let Some(slot) = v.get_mut(l.rule) {
            *slot = true;
        }
    }
    v
}

/// MO2's bookkeeping in a mod folder, which its conflict lists leave out
/// (`DirectoryRefresher::cleanStructure`): `meta.ini`, `readme.txt` and
/// `fomod/` at the top of a mod. (The game still sees them, as under MO2.)
pub fn is_bookkeeping(rel: &[u8]) -> bool {
    let top = rel.split(|&c| c == b'/').next().unwrap_or(rel);
    rel.eq_ignore_ascii_case(b"meta.ini")
        || rel.eq_ignore_ascii_case(b"readme.txt")
        || (top.eq_ignore_ascii_case(b"fomod") && top.len() < rel.len())
}

/// The Wine user folder (`drive_c/users/NAME`) the game uses: `$USER`'s,
/// else Proton's `steamuser`, else the only other one.
fn wine_user_dir(prefix: &Path) -> Option<PathBuf> {
    let users = prefix.join("drive_c").join("users");
    let mut names = vec![];
    if let Some(u) = std::env::var_os("USER") {
        names.push(u);
    }
    names.push("steamuser".into());
    if let Some(d) = names.iter().map(|n| users.join(n)).find(|d| d.is_dir()) {
        return Some(d);
    }
    let mut others: Vec<PathBuf> = std::fs::read_dir(&users)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name() != "Public" && e.path().is_dir())
        .map(|e| e.path())
        .collect();
    others.sort();
    (others.len() == 1).then(|| others.remove(0))
}

/// Adds the rules of an MO2 profile to `m`, in MO2's priority order: the
/// enabled mods (the last line of `modlist.txt` lowest), the overwrite
/// folder as create target, and the profile's local INIs, saves and
/// `plugins.txt`/`loadorder.txt` where the game reads them in the prefix.
pub fn add_to_mapping(m: &mut Mapping, opts: &Options) -> Result<Loaded> {
    let inst = Instance::open(&opts.instance, opts.wine_prefix.as_deref())?;
    let profile = opts
        .profile
        .clone()
        .or(inst.selected_profile.clone())
        .unwrap_or_else(|| "Default".into());
    if profile.contains(['/', '\\']) || profile == ".." || profile.is_empty() {
        return Err(Mo2Error::Invalid {
            path: inst.profiles_dir.clone(),
            message: format!("{profile:?} is not a profile name"),
        });
    }
    let pdir = inst.profiles_dir.join(&profile);
    if !pdir.is_dir() {
        return Err(Mo2Error::Invalid {
            path: pdir,
            message: format!(
                "no profile {profile:?} in this instance (profiles: {})",
                inst.profiles().join(", ")
            ),
        });
    }
    let modlist = pdir.join("modlist.txt");
    let mods = read_modlist(&modlist)?;
    let settings = pdir.join("settings.ini");
    let psettings = if settings.exists() {
        Some(Ini::read(&settings)?)
    } else {
        None
    };
    let local_saves = psettings
        .as_ref()
        .and_then(|s| s.get_bool("General", "LocalSaves"))
        .unwrap_or(false);
    let local_settings = psettings
        .as_ref()
        .and_then(|s| s.get_bool("General", "LocalSettings"))
        .unwrap_or(false);

    let data_dir = match &opts.data_dir {
        Some(d) => crate::mapping::absolute(d).map_err(|e| Mo2Error::Invalid {
            path: d.clone(),
            message: e.to_string(),
        })?,
        None if inst.game.data.is_empty() => inst.game_dir.clone(),
        None => join_any_case(&inst.game_dir, inst.game.data),
    };
    let mut loaded = Loaded {
        profile: profile.clone(),
        data_dir: data_dir.clone(),
        ..Default::default()
    };
    let rec = LinkFlags(LinkFlags::RECURSIVE);
    let link = |m: &mut Mapping,
                loaded: &mut Loaded,
                name: &str,
                src: &Path,
                dest: &Path,
                flags: Option<LinkFlags>|
     -> Result<()> {
        let r = match flags {
            Some(f) => m.link_directory(src, dest, f),
            None => m.link_file(src, dest, LinkFlags(0)),
        };
        r.map_err(|e| Mo2Error::Link {
            name: name.into(),
            path: src.into(),
            source: Box::new(e),
        })?;
        loaded.layers.push(Layer {
            name: name.into(),
            rule: m.rules.len() - 1,
            data: dest == data_dir.as_path(),
        });
        Ok(())
    };
    // modlist.txt lists the highest priority first; rules go lowest first.
    for e in mods.iter().rev() {
        if e.state != ModState::Enabled
            || e.name.ends_with("_separator")
            || e.name.eq_ignore_ascii_case("overwrite")
        {
            continue;
        }
        let dir = join_any_case(&inst.mods_dir, &e.name);
        if !dir.is_dir() {
            let w = format!(
                "mod {:?} ({} line {}) has no folder {}: skipped",
                e.name,
                modlist.display(),
                e.line,
                dir.display()
            );
            tracing::debug!("{w}");
            loaded.warnings.push(w);
            continue;
        }
        link(m, &mut loaded, &e.name, &dir, &data_dir, Some(rec))?;
    }
    if inst.overwrite_dir.is_dir() {
        let f = LinkFlags(LinkFlags::RECURSIVE | LinkFlags::CREATE_TARGET);
        link(
            m,
            &mut loaded,
            "overwrite",
            &inst.overwrite_dir,
            &data_dir,
            Some(f),
        )?;
    } else {
        let w = format!(
            "the overwrite folder {} does not exist: new files land in the game's folder (create it to collect them)",
            inst.overwrite_dir.display()
        );
        tracing::debug!("{w}");
        loaded.warnings.push(w);
    }

    // Profile files where the game reads them inside the Wine prefix.
    let game = &inst.game;
    if game.my_games.is_none() && game.app_data.is_none() {
        return Ok(loaded);
    }
    let user = opts
        .wine_prefix
        .clone()
        .or(inst.prefix.clone())
        .and_then(|p| wine_user_dir(&p));
    let Some(user) = user else {
        if local_saves || local_settings || pdir.join("plugins.txt").exists() {
            let w =
                "no Wine prefix with a user folder (drive_c/users/NAME) was found: the profile's \
                     INI files, saves and plugins.txt are not mapped (set WINEPREFIX)"
                    .to_string();
            tracing::debug!("{w}");
            loaded.warnings.push(w);
        }
        return Ok(loaded);
    };
    if let Some(app) = &game.app_data {
        let local = ["AppData/Local", "Local Settings/Application Data"]
            .iter()
            .map(|d| user.join(d))
            .find(|d| d.is_dir())
            .unwrap_or_else(|| user.join("AppData/Local"))
            .join(app);
        for f in ["plugins.txt", "loadorder.txt"] {
            let src = pdir.join(f);
            if src.is_file() {
                link(
                    m,
                    &mut loaded,
                    &format!("profile {f}"),
                    &src,
                    &local.join(f),
                    None,
                )?;
            }
        }
    }
    if let Some(my) = &game.my_games {
        let docs = ["Documents", "My Documents"]
            .iter()
            .map(|d| user.join(d))
            .find(|d| d.is_dir())
            .unwrap_or_else(|| user.join("Documents"))
            .join("My Games")
            .join(my);
        if local_settings {
            for ini in game.ini_files {
                let src = join_any_case(&pdir, ini);
                if src.is_file() {
                    link(
                        m,
                        &mut loaded,
                        &format!("profile {ini}"),
                        &src,
                        &docs.join(ini),
                        None,
                    )?;
                } else {
                    let w = format!(
                        "the profile has local settings but no {}: the game reads its own",
                        src.display()
                    );
                    tracing::debug!("{w}");
                    loaded.warnings.push(w);
                }
            }
        }
        if local_saves {
            let saves = pdir.join("saves");
            if saves.is_dir() {
                // MO2 points the game's sLocalSavePath at __MO_Saves\ and
                // maps the profile's saves there; honour what the INI the
                // game reads says, else the game's default Saves folder.
                let main_ini = game.ini_files.first().map(|i| {
                    if local_settings {
                        join_any_case(&pdir, i)
                    } else {
                        join_any_case(&docs, i)
                    }
                });
                let sub = main_ini
                    .filter(|p| p.is_file())
                    .and_then(|p| Ini::read_game_ini(&p))
                    .and_then(|i| {
                        i.get("general", "slocalsavepath")
                            .map(|(v, _)| v.to_string())
                    })
                    .map(|v| v.trim_end_matches(['\\', '/']).replace('\\', "/"))
                    .filter(|v| !v.is_empty() && !v.starts_with('/') && !v.contains(".."))
                    .unwrap_or_else(|| "Saves".into());
                let f = LinkFlags(LinkFlags::RECURSIVE | LinkFlags::CREATE_TARGET);
                link(
                    m,
                    &mut loaded,
                    "profile saves",
                    &saves,
                    &docs.join(sub),
                    Some(f),
                )?;
            } else {
                let w = format!(
                    "the profile has local saves but no folder {}: saves go to the game's own folder",
                    saves.display()
                );
                tracing::debug!("{w}");
                loaded.warnings.push(w);
            }
        }
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_paths_go_through_the_drive_links() {
        let t = tempfile::tempdir().unwrap();
        let pfx = t.path().join("pfx");
        std::fs::create_dir_all(pfx.join("dosdevices")).unwrap();
        std::fs::create_dir_all(pfx.join("drive_c/Games/Skyrim Special Edition")).unwrap();
        std::os::unix::fs::symlink("../drive_c", pfx.join("dosdevices/c:")).unwrap();
        std::os::unix::fs::symlink("/", pfx.join("dosdevices/z:")).unwrap();
        let p = Some(pfx.as_path());
        // The drive letter in either case, either slash, any case of a name.
        assert_eq!(
            windows_to_unix(p, r"C:\Games\Skyrim Special Edition").unwrap(),
            pfx.join("drive_c/Games/Skyrim Special Edition")
        );
        assert_eq!(
            windows_to_unix(p, "c:/GAMES/skyrim special edition/Data").unwrap(),
            pfx.join("drive_c/Games/Skyrim Special Edition/Data")
        );
        assert_eq!(
            windows_to_unix(p, r"Z:\home\me\mo2").unwrap(),
            PathBuf::from("/home/me/mo2")
        );
        assert_eq!(
            windows_to_unix(p, "/home/me/x").unwrap(),
            PathBuf::from("/home/me/x")
        );
        assert_eq!(
            windows_to_unix(p, r"Z:\a\..\b\.\c").unwrap(),
            PathBuf::from("/b/c")
        );
        let e = windows_to_unix(p, r"D:\x").unwrap_err();
        assert!(e.contains("drive D: is not defined"), "{e}");
        assert_eq!(
            windows_to_unix(None, r"Z:\home\me").unwrap(),
            PathBuf::from("/home/me")
        );
        let e = windows_to_unix(None, r"C:\x").unwrap_err();
        assert!(e.contains("no Wine prefix"), "{e}");
        let e = windows_to_unix(p, r"Games\x").unwrap_err();
        assert!(e.contains("not an absolute path"), "{e}");
    }

    #[test]
    fn qsettings_values_are_unescaped() {
        let ini = Ini::parse(
            "[General]\r\ngameName=Skyrim Special Edition\r\n\
             gamePath=@ByteArray(C:\\\\Games\\\\Skyrim)\r\n\
             selected_profile=@ByteArray(Caf\\xc3\\xa9)\r\n\
             [Settings]\nbase_directory=\"D:/Mods, and more\"\nname=\\x65e5\\x672c\n"
                .as_bytes(),
            Path::new("x.ini"),
        )
        .unwrap();
        assert_eq!(
            ini.get_text("General", "gamePath").unwrap().unwrap(),
            (r"C:\Games\Skyrim".to_string(), 3)
        );
        assert_eq!(
            ini.get_text("General", "selected_profile")
                .unwrap()
                .unwrap()
                .0,
            "Café"
        );
        assert_eq!(
            ini.get("Settings", "base_directory").unwrap().0,
            "D:/Mods, and more"
        );
        assert_eq!(ini.get("Settings", "name").unwrap().0, "日本");
        let e = Ini::parse(b"[General]\nthis is not ini\n", Path::new("m.ini")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"m.ini\" line 2: \"this is not ini\" is neither a [section] nor a key=value line"
        );
    }

    #[test]
    fn modlist_order_states_and_errors() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("modlist.txt");
        std::fs::write(
            &f,
            "# This file was automatically generated by Mod Organizer.\r\n+Top\r\n-Off\r\n\
             *DLC: Dawnguard\r\n+Top\r\n\r\nPlain\r\n+Armors_separator\r\n",
        )
        .unwrap();
        let got: Vec<(String, ModState, usize)> = read_modlist(&f)
            .unwrap()
            .into_iter()
            .map(|e| (e.name, e.state, e.line))
            .collect();
        assert_eq!(
            got,
            vec![
                ("Top".into(), ModState::Enabled, 2),
                ("Off".into(), ModState::Disabled, 3),
                ("DLC: Dawnguard".into(), ModState::Unmanaged, 4),
                ("Plain".into(), ModState::Enabled, 7),
                ("Armors_separator".into(), ModState::Enabled, 8),
            ]
        );
        std::fs::write(&f, b"+ok\n+bad\xff\n").unwrap();
        let e = read_modlist(&f).unwrap_err();
        assert!(matches!(e, Mo2Error::Malformed { line: 2, .. }), "{e}");
        std::fs::write(&f, b"+ok\n+a/b\n").unwrap();
        assert!(matches!(
            read_modlist(&f).unwrap_err(),
            Mo2Error::Malformed { line: 2, .. }
        ));
    }
}
