//! The settings blocks of the file: a profile, its `rotation:` block and the top-level `sync:` block.
//!
//! Each block is one table in a [`settings!`] call: a key's doc, type, default, how it is read and when it is left
//! out of a saved file are written once, on its line, and the macro makes the struct, its `Default`, the reader
//! and the `Debug` that hides secrets. Adding a key is adding a line.
//!
//! Not here: reading the raw values (see `validate.rs`), the file as a whole (see `Config`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize};
use serde_norway::Value;

use super::validate::{weekday, Bad, Entries};
use super::{DEFAULT_DESTINATION, DEFAULT_FIRST_WEEK_DAY};
use crate::model::{Compression, Destination};

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

/// A field as `Debug` shows it: as it is, or hidden when marked `secret`.
macro_rules! shown {
    ($value:expr) => {
        &$value as &dyn fmt::Debug
    };
    ($value:expr, secret) => {
        &Secret(&$value) as &dyn fmt::Debug
    };
}

/// One settings block. Each line: `doc`, `name: Type = default, read reader, skip "serde predicate"[, secret];`
/// where `reader` is a `fn(&mut Entries, key) -> Result<Type, Bad>` and `skip` says when a save leaves the key out.
/// Every block also keeps the keys this version does not know in `extra`, written back unchanged.
macro_rules! settings {
    (
        $(#[$meta:meta])*
        pub struct $name:ident, expecting $expected:literal {
            $(
                $(#[doc = $doc:literal])*
                $key:ident: $ty:ty = $default:expr, read $read:expr, skip $skip:literal $(, $secret:ident)?;
            )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Serialize, PartialEq)]
        pub struct $name {
            $(
                $(#[doc = $doc])*
                #[serde(skip_serializing_if = $skip)]
                pub $key: $ty,
            )*
            /// Keys this version does not know, written back unchanged.
            #[serde(flatten)]
            pub extra: BTreeMap<String, Value>,
        }

        impl $name {
            /// The keys this version knows, in table order.
            pub const KEYS: &'static [&'static str] = &[$(stringify!($key)),*];

            pub(super) fn from_value(value: Value) -> Result<$name, Bad> {
                let mut e = Entries::new(value, $expected)?;
                Ok($name {
                    $($key: {
                        let read: fn(&mut Entries, &str) -> Result<$ty, Bad> = $read;
                        read(&mut e, stringify!($key))?
                    },)*
                    extra: e.rest(),
                })
            }
        }

        impl Default for $name {
            fn default() -> Self {
                $name { $($key: $default,)* extra: BTreeMap::new() }
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    $(.field(stringify!($key), shown!(self.$key $(, $secret)?)))*
                    .field("extra", &self.extra)
                    .finish()
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                $name::from_value(Value::deserialize(deserializer)?).map_err(serde::de::Error::custom)
            }
        }
    };
}

fn is_true(b: &bool) -> bool {
    *b
}

fn is_false(b: &bool) -> bool {
    !*b
}

// Readers shared by several keys.
fn text(e: &mut Entries, key: &str) -> Result<Option<String>, Bad> {
    e.text(key)
}
fn flag(e: &mut Entries, key: &str) -> Result<Option<bool>, Bad> {
    e.flag(key)
}
fn count(e: &mut Entries, key: &str) -> Result<Option<i64>, Bad> {
    e.count(key)
}
fn opaque(e: &mut Entries, key: &str) -> Result<Option<Value>, Bad> {
    Ok(e.take(key))
}

fn destination(e: &mut Entries, key: &str) -> Result<Option<Destination>, Bad> {
    let Some(dest) = e.text(key)? else { return Ok(None) };
    dest.parse().map(Some).map_err(|_| {
        let names: Vec<&str> = Destination::ALL.iter().map(|d| d.as_str()).collect();
        Bad::new(key, format!("expected one of {}, got {dest:?}", names.join(", ")))
    })
}

fn compression(e: &mut Entries, key: &str) -> Result<Option<Compression>, Bad> {
    let Some(name) = e.text(key)? else { return Ok(None) };
    name.parse().map(Some).map_err(|m| Bad::new(key, m))
}

/// The level's range is the profile's `compression`'s (read after this key, so looked at without taking it).
fn compression_level(e: &mut Entries, key: &str) -> Result<Option<u8>, Bad> {
    let compression = e.peek_text("compression").and_then(|c| c.parse().ok()).unwrap_or_default();
    let (low, high) = match compression {
        Compression::Gzip => (1, 12),
        Compression::Zstd => (1, 19),
    };
    match e.count(key)? {
        None => Ok(None),
        Some(n) if (low..=high).contains(&n) => Ok(Some(n as u8)),
        Some(n) => Err(Bad::new(key, format!("must be {low} to {high} for {compression}, got {n}"))),
    }
}

settings! {
    /// One profile: the settings for one account and its stores.
    ///
    /// The 0.6 keys keep their names and meaning; values that 0.6 accepted still load. Keys this version does not
    /// know are kept in `extra` and written back on save. `Debug` hides the secrets.
    pub struct Profile, expecting "a mapping of settings (`key: value` lines indented under the profile name)" {
        /// AWS access key (Swift: `ACCOUNT:USER`).
        access_key: Option<String> = None, read text, skip "Option::is_none";
        /// AWS secret key (Swift: the key).
        secret_key: Option<String> = None, read text, skip "Option::is_none", secret;
        /// Region; 0.6 required it for every remote store.
        region_name: Option<String> = None, read text, skip "Option::is_none";
        /// S3 bucket, also the Swift container.
        s3_bucket: Option<String> = None, read text, skip "Option::is_none";
        /// Glacier vault (0.6 also needed it for the inventory hash of S3 backups).
        glacier_vault: Option<String> = None, read text, skip "Option::is_none";
        /// See [`Profile::destination`] for the default.
        default_destination: Option<Destination> = None, read destination, skip "Option::is_none";
        /// Gzip the archive (default true; written only when false).
        compress: bool = true, read |e, k| Ok(e.flag(k)?.unwrap_or(true)), skip "is_true";
        /// Grandfather-father-son retention.
        rotation: Option<RotationConfig> = None,
            read |e, k| e.take(k).map(|v| RotationConfig::from_value(v).map_err(|b| b.under(k))).transpose(),
            skip "Option::is_none";
        /// 0.6 Python plugins (`module.Class`); run by the Python package's plugin host (`client::host`).
        plugins: Vec<String> = Vec::new(), read |e, k| e.texts(k), skip "Vec::is_empty";
        /// 0.6 plugin directory (default `~/.bakthat_plugins`); read by the Python package's plugin host.
        plugins_dir: Option<String> = None, read text, skip "Option::is_none";
        /// Swift auth URL.
        auth_url: Option<String> = None, read text, skip "Option::is_none";
        /// Swift auth version (`1`, `2`, …; a number or a string in the file).
        auth_version: Option<String> = None, read text, skip "Option::is_none";
        /// BakManager token.
        bakmanager_token: Option<String> = None, read text, skip "Option::is_none", secret;
        /// BakManager API URL (0.6 used it for both of its endpoints).
        bakmanager_api: Option<String> = None, read text, skip "Option::is_none";
        /// Sync server URL for this profile, over the top-level `sync.url` (see [`super::Config::sync_for`]).
        url: Option<String> = None, read text, skip "Option::is_none";
        /// Sync user for this profile, over `sync.username`.
        username: Option<String> = None, read text, skip "Option::is_none";
        /// Sync password for this profile, over `sync.password`.
        password: Option<String> = None, read text, skip "Option::is_none", secret;
        /// New: the directory of the local store (`~/` is expanded by [`Profile::local_dir`]).
        local_path: Option<PathBuf> = None, read |e, k| Ok(e.text(k)?.map(PathBuf::from)), skip "Option::is_none";
        /// New: endpoint of an S3-compatible service.
        endpoint_url: Option<String> = None, read text, skip "Option::is_none";
        /// New: S3 storage class for uploads (e.g. `STANDARD_IA`).
        s3_storage_class: Option<String> = None, read text, skip "Option::is_none";
        /// New: skip TLS verification for Swift (0.6 always did; now opt-in).
        swift_insecure: bool = false, read |e, k| Ok(e.flag(k)?.unwrap_or(false)), skip "is_false";
        /// New: hook settings, opaque here.
        hooks: Option<Value> = None, read opaque, skip "Option::is_none";
        /// New: a URL to notify after backups.
        webhook_url: Option<String> = None, read text, skip "Option::is_none";
        /// New: key-derivation settings for encryption, opaque here.
        kdf: Option<Value> = None, read opaque, skip "Option::is_none";
        /// New: sync after each backup for this profile, over `sync.auto`.
        sync_auto: Option<bool> = None, read flag, skip "Option::is_none";
        /// New: the `compression`'s level: deflate 1 (fastest) to 12 (smallest), zstd 1 to 19; the default is the
        /// archive format's (see the README).
        compression_level: Option<u8> = None, read compression_level, skip "Option::is_none";
        /// New: `gzip` (`.tgz`, the default, readable by bakthat 0.6) or `zstd` (`.tar.zst`, seekable zstd).
        compression: Option<Compression> = None, read compression, skip "Option::is_none";
        /// New: incremental backups (`{full_every: 7D, max_chain: 14}`); without it every backup is full.
        incremental: Option<IncrementalConfig> = None,
            read |e, k| e.take(k).map(|v| IncrementalConfig::from_value(v).map_err(|b| b.under(k))).transpose(),
            skip "Option::is_none";
    }
}

impl Profile {
    /// `default_destination`, or `local` when unset (0.6 defaulted to `s3`).
    pub fn destination(&self) -> Destination {
        self.default_destination.unwrap_or(DEFAULT_DESTINATION)
    }

    /// Whether to compress the archive (0.6's `compress`; false stores a file as it is).
    pub fn compress(&self) -> bool {
        self.compress
    }

    /// How archives are compressed: `compression`, gzip when unset.
    pub fn compression(&self) -> Compression {
        self.compression.unwrap_or_default()
    }

    /// `local_path` with a leading `~/` replaced by the home directory.
    pub fn local_dir(&self) -> Option<PathBuf> {
        let path = self.local_path.as_ref()?;
        match (path.strip_prefix("~"), dirs::home_dir()) {
            (Ok(rest), Some(home)) => Some(home.join(rest)),
            _ => Some(path.clone()),
        }
    }
}

fn first_week_day(e: &mut Entries, key: &str) -> Result<Option<i64>, Bad> {
    e.take(key).map(|v| weekday(&v).map_err(|m| Bad::new(key, m))).transpose()
}

settings! {
    /// The `rotation:` block of a profile: how many backups of each age to keep. Values are whole numbers ≥ 0;
    /// `first_week_day` is 0..=6 with monday = 0 (see [`DEFAULT_FIRST_WEEK_DAY`]).
    pub struct RotationConfig, expecting "a mapping such as `days: 7`" {
        days: Option<i64> = None, read count, skip "Option::is_none";
        weeks: Option<i64> = None, read count, skip "Option::is_none";
        months: Option<i64> = None, read count, skip "Option::is_none";
        years: Option<i64> = None, read count, skip "Option::is_none";
        hours: Option<i64> = None, read count, skip "Option::is_none";
        minutes: Option<i64> = None, read count, skip "Option::is_none";
        seconds: Option<i64> = None, read count, skip "Option::is_none";
        first_week_day: Option<i64> = None, read first_week_day, skip "Option::is_none";
    }
}

impl RotationConfig {
    /// `first_week_day`, or saturday as in 0.6.
    pub fn week_start(&self) -> i64 {
        self.first_week_day.unwrap_or(DEFAULT_FIRST_WEEK_DAY)
    }
}

fn interval(e: &mut Entries, key: &str) -> Result<Option<String>, Bad> {
    let Some(text) = e.text(key)? else { return Ok(None) };
    match crate::interval::parse_interval(&text) {
        Ok(s) if s > 0 => Ok(Some(text)),
        Ok(_) => Err(Bad::new(key, "must be longer than nothing, e.g. 7D")),
        Err(err) => Err(Bad::new(key, err.to_string())),
    }
}

fn chain_length(e: &mut Entries, key: &str) -> Result<Option<i64>, Bad> {
    match e.count(key)? {
        Some(n) if !(1..=1000).contains(&n) => Err(Bad::new(key, format!("must be 1 to 1000, got {n}"))),
        n => Ok(n),
    }
}

settings! {
    /// The `incremental:` block of a profile: a backup is incremental (stores only what changed since the previous
    /// backup of the same name, source and store) unless the chain's full is older than `full_every` (default
    /// 7D) or the chain already has `max_chain` incrementals (default 14).
    pub struct IncrementalConfig, expecting "a mapping such as `{full_every: 7D, max_chain: 14}`" {
        /// How old a chain's full backup may get before the next backup is a full one (the interval grammar).
        full_every: Option<String> = None, read interval, skip "Option::is_none";
        /// How many incrementals a chain may have before the next backup is a full one.
        max_chain: Option<i64> = None, read chain_length, skip "Option::is_none";
    }
}

impl IncrementalConfig {
    /// Default `full_every`.
    pub const DEFAULT_FULL_EVERY: &'static str = "7D";
    /// Default `max_chain`.
    pub const DEFAULT_MAX_CHAIN: u32 = 14;

    /// `full_every` in seconds.
    pub fn full_every_seconds(&self) -> i64 {
        let text = self.full_every.as_deref().unwrap_or(Self::DEFAULT_FULL_EVERY);
        crate::interval::parse_interval(text).unwrap_or(7 * 86_400)
    }

    /// `max_chain`.
    pub fn max_chain(&self) -> u32 {
        self.max_chain.map(|n| n as u32).unwrap_or(Self::DEFAULT_MAX_CHAIN)
    }
}

settings! {
    /// The top-level `sync:` block: the inventory sync server. `Debug` hides the password.
    pub struct SyncConfig, expecting "a mapping with `url`, `username`, `password` and `auto`" {
        url: Option<String> = None, read text, skip "Option::is_none";
        username: Option<String> = None, read text, skip "Option::is_none";
        password: Option<String> = None, read text, skip "Option::is_none", secret;
        /// Sync after every backup (written only when true).
        auto: bool = false, read |e, k| Ok(e.flag(k)?.unwrap_or(false)), skip "is_false";
    }
}
