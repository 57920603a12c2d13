//! `share`: a presigned URL of a backup's archive in S3, and the shell command a recipient runs to restore it
//! without bakthat. Only signs locally (plus one HEAD to check the object is there and readable); nothing is
//! uploaded. A backup in an S3 archive class is restored first (exit 75 until it is readable), as `restore` does.

use std::time::Duration;

use super::restore::find;
use super::{Ctx, OpsError};
use crate::interval::parse_expiry;
use crate::model::{BackupRecord, Compression, Destination};

/// A shared backup.
#[derive(Debug)]
pub struct Shared {
    pub record: BackupRecord,
    /// The presigned GET URL.
    pub url: String,
    pub expires: Duration,
    /// A shell command that downloads and unpacks the backup with curl and tar (and `bakthat-decrypt` for
    /// encrypted backups); `…` stands for the password.
    pub command: String,
}

/// Presigns the newest backup matching `name` in S3 (or in `destination`, which must then be `s3`) for `expires`
/// (`1h`, `30m`, `7D`; at most 7 days).
pub fn share(ctx: &Ctx, name: &str, destination: Option<Destination>, expires: &str) -> Result<Shared, OpsError> {
    let expires = parse_expiry(expires)?;
    let record = find(ctx, name, Some(destination.unwrap_or(Destination::S3)))?;
    if record.backend != Destination::S3 {
        return Err(OpsError::NotShareable {
            stored: record.stored_filename.as_str().to_string(),
            backend: record.backend,
        });
    }
    let store = ctx.stores().s3_hot()?;
    let key = record.stored_filename.as_str();
    // A missing object is NotFound; one in an archive class must be restored first (RestoreObject, as restore does).
    super::ensure_readable(ctx, &record, &store)?;
    let url = store.presign_get(key, expires)?;
    let command = recipient_command(&record, &url);
    Ok(Shared { record, url, expires, command })
}

/// The command that restores `record` from `url` with standard tools.
pub fn recipient_command(record: &BackupRecord, url: &str) -> String {
    let hints = super::hints(record);
    let get = format!("curl -fsS '{url}'");
    let decrypt = "BAKTHAT_PASSWORD=… bakthat-decrypt -";
    // GNU tar's -z and --zstd read bakthat's gzip members and seekable zstd frames alike.
    let untar = match hints.archive {
        Some(Compression::Zstd) => "tar --zstd -x",
        _ => "tar xz",
    };
    match (hints.archive.is_some(), hints.encrypted, hints.v1) {
        (true, false, _) => format!("{get} | {untar}"),
        (true, true, true) => format!("{get} | {decrypt} | {untar}"),
        (false, false, _) => format!("{get} -o '{}'", record.filename),
        (false, true, true) => format!("{get} | {decrypt} > '{}'", record.filename),
        // bakthat 0.6's beefish Blowfish: the beefish CLI decrypts it (0.6 wrote gzip only).
        (tgz, true, false) => {
            let out = if tgz { "backup.tgz".to_string() } else { record.filename.clone() };
            let then = if tgz { " && tar xzf backup.tgz" } else { "" };
            format!("{get} -o backup.enc && beefish.py -d -k … backup.enc {out}{then}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::StoredName;
    use serde_json::json;

    fn record(stored: &str, enc: Option<&str>) -> BackupRecord {
        BackupRecord {
            id: None,
            backend: Destination::S3,
            backend_hash: None,
            backup_date: 0,
            filename: "data".into(),
            is_deleted: false,
            last_updated: 0,
            metadata: json!({ "is_enc": enc.is_some(), "enc": enc }),
            size: 1,
            stored_filename: StoredName::from_key(stored),
            tags: String::new(),
            store: Default::default(),
        }
    }

    #[test]
    fn recipient_commands_fit_the_backup() {
        let c = |stored, enc| recipient_command(&record(stored, enc), "http://u");
        assert_eq!(c("data.20260101000000.tgz", None), "curl -fsS 'http://u' | tar xz");
        assert_eq!(
            c("data.20260101000000.tgz.enc", Some("v1")),
            "curl -fsS 'http://u' | BAKTHAT_PASSWORD=… bakthat-decrypt - | tar xz"
        );
        assert_eq!(c("data.20260101000000.tar.zst", None), "curl -fsS 'http://u' | tar --zstd -x");
        assert_eq!(
            c("data.20260101000000.tar.zst.enc", Some("v1")),
            "curl -fsS 'http://u' | BAKTHAT_PASSWORD=… bakthat-decrypt - | tar --zstd -x"
        );
        assert_eq!(c("data.20260101000000", None), "curl -fsS 'http://u' -o 'data'");
        assert_eq!(
            c("data.20260101000000.enc", Some("v1")),
            "curl -fsS 'http://u' | BAKTHAT_PASSWORD=… bakthat-decrypt - > 'data'"
        );
        let legacy = c("data.20130101000000.tgz.enc", None);
        assert!(legacy.contains("beefish.py -d") && legacy.ends_with("tar xzf backup.tgz"), "{legacy}");
    }
}
