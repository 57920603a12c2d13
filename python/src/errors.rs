//! The exception hierarchy (`bakthat.BakthatError` and its subclasses) and the mapping of the core's errors onto
//! it. Every exception's message is the line the command line prints after `bakthat: error: `, and its
//! `exit_code` attribute the code the command line exits with. Not here: what raises them (see `lib.rs`).

use bakthat::archive::ArchiveError;
use bakthat::client::ClientError;
use bakthat::kv::KvError;
use bakthat::ops::OpsError;
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(bakthat, BakthatError, PyException, "Base class of every error bakthat raises.");
create_exception!(bakthat, ConfigError, BakthatError, "The config file, profile or conf dict is wrong.");
create_exception!(bakthat, PasswordError, BakthatError, "A password is needed, or the one given is wrong.");
create_exception!(bakthat, BackupNotFound, BakthatError, "No backup matches the name asked for.");
create_exception!(
    bakthat,
    RetrievalPending,
    BakthatError,
    "The backup is in cold storage and its retrieval job has not finished: try again later. Carries \
     `stored_filename`, `state` (e.g. 'in progress (job …)'), `hint` and `job` (the job's row, or None)."
);
create_exception!(bakthat, StoreError, BakthatError, "A store (S3, Glacier, Swift, the local directory) failed.");
create_exception!(
    bakthat,
    Cancelled,
    BakthatError,
    "The call was cancelled through its `cancel=` token (`bakthat.Cancel`); nothing was left under a final name."
);

/// Registers the classes on the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("BakthatError", py.get_type::<BakthatError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("PasswordError", py.get_type::<PasswordError>())?;
    m.add("BackupNotFound", py.get_type::<BackupNotFound>())?;
    m.add("RetrievalPending", py.get_type::<RetrievalPending>())?;
    m.add("StoreError", py.get_type::<StoreError>())?;
    m.add("Cancelled", py.get_type::<Cancelled>())?;
    Ok(())
}

/// Which class an error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Base,
    Config,
    Password,
    NotFound,
    Pending,
    Store,
    Interrupted,
}

fn ops_kind(e: &OpsError) -> Kind {
    match e {
        OpsError::Config(_) | OpsError::Destination(_) | OpsError::NoRotation { .. } => Kind::Config,
        OpsError::NoMatch { .. } => Kind::NotFound,
        OpsError::Pending { .. } => Kind::Pending,
        OpsError::Interrupted => Kind::Interrupted,
        OpsError::Archive(ArchiveError::PasswordNeeded) => Kind::Password,
        OpsError::Storage(_) | OpsError::Open(_) => Kind::Store,
        _ => Kind::Base,
    }
}

fn client_kind(e: &ClientError) -> Kind {
    match e {
        ClientError::Ops(o) => ops_kind(o),
        ClientError::Config(_) | ClientError::HookConfig { .. } => Kind::Config,
        ClientError::HookFailed { exit: bakthat::client::HookExit::Interrupted, .. } => Kind::Interrupted,
        _ => Kind::Base,
    }
}

fn kv_kind(e: &KvError) -> Kind {
    match e {
        KvError::Ops(o) => ops_kind(o),
        KvError::PasswordNeeded { .. } | KvError::WrongPassword { .. } => Kind::Password,
        KvError::NotS3 { .. } => Kind::Config,
        KvError::Storage(_) | KvError::Open(_) => Kind::Store,
        _ => Kind::Base,
    }
}

/// The exception for a failed client call.
pub fn client(e: ClientError) -> PyErr {
    let kind = client_kind(&e);
    let pending = match e.as_ops() {
        Some(OpsError::Pending { stored, state, hint }) => Some((stored.clone(), state.clone(), hint.clone())),
        _ => None,
    };
    build(kind, &bakthat::error_chain(&e), e.exit_code(), pending)
}

/// The exception for a failed KeyValue call.
pub fn kv(e: KvError) -> PyErr {
    let code = match &e {
        KvError::Ops(o) => o.exit_code(),
        _ => 1,
    };
    build(kv_kind(&e), &bakthat::error_chain(&e), code, None)
}

/// A [`BakthatError`] (or [`ConfigError`] when `config`) with a message of our own.
pub fn message(config: bool, text: impl Into<String>) -> PyErr {
    build(if config { Kind::Config } else { Kind::Base }, &text.into(), 1, None)
}

fn build(kind: Kind, line: &str, exit_code: i32, pending: Option<(String, String, Option<String>)>) -> PyErr {
    // Archive and legacy readers report a wrong password deep in their chain; the line says so in plain words.
    let kind = if kind == Kind::Base && line.contains("wrong password") { Kind::Password } else { kind };
    let line = line.to_string();
    let err = match kind {
        Kind::Base => BakthatError::new_err(line),
        Kind::Config => ConfigError::new_err(line),
        Kind::Password => PasswordError::new_err(line),
        Kind::NotFound => BackupNotFound::new_err(line),
        Kind::Pending => RetrievalPending::new_err(line),
        Kind::Store => StoreError::new_err(line),
        // Ctrl-C itself raises the KeyboardInterrupt it was (see run.rs): this is a cancel through a token.
        Kind::Interrupted => Cancelled::new_err(line),
    };
    Python::attach(|py| {
        let value = err.value(py);
        let _ = value.setattr("exit_code", exit_code);
        if let Some((stored, state, hint)) = pending {
            let _ = value.setattr("stored_filename", stored);
            let _ = value.setattr("state", state);
            let _ = value.setattr("hint", hint);
            let _ = value.setattr("job", py.None());
        }
    });
    err
}
