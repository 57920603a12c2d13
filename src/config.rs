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
//! This module is not the `configure` prompts (see `cli`), opens no store, and applies only the defaults 0.6 had
//! (`compress`, the destination). It does not interpret `hooks` or `kdf`: they are kept as opaque YAML for the
//! modules that do.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};
use serde_norway::{Mapping, Value};
use sha2::{Digest, Sha512};

use crate::model::Destination;

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

/// One profile: the settings for one account and its stores.
///
/// The 0.6 keys keep their names and meaning; values that 0.6 accepted still load. Keys this version does not know
/// are kept in `extra` and written back on save. `Debug` hides the secrets.
#[derive(Clone, Serialize, PartialEq)]
pub struct Profile {
    /// AWS access key (Swift: `ACCOUNT:USER`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_key: Option<String>,
    /// AWS secret key (Swift: the key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<String>,
    /// Region; 0.6 required it for every remote store.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region_name: Option<String>,
    /// S3 bucket, also the Swift container.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_bucket: Option<String>,
    /// Glacier vault (0.6 also needed it for the inventory hash of S3 backups).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub glacier_vault: Option<String>,
    /// See [`Profile::destination`] for the default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_destination: Option<Destination>,
    /// Gzip the archive (default true; written only when false).
    #[serde(skip_serializing_if = "is_true")]
    pub compress: bool,
    /// Grandfather-father-son retention.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation: Option<RotationConfig>,
    /// 0.6 Python plugins (`module.Class`); kept, not run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub plugins: Vec<String>,
    /// 0.6 plugin directory; kept, not used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugins_dir: Option<String>,
    /// Swift auth URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_url: Option<String>,
    /// Swift auth version (`1`, `2`, …; a number or a string in the file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_version: Option<String>,
    /// BakManager token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bakmanager_token: Option<String>,
    /// BakManager API URL (0.6 used it for both of its endpoints).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bakmanager_api: Option<String>,
    /// Sync server URL for this profile, over the top-level `sync.url` (see [`Config::sync_for`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Sync user for this profile, over `sync.username`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Sync password for this profile, over `sync.password`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// New: the directory of the local store (`~/` is expanded by [`Profile::local_dir`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_path: Option<PathBuf>,
    /// New: endpoint of an S3-compatible service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
    /// New: S3 storage class for uploads (e.g. `STANDARD_IA`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_storage_class: Option<String>,
    /// New: skip TLS verification for Swift (0.6 always did; now opt-in).
    #[serde(skip_serializing_if = "is_false")]
    pub swift_insecure: bool,
    /// New: hook settings, opaque here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hooks: Option<Value>,
    /// New: a URL to notify after backups.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    /// New: key-derivation settings for encryption, opaque here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kdf: Option<Value>,
    /// New: sync after each backup for this profile, over `sync.auto`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_auto: Option<bool>,
    /// New: deflate level 1 (fastest) to 12 (smallest); the default is the archive format's (see the README).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression_level: Option<u8>,
    /// Keys this version does not know, written back unchanged.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

fn is_true(b: &bool) -> bool {
    *b
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Default for Profile {
    fn default() -> Self {
        Profile {
            access_key: None,
            secret_key: None,
            region_name: None,
            s3_bucket: None,
            glacier_vault: None,
            default_destination: None,
            compress: true,
            rotation: None,
            plugins: Vec::new(),
            plugins_dir: None,
            auth_url: None,
            auth_version: None,
            bakmanager_token: None,
            bakmanager_api: None,
            url: None,
            username: None,
            password: None,
            local_path: None,
            endpoint_url: None,
            s3_storage_class: None,
            swift_insecure: false,
            hooks: None,
            webhook_url: None,
            kdf: None,
            sync_auto: None,
            compression_level: None,
            extra: BTreeMap::new(),
        }
    }
}

impl Profile {
    /// `default_destination`, or `local` when unset (0.6 defaulted to `s3`).
    pub fn destination(&self) -> Destination {
        self.default_destination.unwrap_or(DEFAULT_DESTINATION)
    }

    /// Whether to gzip the archive.
    pub fn compress(&self) -> bool {
        self.compress
    }

    /// `local_path` with a leading `~/` replaced by the home directory.
    pub fn local_dir(&self) -> Option<PathBuf> {
        let path = self.local_path.as_ref()?;
        match (path.strip_prefix("~"), dirs::home_dir()) {
            (Ok(rest), Some(home)) => Some(home.join(rest)),
            _ => Some(path.clone()),
        }
    }

    fn from_value(value: Value) -> Result<Profile, Bad> {
        let mut e = Entries::new(value, "a mapping of settings (`key: value` lines indented under the profile name)")?;
        let default_destination = match e.text("default_destination")? {
            None => None,
            Some(dest) => Some(dest.parse::<Destination>().map_err(|_| {
                let names: Vec<&str> = Destination::ALL.iter().map(|d| d.as_str()).collect();
                Bad::new("default_destination", format!("expected one of {}, got {dest:?}", names.join(", ")))
            })?),
        };
        Ok(Profile {
            access_key: e.text("access_key")?,
            secret_key: e.text("secret_key")?,
            region_name: e.text("region_name")?,
            s3_bucket: e.text("s3_bucket")?,
            glacier_vault: e.text("glacier_vault")?,
            default_destination,
            compress: e.flag("compress")?.unwrap_or(true),
            rotation: e
                .take("rotation")
                .map(|v| RotationConfig::from_value(v).map_err(|b| b.under("rotation")))
                .transpose()?,
            plugins: e.texts("plugins")?,
            plugins_dir: e.text("plugins_dir")?,
            auth_url: e.text("auth_url")?,
            auth_version: e.text("auth_version")?,
            bakmanager_token: e.text("bakmanager_token")?,
            bakmanager_api: e.text("bakmanager_api")?,
            url: e.text("url")?,
            username: e.text("username")?,
            password: e.text("password")?,
            local_path: e.text("local_path")?.map(PathBuf::from),
            endpoint_url: e.text("endpoint_url")?,
            s3_storage_class: e.text("s3_storage_class")?,
            swift_insecure: e.flag("swift_insecure")?.unwrap_or(false),
            hooks: e.take("hooks"),
            webhook_url: e.text("webhook_url")?,
            kdf: e.take("kdf"),
            sync_auto: e.flag("sync_auto")?,
            compression_level: match e.count("compression_level")? {
                None => None,
                Some(n @ 1..=12) => Some(n as u8),
                Some(n) => return Err(Bad::new("compression_level", format!("must be 1 to 12, got {n}"))),
            },
            extra: e.rest(),
        })
    }
}

impl<'de> Deserialize<'de> for Profile {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Profile::from_value(Value::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

/// Shows `Some("***")` for a secret that is set.
struct Secret<'a>(&'a Option<String>);

impl fmt::Debug for Secret<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(_) => f.write_str("Some(\"***\")"),
            None => f.write_str("None"),
        }
    }
}

impl fmt::Debug for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Profile")
            .field("access_key", &self.access_key)
            .field("secret_key", &Secret(&self.secret_key))
            .field("region_name", &self.region_name)
            .field("s3_bucket", &self.s3_bucket)
            .field("glacier_vault", &self.glacier_vault)
            .field("default_destination", &self.default_destination)
            .field("compress", &self.compress)
            .field("rotation", &self.rotation)
            .field("plugins", &self.plugins)
            .field("plugins_dir", &self.plugins_dir)
            .field("auth_url", &self.auth_url)
            .field("auth_version", &self.auth_version)
            .field("bakmanager_token", &Secret(&self.bakmanager_token))
            .field("bakmanager_api", &self.bakmanager_api)
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &Secret(&self.password))
            .field("local_path", &self.local_path)
            .field("endpoint_url", &self.endpoint_url)
            .field("s3_storage_class", &self.s3_storage_class)
            .field("swift_insecure", &self.swift_insecure)
            .field("hooks", &self.hooks)
            .field("webhook_url", &self.webhook_url)
            .field("kdf", &self.kdf)
            .field("sync_auto", &self.sync_auto)
            .field("compression_level", &self.compression_level)
            .field("extra", &self.extra)
            .finish()
    }
}

/// The `rotation:` block of a profile: how many backups of each age to keep. Values are whole numbers ≥ 0;
/// `first_week_day` is 0..=6 with monday = 0 (see [`DEFAULT_FIRST_WEEK_DAY`]).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct RotationConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub days: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weeks: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub months: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub years: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hours: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minutes: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_week_day: Option<i64>,
    /// Keys this version does not know, written back unchanged.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl RotationConfig {
    /// `first_week_day`, or saturday as in 0.6.
    pub fn week_start(&self) -> i64 {
        self.first_week_day.unwrap_or(DEFAULT_FIRST_WEEK_DAY)
    }

    fn from_value(value: Value) -> Result<RotationConfig, Bad> {
        let mut e = Entries::new(value, "a mapping such as `days: 7`")?;
        let first_week_day = match e.take("first_week_day") {
            None => None,
            Some(v) => Some(weekday(&v).map_err(|m| Bad::new("first_week_day", m))?),
        };
        Ok(RotationConfig {
            days: e.count("days")?,
            weeks: e.count("weeks")?,
            months: e.count("months")?,
            years: e.count("years")?,
            hours: e.count("hours")?,
            minutes: e.count("minutes")?,
            seconds: e.count("seconds")?,
            first_week_day,
            extra: e.rest(),
        })
    }
}

impl<'de> Deserialize<'de> for RotationConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        RotationConfig::from_value(Value::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

/// The top-level `sync:` block: the inventory sync server. `Debug` hides the password.
#[derive(Clone, Default, Serialize, PartialEq)]
pub struct SyncConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Sync after every backup (written only when true).
    #[serde(skip_serializing_if = "is_false")]
    pub auto: bool,
    /// Keys this version does not know, written back unchanged.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl SyncConfig {
    fn from_value(value: Value) -> Result<SyncConfig, Bad> {
        let mut e = Entries::new(value, "a mapping with `url`, `username`, `password` and `auto`")?;
        Ok(SyncConfig {
            url: e.text("url")?,
            username: e.text("username")?,
            password: e.text("password")?,
            auto: e.flag("auto")?.unwrap_or(false),
            extra: e.rest(),
        })
    }
}

impl<'de> Deserialize<'de> for SyncConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        SyncConfig::from_value(Value::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

impl fmt::Debug for SyncConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SyncConfig")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &Secret(&self.password))
            .field("auto", &self.auto)
            .field("extra", &self.extra)
            .finish()
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
        Ok(emit_document(&Value::Mapping(top)))
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

/// serde_norway puts " at line L column C" (or " at position P") in its messages; the location is reported apart.
fn without_location(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.find(" at ") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 4..];
        let skip = location_len(after);
        if skip == 0 {
            out.push_str(" at ");
        }
        rest = &after[skip..];
    }
    out.push_str(rest);
    out
}

/// The length of `line N column M` or `position N` at the start of `s`, or 0.
fn location_len(s: &str) -> usize {
    fn digits(s: &str) -> usize {
        s.bytes().take_while(u8::is_ascii_digit).count()
    }
    if let Some(rest) = s.strip_prefix("line ") {
        let n = digits(rest);
        if n > 0 {
            if let Some(col) = rest[n..].strip_prefix(" column ") {
                let m = digits(col);
                if m > 0 {
                    return "line ".len() + n + " column ".len() + m;
                }
            }
        }
    } else if let Some(rest) = s.strip_prefix("position ") {
        let n = digits(rest);
        if n > 0 {
            return "position ".len() + n;
        }
    }
    0
}

/// A value that does not fit: its dotted key (relative to where it was found) and what is wrong.
#[derive(Debug)]
struct Bad {
    key: String,
    message: String,
}

impl Bad {
    fn new(key: &str, message: impl Into<String>) -> Bad {
        Bad { key: key.to_string(), message: message.into() }
    }

    /// The same problem seen from one level up.
    fn under(self, parent: &str) -> Bad {
        let key = if self.key.is_empty() { parent.to_string() } else { format!("{parent}.{}", self.key) };
        Bad { key, message: self.message }
    }
}

impl fmt::Display for Bad {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", key_prefix(&self.key), self.message)
    }
}

/// The entries of one YAML mapping, taken out key by key; what is left are the unknown keys.
struct Entries {
    map: BTreeMap<String, Value>,
}

impl Entries {
    /// `expected` says what the value should have been; `null` (an empty block) counts as an empty mapping.
    fn new(value: Value, expected: &str) -> Result<Entries, Bad> {
        let mapping = match value {
            Value::Null => Mapping::new(),
            Value::Mapping(mapping) => mapping,
            other => return Err(Bad::new("", format!("expected {expected}, got {}", describe(&other)))),
        };
        let mut map = BTreeMap::new();
        for (key, value) in mapping {
            let name =
                key_text(&key).ok_or_else(|| Bad::new("", format!("keys must be text, got {}", describe(&key))))?;
            if map.insert(name.clone(), value).is_some() {
                return Err(Bad::new(&name, "appears twice"));
            }
        }
        Ok(Entries { map })
    }

    /// Removes a key; an empty value counts as absent.
    fn take(&mut self, key: &str) -> Option<Value> {
        self.map.remove(key).filter(|v| !v.is_null())
    }

    fn text(&mut self, key: &str) -> Result<Option<String>, Bad> {
        self.take(key).map(|v| text(v).map_err(|m| Bad::new(key, m))).transpose()
    }

    fn flag(&mut self, key: &str) -> Result<Option<bool>, Bad> {
        self.take(key).map(|v| flag(&v).map_err(|m| Bad::new(key, m))).transpose()
    }

    /// A whole number ≥ 0.
    fn count(&mut self, key: &str) -> Result<Option<i64>, Bad> {
        let Some(value) = self.take(key) else { return Ok(None) };
        match whole_number(&value) {
            Ok(n) if n >= 0 => Ok(Some(n)),
            Ok(n) => Err(Bad::new(key, format!("must be 0 or more, got {n}"))),
            Err(m) => Err(Bad::new(key, m)),
        }
    }

    fn texts(&mut self, key: &str) -> Result<Vec<String>, Bad> {
        match self.take(key) {
            None => Ok(Vec::new()),
            Some(Value::Sequence(items)) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| text(item).map_err(|m| Bad::new(&format!("{key}[{i}]"), m)))
                .collect(),
            Some(other) => Err(Bad::new(key, format!("expected a list, got {}", describe(&other)))),
        }
    }

    fn rest(self) -> BTreeMap<String, Value> {
        self.map
    }
}

/// A mapping key as text: strings as they are, numbers and booleans written out (a profile named `2024:` is
/// `"2024"`). Other keys have no text form.
fn key_text(key: &Value) -> Option<String> {
    match key {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Text; a number is taken as its digits (`auth_version: 2` is `"2"`).
fn text(value: Value) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Err(format!("expected text, got {b}; put it in quotes: '{b}'")),
        other => Err(format!("expected text, got {}", describe(&other))),
    }
}

/// A boolean, also YAML 1.1's `yes`/`no`/`on`/`off`, which 0.6 (PyYAML) read as booleans.
fn flag(value: &Value) -> Result<bool, String> {
    if let Value::Bool(b) = value {
        return Ok(*b);
    }
    match value.as_str().map(str::to_ascii_lowercase).as_deref() {
        Some("true" | "yes" | "on") => Ok(true),
        Some("false" | "no" | "off") => Ok(false),
        _ => Err(format!("expected true or false, got {}", describe(value))),
    }
}

/// A whole number as 0.6's `int()` took it: a YAML integer, a float with no fraction, or numeric text (`"7"`).
fn whole_number(value: &Value) -> Result<i64, String> {
    let n = match value {
        Value::Number(n) => {
            n.as_i64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.0e18).map(|f| f as i64))
        }
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    n.ok_or_else(|| format!("expected a whole number, got {}", describe(value)))
}

/// A weekday: a number 0..=6 (also as text) or a name, monday = 0.
fn weekday(value: &Value) -> Result<i64, String> {
    let day = match value {
        Value::Number(_) => whole_number(value).ok().filter(|n| (0..7).contains(n)),
        Value::String(s) => parse_weekday(s),
        _ => None,
    };
    day.ok_or_else(|| {
        format!("expected a weekday name (monday … sunday) or a number 0-6 with monday = 0, got {}", describe(value))
    })
}

/// A short description of a value for messages.
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "nothing".to_string(),
        Value::Bool(b) => format!("{b}"),
        Value::Number(n) => format!("{n}"),
        Value::String(s) => format!("{s:?}"),
        Value::Sequence(_) => "a list".to_string(),
        Value::Mapping(_) => "a mapping".to_string(),
        Value::Tagged(t) => format!("a value tagged {}", t.tag),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Writing YAML that both YAML 1.1 (PyYAML, bakthat 0.6) and YAML 1.2 (serde_norway) read back as the same values.
// serde_norway's own serializer leaves `yes`, `on`, `1:30` or `2024-01-01` unquoted, which PyYAML would read as a
// boolean, a number or a date.

/// The whole document, in block style.
fn emit_document(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Mapping(mapping) if !mapping.is_empty() => emit_mapping(mapping, 0, &mut out),
        other => {
            out.push_str(&inline(other, false));
            out.push('\n');
        }
    }
    out
}

/// Entries of a block mapping, each on a new line at `indent`.
fn emit_mapping(mapping: &Mapping, indent: usize, out: &mut String) {
    for (key, value) in mapping {
        out.extend(std::iter::repeat_n(' ', indent));
        let key_text = inline(key, true);
        let simple =
            matches!(key, Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_)) && key_text.len() < 1000;
        if simple {
            out.push_str(&key_text);
        } else {
            // YAML allows only short scalars as implicit keys; others take the explicit `? key` form.
            out.push_str("? ");
            out.push_str(&key_text);
            out.push('\n');
            out.extend(std::iter::repeat_n(' ', indent));
        }
        out.push(':');
        emit_value(value, indent, out);
    }
}

/// A value after `key:` or `-` on the current line; nested blocks go below at `indent + 2`.
fn emit_value(value: &Value, indent: usize, out: &mut String) {
    match value {
        Value::Mapping(mapping) if !mapping.is_empty() => {
            out.push('\n');
            emit_mapping(mapping, indent + 2, out);
        }
        Value::Sequence(items) if !items.is_empty() => {
            out.push('\n');
            for item in items {
                out.extend(std::iter::repeat_n(' ', indent + 2));
                out.push('-');
                emit_value(item, indent + 2, out);
            }
        }
        Value::Tagged(tagged) if is_block(&tagged.value) => {
            out.push(' ');
            out.push_str(&tagged.tag.to_string());
            emit_value(&tagged.value, indent, out);
        }
        other => {
            out.push(' ');
            out.push_str(&inline(other, false));
            out.push('\n');
        }
    }
}

fn is_block(value: &Value) -> bool {
    match value {
        Value::Mapping(m) => !m.is_empty(),
        Value::Sequence(s) => !s.is_empty(),
        _ => false,
    }
}

/// A value on one line; collections in flow style. `flow` is set inside flow collections and keys.
fn inline(value: &Value, flow: bool) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => number(n),
        Value::String(s) => scalar(s, flow),
        Value::Sequence(items) => {
            format!("[{}]", items.iter().map(|v| inline(v, true)).collect::<Vec<_>>().join(", "))
        }
        Value::Mapping(mapping) => format!(
            "{{{}}}",
            mapping
                .iter()
                .map(|(k, v)| format!("{}: {}", inline(k, true), inline(v, true)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Tagged(tagged) => format!("{} {}", tagged.tag, inline(&tagged.value, flow)),
    }
}

/// A number. Floats get the `1.0e+10` shape, the only one YAML 1.1 reads as a float.
fn number(n: &serde_norway::Number) -> String {
    let text = n.to_string();
    if !n.is_f64() || text.starts_with(['.', '-']) && text.ends_with(['f', 'n']) {
        return text;
    }
    let (mantissa, exponent) = match text.split_once('e') {
        Some((m, e)) => (m.to_string(), Some(e.to_string())),
        None => (text.clone(), None),
    };
    let mantissa = if mantissa.contains('.') { mantissa } else { format!("{mantissa}.0") };
    match exponent {
        Some(e) if e.starts_with('-') => format!("{mantissa}e{e}"),
        Some(e) => format!("{mantissa}e+{e}"),
        None => mantissa,
    }
}

/// Words that YAML 1.1 (or 1.2) reads as booleans or null when unquoted.
const RESERVED_WORDS: [&str; 9] = ["y", "n", "yes", "no", "true", "false", "on", "off", "null"];

/// A string scalar: plain when it cannot be read as anything else, else single-quoted, else double-quoted with
/// escapes when it holds characters single quotes cannot carry.
fn scalar(s: &str, flow: bool) -> String {
    let plain = s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '/')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "_./@+=-".contains(c) || (c == ':' && !flow))
        && !s.ends_with(':')
        && !RESERVED_WORDS.contains(&s.to_ascii_lowercase().as_str());
    if plain {
        return s.to_string();
    }
    let needs_escape =
        |c: char| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}');
    if !s.chars().any(needs_escape) {
        return format!("'{}'", s.replace('\'', "''"));
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) && (c as u32) < 0x100 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if needs_escape(c) => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::prelude::*;

    /// A config as bakthat 0.6 users have them: written by `configure`, then edited by hand.
    const CONFIG_06: &str = r#"default:
  access_key: AKIDEXAMPLE
  secret_key: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY
  region_name: us-east-1
  s3_bucket: mybucket
  glacier_vault: myvault
  default_destination: s3
  compress: true
  plugins:
  - test_plugin.TestPlugin
  - other.Plugin
  plugins_dir: /home/user/.bakthat_plugins
  bakmanager_token: tok123
  bakmanager_api: https://bakmanager.example/api/backups/
  rotation:
    days: 7
    weeks: 4
    months: 12
    first_week_day: 5
    keep_forever: [a, 1]
  my_own_setting:
    nested: {a: 1, b: [yes, '1:30', 2024-01-01]}
    when: 2024-01-01
swift:
  access_key: 'account:user'
  secret_key: swiftsecret
  region_name: RegionOne
  s3_bucket: container
  glacier_vault: ''
  default_destination: swift
  auth_url: https://keystone.example/v2.0
  auth_version: 2
  compress: no
  rotation:
    days: '7'
    weeks: "4"
    months: 3
    years: ' 1 '
    hours: 0
    first_week_day: saturday
  url: https://sync.override.example
  username: bob
  password: hunter2
legacy:
  auth_url: https://swift.example/auth/v1.0
  auth_version: '1'
  endpoint_url: http://127.0.0.1:9000
  local_path: ~/backups
  s3_storage_class: STANDARD_IA
  swift_insecure: true
  webhook_url: https://hooks.example/x
  sync_auto: off
  hooks:
    before_backup: [echo hi]
  kdf: {algorithm: argon2id, m_cost: 65536}
sync:
  url: https://sync.example/api
  username: alice
  password: s3cret
  auto: true
  server_flavour: 2
"#;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, text).expect("write test file");
        path
    }

    fn raw(path: &Path) -> Value {
        serde_norway::from_str(&fs::read_to_string(path).expect("read")).expect("valid yaml")
    }

    #[test]
    fn loads_a_realistic_06_config() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::load(&write(dir.path(), "c.yml", CONFIG_06)).unwrap();
        assert_eq!(config.profiles.keys().collect::<Vec<_>>(), ["default", "legacy", "swift"]);

        let d = config.profile("default").unwrap();
        assert_eq!(d.access_key.as_deref(), Some("AKIDEXAMPLE"));
        assert_eq!(d.secret_key.as_deref(), Some("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"));
        assert_eq!(d.region_name.as_deref(), Some("us-east-1"));
        assert_eq!(d.s3_bucket.as_deref(), Some("mybucket"));
        assert_eq!(d.glacier_vault.as_deref(), Some("myvault"));
        assert_eq!(d.destination().as_str(), "s3");
        assert!(d.compress());
        assert_eq!(d.plugins, ["test_plugin.TestPlugin", "other.Plugin"]);
        assert_eq!(d.plugins_dir.as_deref(), Some("/home/user/.bakthat_plugins"));
        assert_eq!(d.bakmanager_token.as_deref(), Some("tok123"));
        assert_eq!(d.bakmanager_api.as_deref(), Some("https://bakmanager.example/api/backups/"));
        let r = d.rotation.as_ref().unwrap();
        assert_eq!((r.days, r.weeks, r.months, r.years, r.first_week_day), (Some(7), Some(4), Some(12), None, Some(5)));
        assert!(r.extra.contains_key("keep_forever"));
        assert!(d.extra.contains_key("my_own_setting"));

        let s = config.profile("swift").unwrap();
        assert_eq!(s.access_key.as_deref(), Some("account:user"));
        assert_eq!(s.glacier_vault.as_deref(), Some(""));
        assert_eq!(s.destination().as_str(), "swift");
        assert_eq!(s.auth_version.as_deref(), Some("2"));
        assert!(!s.compress(), "YAML 1.1 `no` is false, as 0.6 read it");
        let r = s.rotation.as_ref().unwrap();
        assert_eq!(
            (r.days, r.weeks, r.months, r.years, r.hours, r.first_week_day),
            (Some(7), Some(4), Some(3), Some(1), Some(0), Some(5))
        );
        assert_eq!((s.url.as_deref(), s.username.as_deref()), (Some("https://sync.override.example"), Some("bob")));
        assert_eq!(s.password.as_deref(), Some("hunter2"));

        let l = config.profile("legacy").unwrap();
        assert_eq!(l.auth_version.as_deref(), Some("1"));
        assert_eq!(l.destination().as_str(), "local", "the new default destination");
        assert_eq!(l.endpoint_url.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(l.local_path.as_deref(), Some(Path::new("~/backups")));
        assert_eq!(l.s3_storage_class.as_deref(), Some("STANDARD_IA"));
        assert!(l.swift_insecure);
        assert_eq!(l.webhook_url.as_deref(), Some("https://hooks.example/x"));
        assert_eq!(l.sync_auto, Some(false));
        assert!(l.hooks.is_some() && l.kdf.is_some());
        if let Some(home) = dirs::home_dir() {
            assert_eq!(l.local_dir(), Some(home.join("backups")));
        }

        let sync = config.sync.as_ref().unwrap();
        assert_eq!(sync.url.as_deref(), Some("https://sync.example/api"));
        assert_eq!((sync.username.as_deref(), sync.password.as_deref()), (Some("alice"), Some("s3cret")));
        assert!(sync.auto);

        // 0.6 let a profile's url/username/password override the sync block.
        let merged = config.sync_for(&s);
        assert_eq!(merged.url.as_deref(), Some("https://sync.override.example"));
        assert_eq!((merged.username.as_deref(), merged.password.as_deref()), (Some("bob"), Some("hunter2")));
        assert!(merged.auto);
        assert!(!config.sync_for(&l).auto, "sync_auto: off overrides sync.auto");
        assert_eq!(config.sync_for(&d).username.as_deref(), Some("alice"));
    }

    #[test]
    fn unknown_keys_survive_load_and_save() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "c.yml", CONFIG_06);
        let before = raw(&path);
        let config = Config::load(&path).unwrap();
        config.save().unwrap();
        let after = raw(&path);

        for (profile, key) in [("default", "my_own_setting"), ("legacy", "hooks"), ("legacy", "kdf")] {
            assert_eq!(after[profile][key], before[profile][key], "{profile}.{key}");
        }
        assert_eq!(after["default"]["rotation"]["keep_forever"], before["default"]["rotation"]["keep_forever"]);
        assert_eq!(after["sync"]["server_flavour"], before["sync"]["server_flavour"]);
        // Known values keep their meaning (numeric strings become numbers; auth_version stays text).
        assert_eq!(after["swift"]["rotation"]["days"], Value::from(7));
        assert_eq!(after["legacy"]["auth_version"], Value::from("1"));
        assert_eq!(after["swift"]["auth_version"], Value::from("2"));
        // Top-level order is kept.
        let keys: Vec<_> = after.as_mapping().unwrap().keys().map(|k| k.as_str().unwrap()).collect();
        assert_eq!(keys, ["default", "swift", "legacy", "sync"]);

        let again = Config::load(&path).unwrap();
        assert_eq!(again, config);
    }

    #[test]
    fn saved_strings_stay_strings_for_yaml_1_1_readers() {
        // PyYAML (bakthat 0.6) reads unquoted yes/on/1:30/2024-01-01/0777 as booleans, numbers and dates.
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::empty(&dir.path().join("c.yml"));
        let tricky = ["yes", "On", "n", "1:30", "2024-01-01", "0777", "12", "1_000", "~", "null", ".inf", "a: b", "x:"];
        for (i, s) in tricky.iter().enumerate() {
            let profile = Profile { secret_key: Some(s.to_string()), ..Profile::default() };
            config.set_profile(&format!("p{i}"), profile);
        }
        config.set_profile("yes", Profile::default());
        config.save().unwrap();
        let text = fs::read_to_string(config.path()).unwrap();
        for s in &tricky {
            assert!(
                text.contains(&format!("secret_key: '{s}'")) || text.contains(&format!("secret_key: \"{s}\"")),
                "{s} must be quoted in:\n{text}"
            );
        }
        assert!(text.contains("'yes': {}"), "{text}");
        let back = Config::load(config.path()).unwrap();
        assert_eq!(back.profiles, config.profiles);
    }

    #[test]
    fn save_sets_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "c.yml", "default: {access_key: a}\n");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let mut config = Config::load(&path).unwrap();
        config.set_profile("new", Profile { access_key: Some("b".into()), ..Profile::default() });
        config.save().unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o7777, 0o600);
        let back = Config::load(&path).unwrap();
        assert_eq!(back.profile("default").unwrap().access_key.as_deref(), Some("a"));
        assert_eq!(back.profile("new").unwrap().access_key.as_deref(), Some("b"));
        // A brand-new file gets the same mode; no temporary files are left behind.
        let fresh = dir.path().join("sub/fresh.yml");
        Config::empty(&fresh).save().unwrap();
        assert_eq!(fs::metadata(&fresh).unwrap().permissions().mode() & 0o7777, 0o600);
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn missing_file_is_an_empty_config() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::load(&dir.path().join("absent.yml")).unwrap();
        assert!(config.profiles.is_empty() && config.sync.is_none());
        let p = config.profile(DEFAULT_PROFILE).unwrap();
        assert_eq!(p, Profile::default());
        assert!(p.compress());
        assert_eq!(p.destination().as_str(), "local");
        assert!(matches!(config.profile("nope"), Err(ConfigError::UnknownProfile { known, .. }) if known.is_empty()));
        // An empty file, or one with only comments, is empty too.
        let empty = Config::load(&write(dir.path(), "e.yml", "# nothing yet\n")).unwrap();
        assert!(empty.profiles.is_empty());
    }

    #[test]
    fn unknown_profile_lists_the_known_ones() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::load(&write(dir.path(), "c.yml", "work: {}\nhome:\n  s3_bucket: b\n")).unwrap();
        let err = config.profile("nope").unwrap_err();
        match &err {
            ConfigError::UnknownProfile { name, known, .. } => {
                assert_eq!(name, "nope");
                assert_eq!(known, &["home", "work"]);
            }
            other => panic!("{other:?}"),
        }
        let message = err.to_string();
        assert!(message.contains("no profile `nope`"), "{message}");
        assert!(message.contains("(profiles: home, work)"), "{message}");
        assert!(message.contains("bakthat configure -p nope"), "{message}");
        assert_eq!(config.profile("default").unwrap(), Profile::default());
    }

    #[test]
    fn malformed_yaml_reports_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        // Line 3: the second `:` (at 1-based column 15) starts a mapping inside a plain scalar.
        let path = write(dir.path(), "c.yml", "default:\n  access_key: a\n  s3_bucket: x: y\n");
        match Config::load(&path).unwrap_err() {
            ConfigError::Parse { line, column, message, .. } => {
                assert_eq!((line, column), (Some(3), Some(15)));
                assert!(message.starts_with("mapping values are not allowed"), "{message}");
                assert!(!message.contains("line 3"), "location is reported apart: {message}");
            }
            other => panic!("{other:?}"),
        }
        let shown = Config::load(&path).unwrap_err().to_string();
        assert!(shown.starts_with(&format!("{}:3:15: mapping values", path.display())), "{shown}");
        assert!(shown.ends_with("; fix the YAML or run `bakthat configure`"), "{shown}");

        // Line 2 column 3: an unclosed flow sequence is found where the next key starts.
        let path = write(dir.path(), "d.yml", "a: [1, 2\nb: 3\n");
        match Config::load(&path).unwrap_err() {
            ConfigError::Parse { line, column, .. } => assert_eq!((line, column), (Some(2), Some(2))),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn structural_errors_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("- a\n- b\n", ""),
            // The classic indentation mistake: the settings are not under the profile.
            ("default:\naccess_key: x\n", "access_key"),
            ("default: text\n", "default"),
            ("default:\n  rotation:\n    days: seven\n", "default.rotation.days"),
            ("default:\n  rotation:\n    weeks: -1\n", "default.rotation.weeks"),
            ("default:\n  rotation: 7\n", "default.rotation"),
            ("default:\n  default_destination: ftp\n", "default.default_destination"),
            ("default:\n  compress: maybe\n", "default.compress"),
            ("default:\n  plugins: one.Plugin\n", "default.plugins"),
            ("default:\n  plugins: [a.B, [c]]\n", "default.plugins[1]"),
            ("default:\n  access_key: true\n", "default.access_key"),
            ("sync: [a]\n", "sync"),
            ("sync:\n  auto: sometimes\n", "sync.auto"),
            ("default:\n  compression_level: 13\n", "default.compression_level"),
            ("default:\n  compression_level: 0\n", "default.compression_level"),
        ];
        for (text, expected) in cases {
            match Config::load(&write(dir.path(), "c.yml", text)) {
                Err(ConfigError::Invalid { key, message, .. }) => {
                    assert_eq!(key, expected, "{text:?}: {message}");
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
        let err = Config::load(&write(dir.path(), "c.yml", "w:\n  rotation:\n    days: seven\n")).unwrap_err();
        assert!(err.to_string().ends_with("`w.rotation.days`: expected a whole number, got \"seven\""), "{err}");
    }

    #[test]
    fn compression_level_is_read_and_kept() {
        let config = Config::from_yaml(Path::new("c.yml"), "default:\n  compression_level: '4'\n").unwrap();
        assert_eq!(config.profile("default").unwrap().compression_level, Some(4));
    }

    #[test]
    fn first_week_day_accepts_names_and_numbers() {
        let cases = [
            ("Monday", Some(0)),
            ("sunday", Some(6)),
            ("SATURDAY", Some(5)),
            ("5", Some(5)),
            ("x", None),
            ("7", None),
            ("-1", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_weekday(text), expected, "{text}");
            let yaml = format!("default:\n  rotation:\n    first_week_day: '{text}'\n");
            let loaded = Config::from_yaml(Path::new("c.yml"), &yaml);
            match expected {
                Some(day) => {
                    let rotation = loaded.unwrap().profile("default").unwrap().rotation.unwrap();
                    assert_eq!(rotation.first_week_day, Some(day), "{text}");
                }
                None => {
                    let err = loaded.unwrap_err();
                    assert!(
                        matches!(&err, ConfigError::Invalid { key, .. } if key == "default.rotation.first_week_day"),
                        "{text}: {err:?}"
                    );
                    assert!(err.to_string().contains("weekday name"), "{err}");
                }
            }
        }
        let int = Config::from_yaml(Path::new("c.yml"), "d:\n  rotation: {first_week_day: 5}\n").unwrap();
        assert_eq!(int.profiles["d"].rotation.as_ref().unwrap().week_start(), 5);
        assert!(Config::from_yaml(Path::new("c.yml"), "d:\n  rotation: {first_week_day: 9}\n").is_err());
        assert_eq!(RotationConfig::default().week_start(), DEFAULT_FIRST_WEEK_DAY);
    }

    #[test]
    fn failed_save_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "c.yml", CONFIG_06);

        // The write fails half way: the target is untouched and the temporary file is gone.
        let err = write_atomic(&path, |file| {
            file.write_all(b"default:\n  access_key: trunc")?;
            Err(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert!(matches!(err, ConfigError::Io { action: "save", .. }), "{err:?}");
        assert_eq!(fs::read_to_string(&path).unwrap(), CONFIG_06);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "temporary file left behind");

        // The rename fails (the target is a non-empty directory): its contents stay, no temporary file is left.
        let target = dir.path().join("as_dir.yml");
        fs::create_dir(&target).unwrap();
        write(&target, "inside", "keep me");
        let config = Config::from_yaml(&target, CONFIG_06).unwrap();
        assert!(matches!(config.save(), Err(ConfigError::Io { .. })));
        assert_eq!(fs::read_to_string(target.join("inside")).unwrap(), "keep me");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2, "temporary file left behind");

        // The parent is a file: nothing can be written, and the file in the way is untouched.
        let blocker = write(dir.path(), "blocker", "not a dir");
        let config = Config::from_yaml(&blocker.join("c.yml"), CONFIG_06).unwrap();
        let err = config.save().unwrap_err();
        assert!(err.to_string().starts_with("cannot save "), "{err}");
        assert_eq!(fs::read_to_string(&blocker).unwrap(), "not a dir");

        // A config that cannot be written as such is refused before the file is touched.
        let mut config = Config::load(&path).unwrap();
        config.set_profile("sync", Profile::default());
        assert!(matches!(config.save(), Err(ConfigError::Invalid { key, .. }) if key == "sync"));
        assert_eq!(fs::read_to_string(&path).unwrap(), CONFIG_06);
    }

    #[test]
    fn save_through_a_symlink_replaces_the_linked_file() {
        let dir = tempfile::tempdir().unwrap();
        let real = write(dir.path(), "real.yml", "default: {s3_bucket: a}\n");
        let link = dir.path().join("link.yml");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let mut config = Config::load(&link).unwrap();
        config.set_profile("default", Profile { s3_bucket: Some("b".into()), ..Profile::default() });
        config.save().unwrap();
        assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(Config::load(&real).unwrap().profiles["default"].s3_bucket.as_deref(), Some("b"));
    }

    #[test]
    fn merge_keys_are_applied_as_pyyaml_did() {
        let text = "base: &base\n  access_key: K\n  region_name: eu-west-1\nwork:\n  <<: *base\n  s3_bucket: w\n";
        let config = Config::from_yaml(Path::new("c.yml"), text).unwrap();
        let work = &config.profiles["work"];
        assert_eq!((work.access_key.as_deref(), work.s3_bucket.as_deref()), (Some("K"), Some("w")));
        assert!(work.extra.is_empty(), "{:?}", work.extra);
    }

    #[test]
    fn set_profile_keeps_the_others_and_their_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "c.yml", "zeta: {s3_bucket: z}\nsync: {url: u}\nalpha: {s3_bucket: a}\n");
        let mut config = Config::load(&path).unwrap();
        config.set_profile("middle", Profile { s3_bucket: Some("m".into()), ..Profile::default() });
        config.set_profile("alpha", Profile { s3_bucket: Some("a2".into()), ..Profile::default() });
        config.save().unwrap();
        let after = raw(&path);
        let keys: Vec<_> = after.as_mapping().unwrap().keys().map(|k| k.as_str().unwrap()).collect();
        assert_eq!(keys, ["zeta", "sync", "alpha", "middle"]);
        assert_eq!(after["alpha"]["s3_bucket"], Value::from("a2"));
        assert_eq!(after["sync"]["url"], Value::from("u"));
    }

    #[test]
    fn backend_hash_matches_06() {
        // Reference value from the 0.6 e2e dump (also `printf AKIDEXAMPLEmybucket | sha512sum`).
        let hash = backend_hash("AKIDEXAMPLE", "mybucket");
        assert_eq!(
            hash,
            "69c02b2e6d9c5dc7c55c1057fc4510a6e4008320d3eeffc5a679c00d523e6e6d\
             0857832021139400ba9c4ce1996ea65496f102eb10433118b51fbbec48f6cb32"
        );
    }

    #[test]
    fn config_path_precedence() {
        let home = Some(PathBuf::from("/home/u"));
        let cli = Path::new("/etc/b.yml");
        assert_eq!(resolve_config_path(Some(cli), Some("/env.yml".into()), home.clone()), cli);
        assert_eq!(resolve_config_path(None, Some("/env.yml".into()), home.clone()), Path::new("/env.yml"));
        assert_eq!(resolve_config_path(None, Some("".into()), home.clone()), Path::new("/home/u/.bakthat.yml"));
        assert_eq!(resolve_config_path(None, None, home), Path::new("/home/u/.bakthat.yml"));
    }

    #[test]
    fn debug_hides_secrets() {
        let config = Config::from_yaml(Path::new("c.yml"), CONFIG_06).unwrap();
        let shown = format!("{config:?}");
        for secret in ["wJalrXUtnFEMI", "hunter2", "s3cret", "tok123", "swiftsecret"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("AKIDEXAMPLE"));
    }

    #[test]
    fn serde_deserialize_reports_the_key() {
        let p: Profile = serde_norway::from_str("compress: off\nauth_version: 3\n").unwrap();
        assert!(!p.compress && p.auth_version.as_deref() == Some("3"));
        let err = serde_norway::from_str::<Profile>("rotation: {days: x}\n").unwrap_err();
        assert!(err.to_string().contains("`rotation.days`"), "{err}");
    }

    /// Any YAML value, with strings drawn to hit quoting edge cases.
    fn any_value() -> impl Strategy<Value = Value> {
        let text = prop_oneof![
            "[a-zA-Z0-9 _:#,.'\"\\-\\[\\]{}!&*|>%@`~?=+/]{0,12}",
            Just("yes".to_string()),
            Just("No".to_string()),
            Just("1:30".to_string()),
            Just("2024-01-01".to_string()),
            Just("0777".to_string()),
            Just("inf".to_string()),
            Just(".nan".to_string()),
            Just("- x".to_string()),
            Just(" lead".to_string()),
            Just("trail ".to_string()),
            Just("line\nbreak\ttab\r\u{85}\u{2028}\u{1}é😀".to_string()),
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            (-1.0e300f64..1.0e300).prop_map(Value::from),
            text.clone().prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Sequence),
                prop::collection::vec((text.clone(), inner), 0..4).prop_map(|entries| Value::Mapping(
                    entries.into_iter().map(|(k, v)| (Value::String(k), v)).collect()
                )),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn emitted_yaml_reads_back_the_same(value in any_value()) {
            let text = emit_document(&value);
            let back: Value = serde_norway::from_str(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
            prop_assert_eq!(back, value, "{}", text);
        }

        #[test]
        fn profiles_round_trip_through_save(
            strings in prop::collection::vec(prop::option::of("[ -~]{0,10}"), 4),
            days in prop::option::of(0i64..1000),
            first_week_day in prop::option::of(0i64..7),
            compress: bool,
            extra in any_value(),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let mut config = Config::empty(&dir.path().join("c.yml"));
            let profile = Profile {
                access_key: strings[0].clone(),
                secret_key: strings[1].clone(),
                s3_bucket: strings[2].clone(),
                auth_version: strings[3].clone(),
                compress,
                rotation: Some(RotationConfig { days, first_week_day, ..RotationConfig::default() }),
                extra: [("unknown".to_string(), extra)].into_iter().collect(),
                ..Profile::default()
            };
            config.set_profile("p", profile);
            config.save().unwrap();
            let back = Config::load(config.path()).unwrap();
            prop_assert_eq!(back.profiles, config.profiles);
        }
    }
}
