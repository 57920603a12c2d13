//! Stores: where archives live. The [`Backend`] trait and its implementations: a local directory ([`local`]), S3
//! ([`s3`]) and Glacier vaults ([`glacier`]); Swift implements the same trait.
//!
//! Backends are synchronous: each one hides its own runtime. Cold storage (Glacier vaults, S3 archive classes) is a
//! normal state of an object ([`Retrieval`]), not an error. This module knows nothing about archives or the
//! inventory.
//!
//! Wrappers: [`metered`] counts the requests a store receives; [`testing`] holds the test doubles (a cold store, a
//! store that fails on purpose) and test data shared by the unit, integration and mount tests; [`retry`] is the one
//! retry policy of the network stores.

use std::io::{self, Read, Write};

use thiserror::Error;

pub mod aws;
pub mod glacier;
pub mod local;
pub mod metered;
pub mod retry;
pub mod s3;
pub mod swift;
pub mod testing;

/// A call on a store or on what it returns, as [`metered`] counts them and [`testing::Faulty`] fails them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// [`Backend::create`]: starting an upload.
    Create,
    /// [`Upload`]'s `write`: each call, on any upload.
    Write,
    /// [`Upload::commit`].
    Commit,
    /// [`Backend::get`]: opening a streaming read.
    Get,
    /// `read` on a stream returned by [`Backend::get`]: each call, on any stream.
    Read,
    /// [`Backend::get_range`].
    GetRange,
    /// [`Backend::head`].
    Head,
    /// [`Backend::list`] and [`Backend::list_after`].
    List,
    /// [`Backend::delete`].
    Delete,
    /// [`Backend::put_bytes`].
    PutBytes,
    /// [`Backend::retrieval_state`].
    RetrievalState,
    /// [`Backend::start_retrieval`].
    StartRetrieval,
    /// [`Backend::cleanup`].
    Cleanup,
}

impl Op {
    /// Every operation, in declaration order.
    pub const ALL: [Op; 13] = [
        Op::Create,
        Op::Write,
        Op::Commit,
        Op::Get,
        Op::Read,
        Op::GetRange,
        Op::Head,
        Op::List,
        Op::Delete,
        Op::PutBytes,
        Op::RetrievalState,
        Op::StartRetrieval,
        Op::Cleanup,
    ];

    /// Whether [`metered::Metered`] counts it as a request: calls on the store itself are, writes, commits and reads
    /// on an upload or a stream already open are not.
    pub fn is_request(self) -> bool {
        !matches!(self, Op::Write | Op::Commit | Op::Read)
    }
}

/// What a store knows about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    /// Last modification, seconds since the epoch, when the store says.
    pub modified: Option<i64>,
    /// The store's storage class, when it has one (S3).
    pub storage_class: Option<String>,
}

/// Whether an object can be read now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retrieval {
    /// Readable now.
    Ready,
    /// In cold storage and no retrieval has been asked for.
    NotStarted,
    /// A retrieval job runs; `ready_at` is the store's estimate, when it gives one.
    Pending { job_id: Option<String>, ready_at: Option<i64> },
}

/// How to store a new object.
#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    /// A storage class for stores that have them (`STANDARD_IA`, `GLACIER`, `REDUCED_REDUNDANCY`…).
    pub storage_class: Option<String>,
    /// User metadata stored with the object, where the store supports it.
    pub metadata: Vec<(String, String)>,
    /// The final size when known in advance (lets a store pick single-part or multipart uploads).
    pub size_hint: Option<u64>,
}

/// An object being written. Nothing is visible under the key until [`Upload::commit`] returns; dropping an upload
/// without committing aborts it.
pub trait Upload: Write + Send {
    /// Makes the object visible under its key, atomically.
    fn commit(self: Box<Self>) -> Result<ObjectInfo, StorageError>;
}

/// A store of objects addressed by key.
pub trait Backend: Send + Sync {
    /// `local`, `s3`, `glacier` or `swift` (the inventory's `backend` column).
    fn kind(&self) -> &'static str;
    /// Where this store is, for messages: `local store /var/backups`, `s3 bucket foo`.
    fn describe(&self) -> String;
    /// Starts writing an object (streaming; memory bounded by the store's part size).
    fn create(&self, key: &str, opts: &PutOptions) -> Result<Box<dyn Upload>, StorageError>;
    /// Reads a whole object as a stream. A cold object that is not retrieved yet gives [`StorageError::NotRetrieved`].
    fn get(&self, key: &str) -> Result<Box<dyn Read + Send>, StorageError>;
    /// Bytes `[start, start + len)` of an object, clamped to its end.
    fn get_range(&self, key: &str, start: u64, len: u64) -> Result<Vec<u8>, StorageError>;
    /// The object's info, or `None` if there is no such object.
    fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StorageError>;
    /// Objects whose key starts with `prefix`, in key order.
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError>;
    /// Deletes an object; deleting a missing object is not an error.
    fn delete(&self, key: &str) -> Result<(), StorageError>;

    /// Objects whose key starts with `prefix` and sorts after `start_after`, in key order. Stores that can start a
    /// listing at a key (S3 `start-after`) override this so that listing a few new keys costs one request.
    fn list_after(&self, prefix: &str, start_after: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        let mut all = self.list(prefix)?;
        all.retain(|o| o.key.as_str() > start_after);
        Ok(all)
    }

    /// Stores a small object in one go.
    fn put_bytes(&self, key: &str, data: &[u8], opts: &PutOptions) -> Result<ObjectInfo, StorageError> {
        let mut up = self.create(key, opts)?;
        up.write_all(data).map_err(|e| StorageError::io(self.describe(), key, e))?;
        up.commit()
    }
    /// Whether the object can be read now (hot stores: always).
    fn retrieval_state(&self, _key: &str) -> Result<Retrieval, StorageError> {
        Ok(Retrieval::Ready)
    }
    /// Asks a cold store to make the object readable; returns the new state. Idempotent.
    fn start_retrieval(&self, _key: &str) -> Result<Retrieval, StorageError> {
        Ok(Retrieval::Ready)
    }
    /// Removes what interrupted uploads left behind; returns how many leftovers were removed.
    fn cleanup(&self) -> Result<u64, StorageError> {
        Ok(0)
    }
}

/// Why a store operation failed.
#[derive(Debug, Error)]
pub enum StorageError {
    #[error("{key} is not in the {store}")]
    NotFound { store: String, key: String },
    #[error("{key} is in cold storage and not retrieved yet; start a retrieval and try again later")]
    NotRetrieved { key: String, state: Retrieval },
    #[error("invalid object key {key:?}: {reason}")]
    BadKey { key: String, reason: &'static str },
    #[error("{store} refused the credentials; check access_key and secret_key in the profile")]
    Auth {
        store: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{store}: {key}")]
    Io {
        store: String,
        key: String,
        #[source]
        source: io::Error,
    },
    #[error("{store}: {message}")]
    Backend {
        store: String,
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl StorageError {
    /// An I/O error on `key` in `store`.
    pub fn io(store: impl Into<String>, key: &str, source: io::Error) -> Self {
        StorageError::Io { store: store.into(), key: key.to_string(), source }
    }

    /// Whether retrying could help (network trouble, 5xx).
    pub fn is_transient(&self) -> bool {
        match self {
            StorageError::Io { source, .. } => matches!(
                source.kind(),
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::TimedOut
                    | io::ErrorKind::Interrupted
                    | io::ErrorKind::UnexpectedEof
            ),
            _ => false,
        }
    }
}

/// Checks a key for an object store (S3): like [`check_key`], but `/` may separate parts, as in bakthat 0.6's
/// KeyValue keys (`app/config`). No empty, `.` or `..` part (so no leading, trailing or doubled `/`): a key still
/// maps to one unambiguous relative path.
pub fn check_object_key(key: &str) -> Result<(), StorageError> {
    let bad = |reason| Err(StorageError::BadKey { key: key.to_string(), reason });
    if key.is_empty() {
        return bad("empty");
    }
    if key.contains('\0') {
        return bad("contains NUL");
    }
    if key.len() > 1024 {
        return bad("longer than 1024 bytes");
    }
    if key.split('/').any(|part| part == "." || part == "..") {
        return bad("a dot name");
    }
    if key.split('/').any(str::is_empty) {
        return bad("has an empty part between '/'");
    }
    Ok(())
}

/// Checks that a key is a plain object name (no path separators or dot names), as every store accepts.
pub fn check_key(key: &str) -> Result<(), StorageError> {
    if key.contains('/') {
        return Err(StorageError::BadKey { key: key.to_string(), reason: "contains '/'" });
    }
    check_object_key(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_keys_may_have_slashes_between_real_segments() {
        for ok in ["a", "app/config", "a/b/c.json", "x.y/z"] {
            assert!(check_object_key(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/a", "a/", "a//b", "a/./b", "../a", "a/..", "a\0/b", ".."] {
            assert!(matches!(check_object_key(bad), Err(StorageError::BadKey { .. })), "{bad:?}");
        }
        assert!(check_key("app/config").is_err(), "flat stores still refuse '/'");
    }
}
