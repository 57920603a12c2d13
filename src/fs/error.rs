//! The mount's errors: one [`FsError`] per way an operation fails, and the conversions from the archive and
//! storage layers' errors. `crate::fuse::errno` maps every variant to an errno in one exhaustive match.
//!
//! Not here: deciding what to do about an error (reads, cold storage and status live in their own files).

use std::io;

use thiserror::Error;

use crate::archive::read::ReadError;
use crate::archive::{self, ArchiveError};
use crate::inventory::InventoryError;
use crate::ops::OpsError;
use crate::storage::StorageError;

use super::cold::state_word;

/// Why a filesystem operation failed. `crate::fuse` maps every variant to an errno in one exhaustive match.
#[derive(Debug, Error)]
pub enum FsError {
    #[error("no such file or directory")]
    NotFound,
    #[error("not a directory")]
    NotADirectory,
    #[error("is a directory")]
    IsADirectory,
    #[error("not a symbolic link")]
    NotASymlink,
    #[error("the mount is read-only outside /incoming")]
    ReadOnly,
    /// A rename from a backup into /incoming: EXDEV makes file managers and `mv` fall back to copying.
    #[error("a backup's files can only be copied into /incoming, not moved")]
    CrossDevice,
    #[error("unknown file handle {0}")]
    BadHandle(u64),
    #[error("no such extended attribute")]
    NoXattr,
    #[error("the extended attribute is larger than the buffer")]
    XattrTooSmall,
    #[error("this extended attribute namespace is not supported (no security labels or POSIX ACLs)")]
    XattrNamespace,
    #[error("{stored} is in cold storage; its retrieval is {state}, reads work once it completes")]
    RetrievalPending { stored: String, state: String },
    #[error("{stored} is encrypted; mount with its password (BAKTHAT_PASSWORD or --password-file)")]
    PasswordNeeded { stored: String },
    #[error("wrong password for {stored}")]
    WrongPassword { stored: String },
    #[error(
        "{stored}: wrong password, or the archive header is damaged (the key check of its index copy fails, and no \
         other backup with the same key settings opens to tell which)"
    )]
    WrongPasswordOrDamaged { stored: String },
    #[error("{stored}: damaged or tampered data ({detail}); run `bakthat verify` on it")]
    Integrity { stored: String, detail: String },
    /// The file's read failed part way when it was backed up: the archive holds zeros, not its bytes.
    #[error("{stored}: {path} could not be read completely when it was backed up; its stored content ends in zeros")]
    IncompleteAtBackup { stored: String, path: String },
    #[error("{stored}: the store failed")]
    Backend {
        stored: String,
        #[source]
        source: StorageError,
    },
    #[error("{stored}: {detail} is larger than the whole cache; mount with a larger --cache-size")]
    TooLarge { stored: String, detail: String },
    #[error("opening the store of {stored}")]
    Open {
        stored: String,
        #[source]
        source: Box<OpsError>,
    },
    #[error("inventory query failed")]
    Inventory(#[from] InventoryError),
    #[error("block cache I/O failed")]
    Cache(#[source] io::Error),
    #[error("file exists")]
    Exists,
    #[error("directory not empty")]
    NotEmpty,
    #[error("the /incoming staging area failed")]
    Staging(#[source] io::Error),
    #[error("no space left for the {what}; free some space (the cache and /incoming staging live in --cache-dir)")]
    NoSpace {
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

/// Whether an I/O error means the disk (or a quota) is full.
pub fn is_full(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded)
}

/// A block cache I/O failure: ENOSPC when its disk is full, EIO otherwise.
pub(super) fn cache_io(e: io::Error) -> FsError {
    if is_full(&e) {
        FsError::NoSpace { what: "block cache", source: e }
    } else {
        FsError::Cache(e)
    }
}

impl FsError {
    /// Whether the failure deserves a warning in the log (the user sees only an errno).
    pub fn is_noteworthy(&self) -> bool {
        match self {
            FsError::NotFound
            | FsError::NotADirectory
            | FsError::IsADirectory
            | FsError::NotASymlink
            | FsError::ReadOnly
            | FsError::CrossDevice
            | FsError::BadHandle(_)
            | FsError::NoXattr
            | FsError::XattrTooSmall
            | FsError::XattrNamespace
            | FsError::Exists
            | FsError::NotEmpty => false,
            FsError::RetrievalPending { .. }
            | FsError::PasswordNeeded { .. }
            | FsError::WrongPassword { .. }
            | FsError::WrongPasswordOrDamaged { .. }
            | FsError::Integrity { .. }
            | FsError::IncompleteAtBackup { .. }
            | FsError::Backend { .. }
            | FsError::TooLarge { .. }
            | FsError::Open { .. }
            | FsError::Inventory(_)
            | FsError::Cache(_)
            | FsError::NoSpace { .. }
            | FsError::Staging(_) => true,
        }
    }
}

/// Result of filesystem operations.
pub type Result<T, E = FsError> = std::result::Result<T, E>;

pub(super) fn classify_read(stored: &str, e: ReadError, storage: Option<StorageError>) -> FsError {
    if let Some(s) = storage {
        return storage_error(stored, s);
    }
    let stored = stored.to_string();
    match e {
        ReadError::PasswordNeeded => FsError::PasswordNeeded { stored },
        ReadError::Crypto(archive::crypto::CryptoError::WrongPassword) => FsError::WrongPassword { stored },
        ReadError::Crypto(c) => FsError::Integrity { stored, detail: c.to_string() },
        ReadError::LengthMismatch { .. } | ReadError::NotSeekable | ReadError::NotAFile(_) => {
            FsError::Integrity { stored, detail: e.to_string() }
        }
        ReadError::Io(io) => FsError::Integrity { stored, detail: io.to_string() },
    }
}

pub(super) fn storage_error(stored: &str, e: StorageError) -> FsError {
    match e {
        StorageError::NotRetrieved { state, .. } => {
            FsError::RetrievalPending { stored: stored.to_string(), state: state_word(&state).to_string() }
        }
        other => FsError::Backend { stored: stored.to_string(), source: other },
    }
}

pub(super) fn archive_error(stored: &str, e: ArchiveError) -> FsError {
    let stored = stored.to_string();
    if e.is_wrong_password() {
        return FsError::WrongPassword { stored };
    }
    match e {
        ArchiveError::PasswordNeeded => FsError::PasswordNeeded { stored },
        ArchiveError::Read(r) => classify_read(&stored, r, None),
        ArchiveError::Io(io) => FsError::Cache(io),
        other => FsError::Integrity { stored, detail: format!("{other:#}") },
    }
}
