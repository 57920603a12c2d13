//! Stores built from a profile: the one place that turns a profile's settings into a [`Backend`] for each
//! [`Destination`] (rustic's `choose.rs` plays this part), and the one place that starts or checks a cold
//! retrieval ([`cold`]).
//!
//! Not here: what to store (see `ops`), the stores themselves (see `storage`), or the profile file (see `config`).
//! Every other module asks this one for a store instead of reading `s3_bucket`, `glacier_vault` or `local_path`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use thiserror::Error;

use crate::config::{Config, ConfigError, Profile};
use crate::inventory::{Inventory, InventoryError};
use crate::model::{BackupRecord, Destination, StoreId};
use crate::storage::aws::AwsAccess;
use crate::storage::glacier::{GlacierSettings, GlacierStore};
use crate::storage::local::LocalStore;
use crate::storage::s3::{S3Settings, S3Store};
use crate::storage::swift::{AuthVersion, SwiftSettings, SwiftStore};
use crate::storage::{Backend, StorageError};

mod catalog;
pub mod cold;

pub use catalog::InventoryCatalog;
pub(crate) use catalog::META_PREFIX as GLACIER_META_PREFIX;

/// Why a store could not be opened.
#[derive(Debug, Error)]
pub enum OpenError {
    /// A setting the store needs is missing or invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("no data directory found for the default store; set local_path in the profile")]
    NoDataDir,
    /// A row's store is not the one this profile uses for its kind (see [`Stores::open_record`]).
    #[error("{stored} is in {store}, which profile {profile} does not use ({current}); {hint}")]
    OtherStore { stored: String, store: StoreId, profile: String, current: String, hint: String },
}

/// The stores of one profile. Opening a store makes no request.
#[derive(Clone, Copy)]
pub struct Stores<'a> {
    pub config: &'a Config,
    pub profile_name: &'a str,
    pub profile: &'a Profile,
    /// The Glacier store keeps archive ids and retrieval jobs in it.
    pub inventory: &'a Arc<Inventory>,
    /// Wraps every store [`Stores::open`] opens (tests: a counting or fault-injecting store).
    pub layer: Option<&'a StoreLayer>,
}

/// How a profile reaches a row's store (see [`Stores::open_record`]).
enum Reach<'r> {
    /// It is the profile's store of the row's kind, or the row's store is unknown.
    Own,
    /// A local directory that no profile uses any more, and that exists.
    FormerLocal(&'r Path),
    /// Another store; `users` are the profiles that use it.
    Other { users: Vec<String> },
}

/// A wrapper around a store, see [`Stores::layer`].
pub type StoreLayer = Arc<dyn Fn(Arc<dyn Backend>) -> Arc<dyn Backend> + Send + Sync>;

impl<'a> Stores<'a> {
    /// Opens the store of a destination. S3 archives take the profile's `s3_storage_class`; small objects use
    /// [`Stores::s3_hot`].
    pub fn open(&self, destination: Destination) -> Result<Arc<dyn Backend>, OpenError> {
        let store = self.open_unwrapped(destination)?;
        Ok(match self.layer {
            Some(wrap) => wrap(store),
            None => store,
        })
    }

    fn open_unwrapped(&self, destination: Destination) -> Result<Arc<dyn Backend>, OpenError> {
        Ok(match destination {
            Destination::Local => Arc::new(LocalStore::open(&self.local_dir()?)?),
            Destination::S3 => Arc::new(S3Store::new(&S3Settings {
                storage_class: self.profile.s3_storage_class.clone(),
                ..self.s3_settings()
            })?),
            Destination::Glacier => Arc::new(self.glacier()?),
            Destination::Swift => Arc::new(SwiftStore::new(&self.swift_settings()?)?),
        })
    }

    /// Opens the store holding `record`: the profile's store of its kind when the row's store is that one or
    /// unknown; else, for a `local:` directory that no profile uses any more (a `local_path` that was changed) and
    /// that still exists, that directory. Any other store is [`OpenError::OtherStore`], naming the store and the
    /// profile to use.
    pub fn open_record(&self, record: &BackupRecord) -> Result<Arc<dyn Backend>, OpenError> {
        let own = self.identity(record.backend)?;
        let users = match self.reach(record)? {
            Reach::Own => return self.open(record.backend),
            Reach::FormerLocal(dir) => {
                let store: Arc<dyn Backend> = Arc::new(LocalStore::open(dir)?);
                return Ok(match self.layer {
                    Some(wrap) => wrap(store),
                    None => store,
                });
            }
            Reach::Other { users } => users,
        };
        let hint = match record.store.local_dir() {
            _ if !users.is_empty() => format!("use -p {}", users.join(" or -p ")),
            Some(dir) => format!(
                "{} is gone; put the store back there, or set local_path of a profile to where it is now and use -p",
                dir.display()
            ),
            None => "add a profile for that store (bakthat configure -p NAME) and use -p NAME".to_string(),
        };
        let current = match (record.backend, own.is_unknown()) {
            (_, true) => format!("it has no {} store", record.backend),
            (Destination::Local, false) => format!("its local_path is {}", self.local_dir()?.display()),
            (d, false) => format!("its {d} store is {own}"),
        };
        Err(OpenError::OtherStore {
            stored: record.stored_filename.to_string(),
            store: record.store.clone(),
            profile: self.profile_name.to_string(),
            current,
            hint,
        })
    }

    /// Whether [`Stores::open_record`] would open the row's store (no request): the mount lists only such rows.
    pub fn can_open(&self, record: &BackupRecord) -> bool {
        matches!(self.reach(record), Ok(Reach::Own | Reach::FormerLocal(_)))
    }

    fn reach<'r>(&self, record: &'r BackupRecord) -> Result<Reach<'r>, OpenError> {
        if record.store.is_unknown() || record.store == self.identity(record.backend)? {
            return Ok(Reach::Own);
        }
        let users = self.profiles_using(&record.store);
        Ok(match record.store.local_dir() {
            Some(dir) if users.is_empty() && dir.is_dir() => Reach::FormerLocal(dir),
            _ => Reach::Other { users },
        })
    }

    /// The identities of this profile's stores, one per kind it has settings for.
    pub fn identities(&self) -> Vec<StoreId> {
        Destination::ALL.into_iter().filter_map(|d| self.identity(d).ok()).filter(|i| !i.is_unknown()).collect()
    }

    /// The identity of the store of a destination (see [`StoreId`]), from the profile alone (no request; a local
    /// directory is made canonical, as far as it exists). Unknown when the profile has no such store.
    pub fn identity(&self, destination: Destination) -> Result<StoreId, OpenError> {
        let p = self.profile;
        let aws = || match (&p.endpoint_url, &p.region_name) {
            (Some(e), _) if !e.is_empty() => e.trim_end_matches('/').to_string(),
            (_, Some(r)) if !r.is_empty() => format!("aws:{r}"),
            _ => "aws".to_string(),
        };
        let set = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
        let place = match destination {
            Destination::Local => Some(canonical_dir(&self.local_dir()?).to_string_lossy().into_owned()),
            // Bucket names are global on AWS: the region does not name the bucket.
            Destination::S3 => set(&p.s3_bucket).map(|b| {
                let e = set(&p.endpoint_url).map(|e| e.trim_end_matches('/').to_string());
                format!("{}/{b}", e.unwrap_or_else(|| "aws".into()))
            }),
            Destination::Glacier => set(&p.glacier_vault).map(|v| format!("{}/{v}", aws())),
            Destination::Swift => {
                set(&p.auth_url).zip(set(&p.s3_bucket)).map(|(u, c)| format!("{}/{c}", u.trim_end_matches('/')))
            }
        };
        Ok(place.and_then(|place| StoreId::new(destination, &place).ok()).unwrap_or_default())
    }

    /// The profiles of the config (this one included) whose store of that kind is `store`.
    fn profiles_using(&self, store: &StoreId) -> Vec<String> {
        let Some(kind) = store.destination() else { return Vec::new() };
        self.config
            .profiles
            .iter()
            .filter(|(_, profile)| {
                let other = Stores { profile_name: "", profile, ..*self };
                other.identity(kind).is_ok_and(|id| &id == store)
            })
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// The directory of the local store: `local_path`, or `<data dir>/bakthat/store`.
    pub fn local_dir(&self) -> Result<PathBuf, OpenError> {
        match self.profile.local_dir() {
            Some(d) => Ok(d),
            None => Ok(dirs::data_dir().ok_or(OpenError::NoDataDir)?.join("bakthat").join("store")),
        }
    }

    /// The profile's S3 bucket (`s3_bucket`, `region_name`, `endpoint_url`, keys) for small objects that must stay
    /// readable at once (KeyValue, index sidecars, the sync journal, the Glacier inventory copy) and for what only
    /// S3 does (presigned URLs). It never applies `s3_storage_class`: that is for archives, see [`Stores::open`].
    pub fn s3_hot(&self) -> Result<S3Store, OpenError> {
        Ok(S3Store::new(&self.s3_settings())?)
    }

    /// The profile's Glacier vault (`glacier_vault`), with the inventory as its catalog of archive ids.
    pub fn glacier(&self) -> Result<GlacierStore, OpenError> {
        let settings = GlacierSettings {
            vault: self.profile.glacier_vault.clone().unwrap_or_default(),
            access: self.aws_access(),
            ..GlacierSettings::default()
        };
        Ok(GlacierStore::new(&settings, Arc::new(InventoryCatalog::new(self.inventory.clone())))?)
    }

    /// The Swift settings of the profile: `auth_url`, `access_key` (`ACCOUNT:USER`), `secret_key`, `s3_bucket` (the
    /// container), `auth_version`, `region_name`, `swift_insecure`, and for Keystone v3 the extra keys
    /// `user_domain_name` and `project_domain_name`.
    pub fn swift_settings(&self) -> Result<SwiftSettings, OpenError> {
        let p = self.profile;
        let invalid = |key: &str, message: String| {
            OpenError::Config(ConfigError::Invalid {
                path: self.config.path().to_path_buf(),
                key: format!("{}.{key}", self.profile_name),
                message,
            })
        };
        let required = |value: &Option<String>, key: &str, what: &str| {
            value.clone().filter(|v| !v.is_empty()).ok_or_else(|| {
                invalid(
                    key,
                    format!(
                        "the swift destination needs {what}; set it with `bakthat configure -p {}`",
                        self.profile_name
                    ),
                )
            })
        };
        let auth_url = required(&p.auth_url, "auth_url", "auth_url (e.g. https://host/auth/v1.0)")?;
        let user = required(&p.access_key, "access_key", "access_key (ACCOUNT:USER)")?;
        let key = required(&p.secret_key, "secret_key", "secret_key (the Swift key or password)")?;
        let container = required(&p.s3_bucket, "s3_bucket", "s3_bucket (the container name)")?;
        let auth_version =
            AuthVersion::from_setting(p.auth_version.as_deref(), &auth_url).map_err(|m| invalid("auth_version", m))?;
        let extra = |k: &str| p.extra.get(k).and_then(|v| v.as_str()).map(str::to_string);
        Ok(SwiftSettings {
            auth_url,
            auth_version,
            user,
            key,
            container,
            region: p.region_name.clone(),
            insecure: p.swift_insecure,
            user_domain: extra("user_domain_name"),
            project_domain: extra("project_domain_name"),
            ..SwiftSettings::default()
        })
    }

    /// The backend hash recorded with rows of a destination (0.6: sha512(access_key + container); for the local
    /// store, of `local` and its directory).
    pub fn backend_hash(&self, destination: Destination) -> Result<String, OpenError> {
        let p = self.profile;
        let key = p.access_key.as_deref().unwrap_or_default();
        let hash = crate::config::backend_hash;
        Ok(match destination {
            Destination::Glacier => hash(key, p.glacier_vault.as_deref().unwrap_or_default()),
            Destination::S3 | Destination::Swift => hash(key, p.s3_bucket.as_deref().unwrap_or_default()),
            Destination::Local => hash("local", &format!("local store {}", self.local_dir()?.display())),
        })
    }

    /// The profile's `region_name`, `endpoint_url` and keys, as the S3 and Glacier stores take them.
    fn aws_access(&self) -> AwsAccess {
        let p = self.profile;
        AwsAccess {
            region: p.region_name.clone(),
            endpoint_url: p.endpoint_url.clone(),
            access_key: p.access_key.clone(),
            secret_key: p.secret_key.clone(),
        }
    }

    fn s3_settings(&self) -> S3Settings {
        S3Settings {
            bucket: self.profile.s3_bucket.clone().unwrap_or_default(),
            access: self.aws_access(),
            ..S3Settings::default()
        }
    }
}

/// `dir` made absolute, without `.` or `..`, and with the symbolic links of its longest existing ancestor
/// resolved (the store may not exist yet before its first backup).
fn canonical_dir(dir: &Path) -> PathBuf {
    let abs = match std::env::current_dir() {
        Ok(cwd) if dir.is_relative() => cwd.join(dir),
        _ => dir.to_path_buf(),
    };
    let mut clean = PathBuf::new();
    for c in abs.components() {
        match c {
            Component::ParentDir => {
                clean.pop();
            }
            Component::CurDir => {}
            other => clean.push(other),
        }
    }
    let mut existing = clean.clone();
    let mut rest = Vec::new();
    loop {
        if let Ok(mut real) = existing.canonicalize() {
            real.extend(rest.iter().rev());
            return real;
        }
        match (existing.file_name().map(|f| f.to_owned()), existing.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_path_buf();
            }
            _ => return clean,
        }
    }
}

/// Places rows whose store is unknown (made before rows recorded it, or synced without one): a row whose backend
/// and `backend_hash` match exactly one store of the config's profiles gets that store's identity. Rows that match
/// none, or several, stay unknown. Returns how many were placed; cheap when there is nothing to place.
pub fn place_unknown_rows(config: &Config, inventory: &Arc<Inventory>) -> Result<usize, InventoryError> {
    if !inventory.has_unknown_stores()? {
        return Ok(0);
    }
    let default = Profile::default();
    let mut profiles: Vec<(&str, &Profile)> = config.profiles.iter().map(|(n, p)| (n.as_str(), p)).collect();
    if !config.profiles.contains_key(crate::config::DEFAULT_PROFILE) {
        profiles.push((crate::config::DEFAULT_PROFILE, &default));
    }
    let mut by_hash: BTreeMap<(Destination, String), BTreeSet<StoreId>> = BTreeMap::new();
    for (profile_name, profile) in profiles {
        let stores = Stores { config, profile_name, profile, inventory, layer: None };
        for d in Destination::ALL {
            if let (Ok(id), Ok(hash)) = (stores.identity(d), stores.backend_hash(d)) {
                if !id.is_unknown() {
                    by_hash.entry((d, hash)).or_default().insert(id);
                }
            }
        }
    }
    let mut placed = 0;
    for ((d, hash), ids) in by_hash {
        if let [id] = ids.into_iter().collect::<Vec<_>>().as_slice() {
            placed += inventory.place_unknown(d, &hash, id)?;
        }
    }
    Ok(placed)
}
