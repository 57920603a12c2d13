//! Which profile a Python call acts on, and the [`Client`] for it: 0.6's `config=` (a path, or a dict of profiles)
//! and `profile=`, with `conf=` (a profile dict) laid over the profile's keys. Each call opens its client (the config
//! file, the inventory), as 0.6 read its config on every call. Not here: running the action (see `lib.rs`).

use std::path::{Path, PathBuf};

use bakthat::client::{Client, ClientError};
use bakthat::config::{self, Config, ConfigError};
use bakthat::inventory::Inventory;
use bakthat::ops::{Cancel, Ctx, OpsError};
use pyo3::prelude::*;
use serde_json::{Map, Value};

/// The arguments naming a profile, as the Python layer passes them: `(config_path, config_json, profile,
/// conf_json, cancel)`, the JSON being `json.dumps` of 0.6's dicts and `cancel` the caller's `bakthat.Cancel`
/// token or None.
#[derive(Debug, Clone, FromPyObject)]
pub struct Target(pub Option<PathBuf>, pub Option<String>, pub String, pub Option<String>, pub Option<PyCancel>);

/// `bakthat.Cancel`: a token that stops the calls given it (`cancel=`) from any thread.
#[pyclass(name = "Cancel", module = "bakthat", frozen, from_py_object)]
#[derive(Debug, Clone, Default)]
pub struct PyCancel(pub Cancel);

#[pymethods]
impl PyCancel {
    #[new]
    fn new() -> PyCancel {
        PyCancel::default()
    }

    /// Stops the calls holding this token at their next block of I/O: each removes what it had written under
    /// temporary names and raises `bakthat.Cancelled`. A cancelled token stays cancelled (calls given it fail at
    /// once): make one per call.
    fn cancel(&self) {
        self.0.cancel();
    }

    /// Whether `cancel()` was called.
    #[getter]
    fn cancelled(&self) -> bool {
        self.0.is_cancelled()
    }

    fn __repr__(&self) -> String {
        format!("<bakthat.Cancel cancelled={}>", if self.0.is_cancelled() { "True" } else { "False" })
    }
}

impl Target {
    /// The config: the dict, else the file (`config_path`, else `$BAKTHAT_CONFIG`, else `~/.bakthat.yml`), with
    /// `conf` laid over the profile.
    pub fn config(&self) -> Result<Config, ConfigError> {
        let Target(path, dict, profile, conf, _) = self;
        let mut config = match dict {
            Some(text) => Config::from_yaml(Path::new("<config dict>"), text)?,
            None => Config::load(&config::config_path(path.as_deref()))?,
        };
        if let Some(conf) = conf {
            let mut merged = match config.profiles.get(profile) {
                Some(p) => serde_json::to_value(p).ok().and_then(|v| v.as_object().cloned()).unwrap_or_default(),
                None => Map::new(),
            };
            match serde_json::from_str::<Value>(conf) {
                Ok(Value::Object(over)) => merged.extend(over),
                Ok(Value::Null) => {}
                _ => {
                    return Err(ConfigError::Invalid {
                        path: PathBuf::from("<conf dict>"),
                        key: String::new(),
                        message: "conf must be a dict of profile settings (access_key, s3_bucket, …)".into(),
                    })
                }
            }
            let mut one = Map::new();
            one.insert(profile.clone(), Value::Object(merged));
            let text = Value::Object(one).to_string();
            let laid = Config::from_yaml(Path::new("<conf dict>"), &text)?;
            config.set_profile(profile, laid.profile(profile)?);
        }
        Ok(config)
    }

    /// The cancel token of one call: the caller's, else a new one (which only Ctrl-C sets, see `run.rs`).
    pub fn cancel(&self) -> Cancel {
        self.4.as_ref().map(|c| c.0.clone()).unwrap_or_default()
    }

    /// A client for the profile, with the default inventory (`$BAKTHAT_DB`, else the platform's data directory),
    /// shared with the command line; its actions stop when `cancel` is cancelled.
    pub fn client(&self, cancel: &Cancel) -> Result<Client, ClientError> {
        let config = self.config()?;
        let inventory = Inventory::open(Inventory::default_path()?)?;
        let mut ctx = Ctx::new(config, &self.2, inventory).map_err(|e| match e {
            OpsError::Config(c) => ClientError::Config(c),
            other => ClientError::Ops(other),
        })?;
        ctx.cancel = cancel.clone();
        Client::from_ctx(ctx)
    }
}
