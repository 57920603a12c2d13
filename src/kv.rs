//! KeyValue: small JSON values kept under a key at the root of the profile's S3 bucket, as bakthat 0.6's
//! `helper.KeyValue` did, with `bakthat kv set|get|delete|url` on top.
//!
//! A value is `serde_json` text, optionally gzipped, optionally encrypted with bakthat's v1 container (the
//! inventory's shared Argon2id salt, as backups use). Each object describes itself through S3 user metadata
//! ([`META_FORMAT`], [`META_GZIP`], [`META_ENC`]), so a fresh client with an empty inventory decodes it; reading also
//! sniffs the bytes (the v1 magic, the gzip magic `1f8b`), which is how 0.6's objects (no metadata) are read, and an
//! object that is neither JSON nor gzip nor v1 is taken for 0.6's beefish Blowfish when a password is given.
//! Rows are recorded in the inventory like 0.6's (`metadata.KeyValue = true`) but are never used for decoding.
//!
//! Not here: other stores (KeyValue is S3 only, as in 0.6), large values (objects are read into memory).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::time::Duration;

use serde_json::{json, Value};
use thiserror::Error;

use crate::archive::crypto::{self, CryptoError};
use crate::archive::legacy::{BlowfishReader, LegacyError};
use crate::archive::Secret;
use crate::inventory::InventoryError;
use crate::model::{BackupRecord, Destination, StoredName};
use crate::ops::{Ctx, OpsError};
use crate::storage::s3::{PresignMethod, S3Store};
use crate::storage::{Backend, PutOptions, StorageError};

/// Object metadata naming the encoding: always `json` for values written here.
pub const META_FORMAT: &str = "bakthat-format";
/// Object metadata: `1` if the JSON text is gzipped, else `0`.
pub const META_GZIP: &str = "bakthat-gzip";
/// Object metadata: `v1` if encrypted with bakthat's container, else `none`.
pub const META_ENC: &str = "bakthat-enc";

/// Why a KeyValue operation failed.
#[derive(Debug, Error)]
pub enum KvError {
    #[error(transparent)]
    Ops(#[from] OpsError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Open(#[from] crate::stores::OpenError),
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    #[error("{key} is encrypted (or is not JSON); give its password with BAKTHAT_PASSWORD or at the prompt")]
    PasswordNeeded { key: String },
    #[error("wrong password for {key}")]
    WrongPassword { key: String },
    #[error("{key} is damaged or is not a KeyValue object: {reason}")]
    Corrupt { key: String, reason: String },
    /// KeyValue lives in S3 only (as in 0.6); the profile has no S3 bucket of its own.
    #[error("KeyValue keeps its values in S3 (as bakthat 0.6 did), and profile {profile} {why}; use a profile with s3_bucket and S3 keys (conf={{\"s3_bucket\": ...}} from Python)")]
    NotS3 { profile: String, why: String },
}

impl KvError {
    /// Whether asking for a password could help.
    pub fn needs_password(&self) -> bool {
        matches!(self, KvError::PasswordNeeded { .. })
    }
}

/// KeyValue access to the profile's bucket.
pub struct KeyValue<'a> {
    ctx: &'a Ctx,
    store: S3Store,
}

impl<'a> KeyValue<'a> {
    /// KeyValue on the profile's `s3_bucket`. A profile without one, or whose `s3_bucket` is a Swift container
    /// (its store is swift), is refused with [`KvError::NotS3`]: there is no local or Swift KeyValue.
    pub fn open(ctx: &'a Ctx) -> Result<KeyValue<'a>, KvError> {
        let p = &ctx.profile;
        let why = if p.destination() == Destination::Swift {
            Some("stores in swift, whose s3_bucket names a Swift container".to_string())
        } else if p.s3_bucket.as_deref().is_none_or(str::is_empty) {
            Some(format!("has no s3_bucket (its store is {})", p.destination()))
        } else {
            None
        };
        if let Some(why) = why {
            return Err(KvError::NotS3 { profile: ctx.profile_name.clone(), why });
        }
        Ok(KeyValue { ctx, store: ctx.stores().s3_hot()? })
    }

    /// KeyValue on another bucket.
    pub fn with_store(ctx: &'a Ctx, store: S3Store) -> KeyValue<'a> {
        KeyValue { ctx, store }
    }

    /// Stores `value` under `key` (replacing any previous value), gzipped when `compress`, encrypted when a
    /// password is given, and records it in the inventory.
    pub fn set_key(&self, key: &str, value: &Value, compress: bool, password: Option<&Secret>) -> Result<(), KvError> {
        let master = password.map(|s| crate::ops::master_key(self.ctx, s)).transpose()?;
        let (bytes, metadata) = encode(value, compress, master.as_deref());
        let opts = PutOptions { metadata, size_hint: Some(bytes.len() as u64), ..PutOptions::default() };
        let info = self.store.put_bytes(key, &bytes, &opts)?;
        let now = self.ctx.now();
        let stored = StoredName::from_key(key);
        let record = BackupRecord {
            id: None,
            backend: Destination::S3,
            backend_hash: self.ctx.stores().backend_hash(Destination::S3).ok(),
            backup_date: now,
            filename: key.to_string(),
            is_deleted: false,
            last_updated: now,
            metadata: json!({
                "KeyValue": true,
                "is_enc": master.is_some(),
                "is_gzipped": compress,
                "enc": master.as_ref().map(|_| "v1"),
                "client": self.ctx.host,
            }),
            size: info.size,
            stored_filename: stored.clone(),
            tags: String::new(),
            store: self.ctx.stores().identity(Destination::S3).unwrap_or_default(),
        };
        self.ctx.inventory.remove(&stored)?;
        self.ctx.inventory.insert_for_profile(&record, Some(&self.ctx.profile_name))?;
        Ok(())
    }

    /// The value under `key`, or `None` if there is no such object. Decoding relies on the object alone.
    pub fn get_key(&self, key: &str, password: Option<&Secret>) -> Result<Option<Value>, KvError> {
        match self.store.get_with_metadata(key)? {
            Some((bytes, metadata)) => decode(key, &bytes, &metadata, password).map(Some),
            None => Ok(None),
        }
    }

    /// Deletes `key` and marks its inventory row deleted; returns whether the object existed.
    pub fn delete_key(&self, key: &str) -> Result<bool, KvError> {
        let existed = self.store.head(key)?.is_some();
        self.store.delete(key)?;
        let stored = StoredName::from_key(key);
        if self.ctx.inventory.get(&stored)?.is_some_and(|r| !r.is_deleted) {
            self.ctx.inventory.set_deleted(&stored, self.ctx.now())?;
        }
        Ok(existed)
    }

    /// A presigned URL of `key`'s object, valid for `expires` (at most 7 days): GET downloads the stored bytes
    /// (JSON, possibly gzipped or encrypted), PUT uploads new ones (any body: a reader of the key sniffs what it
    /// gets), DELETE and HEAD act on the object. A missing key is an error, except for PUT, which may create it. A
    /// PUT or DELETE through the URL bypasses the inventory: its row is not updated (0.6's boto URLs did the same).
    pub fn get_key_url(&self, key: &str, expires: Duration, method: PresignMethod) -> Result<String, KvError> {
        if method != PresignMethod::Put && self.store.head(key)?.is_none() {
            return Err(StorageError::NotFound { store: self.store.describe(), key: key.to_string() }.into());
        }
        Ok(self.store.presign(method, key, expires)?)
    }
}

/// The stored bytes and object metadata of a value.
pub fn encode(value: &Value, compress: bool, master: Option<&crypto::MasterKey>) -> (Vec<u8>, Vec<(String, String)>) {
    let mut bytes = serde_json::to_vec(value).unwrap_or_default();
    if compress {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        // Writing to a Vec cannot fail.
        let _ = gz.write_all(&bytes);
        bytes = gz.finish().unwrap_or_default();
    }
    if let Some(m) = master {
        bytes = crypto::encrypt_bytes(m, &bytes);
    }
    let metadata = vec![
        (META_FORMAT.to_string(), "json".to_string()),
        (META_GZIP.to_string(), if compress { "1" } else { "0" }.to_string()),
        (META_ENC.to_string(), if master.is_some() { "v1" } else { "none" }.to_string()),
    ];
    (bytes, metadata)
}

/// JSON text, gunzipped first when it starts with the gzip magic.
fn parse_payload(bytes: &[u8]) -> Result<Value, String> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut text = Vec::new();
        flate2::read::GzDecoder::new(bytes).read_to_end(&mut text).map_err(|e| format!("bad gzip data ({e})"))?;
        serde_json::from_slice(&text).map_err(|e| format!("not JSON after gunzip ({e})"))
    } else {
        serde_json::from_slice(bytes).map_err(|e| format!("not JSON ({e})"))
    }
}

/// Decodes stored bytes: bakthat's v1 container by its magic, gzip by its magic, and, for objects without
/// bakthat's metadata that are not JSON, beefish Blowfish (bakthat 0.6) with the password.
pub fn decode(
    key: &str,
    bytes: &[u8],
    metadata: &HashMap<String, String>,
    password: Option<&Secret>,
) -> Result<Value, KvError> {
    let corrupt = |reason: String| KvError::Corrupt { key: key.to_string(), reason };
    let enc = metadata.get(META_ENC).map(String::as_str);
    if crypto::is_v1(bytes) {
        let secret = password.ok_or_else(|| KvError::PasswordNeeded { key: key.to_string() })?;
        let plain = crypto::decrypt_bytes(secret.keys(), bytes).map_err(|e| match e {
            CryptoError::WrongPassword => KvError::WrongPassword { key: key.to_string() },
            other => corrupt(other.to_string()),
        })?;
        return parse_payload(&plain).map_err(corrupt);
    }
    if enc == Some("v1") {
        return Err(corrupt("it does not start with bakthat's encryption header".into()));
    }
    let reason = match parse_payload(bytes) {
        Ok(v) => return Ok(v),
        Err(reason) => reason,
    };
    if metadata.contains_key(META_FORMAT) {
        return Err(corrupt(reason));
    }
    // No metadata and not JSON: bakthat 0.6 encrypted it with beefish (Blowfish, the password as the key).
    let secret = password.ok_or_else(|| KvError::PasswordNeeded { key: key.to_string() })?;
    let mut plain = Vec::new();
    BlowfishReader::new(bytes, secret.bytes(), false)
        .and_then(|mut r| r.read_to_end(&mut plain).map_err(LegacyError::Io))
        .map_err(|e| match e {
            LegacyError::BadKeyLength { .. } => KvError::WrongPassword { key: key.to_string() },
            other => corrupt(format!("{reason}; as a bakthat 0.6 encrypted value: {other}")),
        })?;
    parse_payload(&plain).map_err(|_| KvError::WrongPassword { key: key.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::crypto::{KdfParams, MasterKey};
    use crate::archive::legacy::blowfish_encrypt;

    fn fast_master(secret: &Secret) -> std::sync::Arc<MasterKey> {
        let params = KdfParams { m_cost_kib: 64, t_cost: 1, parallelism: 1 };
        secret.keys().master([7; 16], params).unwrap()
    }

    fn meta(pairs: &[(String, String)]) -> HashMap<String, String> {
        pairs.iter().cloned().collect()
    }

    #[test]
    fn values_round_trip_in_every_encoding() {
        let v = json!({"a": [1, 2, 3], "b": "text", "c": null});
        let secret = Secret::new(b"pw");
        let master = fast_master(&secret);
        for (compress, enc) in [(false, false), (true, false), (false, true), (true, true)] {
            let (bytes, m) = encode(&v, compress, enc.then_some(&*master));
            assert_eq!(bytes.starts_with(&[0x1f, 0x8b]), compress && !enc);
            assert_eq!(crypto::is_v1(&bytes), enc);
            let m = meta(&m);
            assert_eq!(decode("k", &bytes, &m, Some(&secret)).unwrap(), v);
            // Without metadata (sniffing only) too.
            assert_eq!(decode("k", &bytes, &HashMap::new(), Some(&secret)).unwrap(), v);
            if enc {
                assert!(decode("k", &bytes, &m, None).unwrap_err().needs_password());
                let e = decode("k", &bytes, &m, Some(&Secret::new(b"other"))).unwrap_err();
                assert!(matches!(e, KvError::WrongPassword { .. }), "{e}");
            }
        }
    }

    #[test]
    fn bakthat_0_6_values_are_read() {
        let v = json!({"hello": "world"});
        let text = serde_json::to_vec(&v).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&text).unwrap();
        let gz = gz.finish().unwrap();
        let none = HashMap::new();
        assert_eq!(decode("k", &text, &none, None).unwrap(), v);
        assert_eq!(decode("k", &gz, &none, None).unwrap(), v);
        for plain in [&gz, &text] {
            let mut enc = Vec::new();
            blowfish_encrypt(&plain[..], &mut enc, b"legacy pw").unwrap();
            assert_eq!(decode("k", &enc, &none, Some(&Secret::new(b"legacy pw"))).unwrap(), v);
            assert!(decode("k", &enc, &none, None).unwrap_err().needs_password());
            let e = decode("k", &enc, &none, Some(&Secret::new(b"wrong pw"))).unwrap_err();
            assert!(matches!(e, KvError::WrongPassword { .. }), "{e}");
        }
    }

    #[test]
    fn damage_is_reported() {
        let v = json!(1);
        let secret = Secret::new(b"pw");
        let (mut bytes, m) = encode(&v, true, Some(&*fast_master(&secret)));
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let e = decode("k", &bytes, &meta(&m), Some(&secret)).unwrap_err();
        assert!(matches!(e, KvError::Corrupt { .. }), "{e}");
        let e = decode("k", b"garbage", &meta(&m), Some(&secret)).unwrap_err();
        assert!(e.to_string().contains("encryption header"), "{e}");
        let (_, plain_meta) = encode(&v, false, None);
        let e = decode("k", b"{not json", &meta(&plain_meta), None).unwrap_err();
        assert!(matches!(e, KvError::Corrupt { .. }), "{e}");
    }
}
