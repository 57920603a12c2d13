//! `~/.bakthat.yml`: profiles of settings, read exactly as bakthat 0.6 wrote them, plus the keys that are new.
//!
//! The file maps profile names to mappings of settings. The one top-level key that is not a profile is `sync:`,
//! the inventory sync server. [`Config::load`] parses and validates the whole file (a missing file is an empty
//! config), [`Config::profile`] picks one profile, and [`Config::save`] writes the file back atomically, keeping the
//! other profiles and every key this version does not know.
//!
//! Reading follows 0.6 (PyYAML, YAML 1.1) where the two YAML versions differ in ways a 0.6 file relies on:
//! `compress: no` is false, merge keys (`<<: *base`) are applied, and rotation values may be numbers or numeric
//! strings, as 0.6 ran them through `int()`. Saved files stay readable by 0.6: strings that YAML 1.1 would read as
//! something else (`yes`, `on`, `1:30`, `2024-01-01`) are quoted.
//!
//! Split by concern: `profile.rs` holds the settings blocks (each key written once, in a table), `validate.rs` reads
//! values as 0.6 wrote them and names the key of a bad one, `emit.rs` writes YAML that 0.6 reads back the same.
//!
//! This module is not the `configure` prompts (see `cli`), opens no store (see `stores`), and applies only the
//! defaults 0.6 had (`compress`, the destination). It does not interpret `hooks` or `kdf`: they are kept as opaque
//! YAML for the modules that do.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_norway::{Mapping, Value};
use sha2::{Digest, Sha512};

use crate::model::Destination;

mod emit;
mod profile;
#[cfg(test)]
mod tests;
mod validate;

pub use profile::{IncrementalConfig, Profile, RotationConfig, SyncConfig};
use validate::{describe, key_text, without_location, Bad};

/// The profile used when none is named (`-p`).
pub const DEFAULT_PROFILE: &str = "default";
/// The environment variable naming the config file when `-c` is not given.
pub const CONFIG_ENV: &str = "BAKTHAT_CONFIG";
/// The destination when a profile sets none. (0.6 defaulted to `s3`; the local store needs no account.)
pub const DEFAULT_DESTINATION: Destination = Destination::Local;
/// The first day of the week for rotation when `first_week_day` is unset: saturday, as in 0.6 (monday = 0).
pub const DEFAULT_FIRST_WEEK_DAY: i64 = 5;

/// The top-level key holding the sync server settings; no profile can have this name.
const SYNC_KEY: &str = "sync";
/// Weekday names in `calendar` order: monday = 0 … sunday = 6.
const WEEKDAYS: [&str; 7] = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];

/// Where the config lives: `-c PATH` if given, else env `BAKTHAT_CONFIG` (when not empty), else `~/.bakthat.yml`.
///
/// Unlike 0.6, whose `configure` and sync ignored `-c`, every command should use this one path.
pub fn config_path(cli: Option<&Path>) -> PathBuf {
    resolve_config_path(cli, std::env::var_os(CONFIG_ENV), dirs::home_dir())
}

fn resolve_config_path(cli: Option<&Path>, env: Option<OsString>, home: Option<PathBuf>) -> PathBuf {
    match (cli, env) {
        (Some(path), _) => path.to_path_buf(),
        (None, Some(env)) if !env.is_empty() => PathBuf::from(env),
        _ => home.unwrap_or_default().join(".bakthat.yml"),
    }
}

/// The inventory's `backend_hash` of a store: lowercase hex SHA-512 of `access_key` followed by the container name
/// (`s3_bucket` for S3 and Swift, `glacier_vault` for Glacier), with no separator, as 0.6 computed it.
pub fn backend_hash(access_key: &str, container: &str) -> String {
    let mut hasher = Sha512::new();
    hasher.update(access_key.as_bytes());
    hasher.update(container.as_bytes());
    hasher.finalize().iter().fold(String::with_capacity(128), |mut hex, byte| {
        use fmt::Write as _;
        let _ = write!(hex, "{byte:02x}");
        hex
    })
}

/// Parses a weekday for `first_week_day`: a name (`saturday`, any case) or a number 0..=6, monday = 0.
pub fn parse_weekday(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(n) = text.parse::<i64>() {
        return (0..7).contains(&n).then_some(n);
    }
    let lower = text.to_ascii_lowercase();
    WEEKDAYS.iter().position(|day| *day == lower).map(|i| i as i64)
}

/// What went wrong with the config file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file is not valid YAML. `line` and `column` are 1-based; YAML reports some errors without a place.
    #[error("{}{}: {message}; fix the YAML or run `bakthat configure`", shown(.path), place(.line, .column))]
    Parse { path: PathBuf, line: Option<usize>, column: Option<usize>, message: String },
    /// The profile asked for is not in the file (only `default` may be missing).
    #[error("no profile `{name}` in {}{}; create it with `bakthat configure -p {name}`", shown(.path), known_list(.known))]
    UnknownProfile { path: PathBuf, name: String, known: Vec<String> },
    /// A value has the wrong type or is out of range. `key` is dotted from the top, e.g. `work.rotation.days`.
    #[error("{}: {}{message}", shown(.path), key_prefix(.key))]
    Invalid { path: PathBuf, key: String, message: String },
    /// Reading or saving the file failed.
    #[error("cannot {action} {}", shown(.path))]
    Io {
        path: PathBuf,
        /// `read` or `save`.
        action: &'static str,
        #[source]
        source: io::Error,
    },
}

/// A path for messages, with the home directory shown as `~`.
fn shown(path: &Path) -> String {
    if let Some(home) = dirs::home_dir().filter(|home| home.parent().is_some()) {
        if let Ok(rest) = path.strip_prefix(&home) {
            return Path::new("~").join(rest).display().to_string();
        }
    }
    path.display().to_string()
}

fn place(line: &Option<usize>, column: &Option<usize>) -> String {
    match (line, column) {
        (Some(line), Some(column)) => format!(":{line}:{column}"),
        (Some(line), None) => format!(":{line}"),
        _ => String::new(),
    }
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        " (it has no profiles yet)".to_string()
    } else {
        format!(" (profiles: {})", known.join(", "))
    }
}

fn key_prefix(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!("`{key}`: ")
    }
}

/// The whole config file: its profiles and the sync block.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    path: PathBuf,
    /// Profiles by name. Every top-level key other than `sync` is a profile.
    pub profiles: BTreeMap<String, Profile>,
    /// The top-level `sync:` block, if the file has one.
    pub sync: Option<SyncConfig>,
    /// The top-level keys in file order, so that saving keeps it; new profiles go after them.
    order: Vec<String>,
}

impl Config {
    /// A config with no profiles that will be saved to `path`.
    pub fn empty(path: &Path) -> Config {
        Config { path: path.to_path_buf(), profiles: BTreeMap::new(), sync: None, order: Vec::new() }
    }

    /// Loads and validates the file. A missing file is an empty config, not an error.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        match fs::read_to_string(path) {
            Ok(text) => Config::from_yaml(path, &text),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Config::empty(path)),
            Err(source) => Err(ConfigError::Io { path: path.to_path_buf(), action: "read", source }),
        }
    }

    /// Parses and validates YAML text as the contents of the file at `path` (which is only used in messages and
    /// by [`Config::save`]).
    pub fn from_yaml(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let parse_error = |e: serde_norway::Error| {
            let location = e.location();
            ConfigError::Parse {
                path: path.to_path_buf(),
                line: location.as_ref().map(|l| l.line()),
                column: location.as_ref().map(|l| l.column()),
                message: without_location(&e.to_string()),
            }
        };
        let invalid = |bad: Bad| ConfigError::Invalid { path: path.to_path_buf(), key: bad.key, message: bad.message };

        let mut value: Value = serde_norway::from_str(text).map_err(parse_error)?;
        value.apply_merge().map_err(parse_error)?;
        let top = match value {
            Value::Null => Mapping::new(),
            Value::Mapping(top) => top,
            other => {
                return Err(invalid(Bad::new(
                    "",
                    format!(
                        "expected a mapping of profile names to settings at the top level, got {}",
                        describe(&other)
                    ),
                )))
            }
        };
        let mut config = Config::empty(path);
        for (key, value) in top {
            let name = key_text(&key)
                .ok_or_else(|| invalid(Bad::new("", format!("profile names must be text, got {}", describe(&key)))))?;
            if config.order.contains(&name) {
                return Err(invalid(Bad::new(&name, "appears twice at the top level")));
            }
            if name == SYNC_KEY {
                if !value.is_null() {
                    config.sync = Some(SyncConfig::from_value(value).map_err(|b| invalid(b.under(SYNC_KEY)))?);
                }
            } else {
                let profile = Profile::from_value(value).map_err(|b| invalid(b.under(&name)))?;
                config.profiles.insert(name.clone(), profile);
            }
            config.order.push(name);
        }
        Ok(config)
    }

    /// The named profile. `default` may be absent (then it is an empty profile); any other unknown name is
    /// [`ConfigError::UnknownProfile`].
    pub fn profile(&self, name: &str) -> Result<Profile, ConfigError> {
        match self.profiles.get(name) {
            Some(profile) => Ok(profile.clone()),
            None if name == DEFAULT_PROFILE => Ok(Profile::default()),
            None => Err(ConfigError::UnknownProfile {
                path: self.path.clone(),
                name: name.to_string(),
                known: self.profiles.keys().cloned().collect(),
            }),
        }
    }

    /// Adds or replaces a profile. A new one is saved after the existing ones.
    pub fn set_profile(&mut self, name: &str, profile: Profile) {
        self.profiles.insert(name.to_string(), profile);
    }

    /// The sync settings for a profile: the top-level `sync:` block with the profile's own `url`, `username`,
    /// `password` (as 0.6 allowed) and `sync_auto` laid over it.
    pub fn sync_for(&self, profile: &Profile) -> SyncConfig {
        let mut sync = self.sync.clone().unwrap_or_default();
        let over = |mine: &Option<String>, base: &mut Option<String>| {
            if mine.is_some() {
                base.clone_from(mine);
            }
        };
        over(&profile.url, &mut sync.url);
        over(&profile.username, &mut sync.username);
        over(&profile.password, &mut sync.password);
        sync.auto = profile.sync_auto.unwrap_or(sync.auto);
        sync
    }

    /// The file this config is loaded from and saved to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file contents [`Config::save`] writes: top-level keys in their original order (new profiles after
    /// them), each profile's keys sorted as 0.6's `yaml.dump` did, unknown keys kept.
    pub fn to_yaml(&self) -> Result<String, ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            path: self.path.clone(),
            key: key.to_string(),
            message,
        };
        if self.profiles.contains_key(SYNC_KEY) {
            return Err(invalid(
                SYNC_KEY,
                "`sync` holds the sync server settings and cannot be a profile name; pick another".to_string(),
            ));
        }
        let sorted = |value: Value| match value {
            Value::Mapping(mapping) => {
                let mut entries: Vec<(Value, Value)> = mapping.into_iter().collect();
                entries.sort_by(|(a, _), (b, _)| a.as_str().cmp(&b.as_str()));
                Value::Mapping(entries.into_iter().collect())
            }
            other => other,
        };
        let profile_value = |name: &str, profile: &Profile| {
            serde_norway::to_value(profile).map(sorted).map_err(|e| invalid(name, e.to_string()))
        };
        let sync_value = |sync: &SyncConfig| serde_norway::to_value(sync).map_err(|e| invalid(SYNC_KEY, e.to_string()));

        let mut top = Mapping::new();
        let sync_key = SYNC_KEY.to_string();
        let new_profiles = self.profiles.keys().filter(|name| !self.order.contains(*name));
        for name in self.order.iter().chain(new_profiles).chain(std::iter::once(&sync_key)) {
            if top.contains_key(name.as_str()) {
                continue;
            }
            if name == SYNC_KEY {
                if let Some(sync) = &self.sync {
                    top.insert(Value::String(name.clone()), sync_value(sync)?);
                }
            } else if let Some(profile) = self.profiles.get(name) {
                top.insert(Value::String(name.clone()), profile_value(name, profile)?);
            }
        }
        Ok(emit::emit_document(&Value::Mapping(top)))
    }

    /// Saves atomically: writes a temporary file with mode 0600 in the same directory, syncs it, renames it over the
    /// target and syncs the directory. On any error the existing file is left as it was. A symlinked config file
    /// stays a symlink: the file it points to is replaced.
    pub fn save(&self) -> Result<(), ConfigError> {
        let text = self.to_yaml()?;
        write_atomic(&self.path, |file| file.write_all(text.as_bytes()))
    }
}

/// Replaces `target` with what `write` puts in a fresh file, or leaves it untouched on error.
fn write_atomic(target: &Path, write: impl FnOnce(&mut fs::File) -> io::Result<()>) -> Result<(), ConfigError> {
    let fail = |source| ConfigError::Io { path: target.to_path_buf(), action: "save", source };
    let real = match fs::symlink_metadata(target) {
        Ok(meta) if meta.file_type().is_symlink() => fs::canonicalize(target).map_err(fail)?,
        _ => target.to_path_buf(),
    };
    let dir = match real.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = real.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    fs::create_dir_all(&dir).map_err(fail)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .permissions(fs::Permissions::from_mode(0o600))
        .tempfile_in(&dir)
        .map_err(fail)?;
    // The mode is given at creation and again here, in case the umask or the filesystem changed it.
    tmp.as_file().set_permissions(fs::Permissions::from_mode(0o600)).map_err(fail)?;
    write(tmp.as_file_mut()).map_err(fail)?;
    tmp.as_file().sync_all().map_err(fail)?;
    // On failure the temporary file is dropped, which deletes it.
    tmp.persist(&real).map_err(|e| fail(e.error))?;
    match fs::File::open(&dir).and_then(|d| d.sync_all()) {
        Ok(()) => Ok(()),
        // Some filesystems cannot sync a directory; the rename has happened either way.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) || e.raw_os_error() == Some(libc::ENOTSUP) => Ok(()),
        Err(e) => Err(fail(e)),
    }
}
