//! Stores built from a profile: the one place that turns a profile's settings into a [`Backend`] for each
//! [`Destination`] (rustic's `choose.rs` plays this part), and the one place that starts or checks a cold
//! retrieval ([`cold`]).
//!
//! Not here: what to store (see `ops`), the stores themselves (see `storage`), or the profile file (see `config`).
//! Every other module asks this one for a store instead of reading `s3_bucket`, `glacier_vault` or `local_path`.

use std::path::PathBuf;
use std::sync::Arc;

use thiserror::Error;

use crate::config::{Config, ConfigError, Profile};
use crate::inventory::Inventory;
use crate::model::Destination;
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
