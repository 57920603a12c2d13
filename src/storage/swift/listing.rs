//! Container listings: the objects of a container page by page (`format=json`, `marker`), the segments container,
//! and the removal of segments that interrupted uploads left behind.
//!
//! Not here: the request core (auth, retries, status errors) is in the parent module; uploads in `upload.rs`.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::{check_key, enc, header_str, read_json, Backend, Inner, StorageError, SwiftStore, CLEANUP_GRACE_SECS};

/// One row of a container listing.
pub(super) struct Listed {
    pub(super) name: String,
    pub(super) bytes: u64,
    pub(super) last_modified: Option<i64>,
}

impl Inner {
    /// Every object of `container` whose name starts with `prefix`, or `None` when the container does not exist.
    pub(super) fn list_container(&self, container: &str, prefix: &str) -> Result<Option<Vec<Listed>>, StorageError> {
        self.list_container_after(container, prefix, "")
    }

    /// Like [`Self::list_container`], starting after the name `start` (Swift's `marker`).
    pub(super) fn list_container_after(
        &self,
        container: &str,
        prefix: &str,
        start: &str,
    ) -> Result<Option<Vec<Listed>>, StorageError> {
        let mut out: Vec<Listed> = Vec::new();
        let what = format!("listing container {container}");
        loop {
            let marker = out.last().map(|l| l.name.clone()).unwrap_or_else(|| start.to_string());
            let path = format!("{}?format=json&prefix={}&marker={}", enc(container), enc(prefix), enc(&marker));
            let resp = self.call(&what, &|s| Ok(self.request(s, Method::GET, &path)))?;
            if resp.status() == StatusCode::NOT_FOUND {
                return Ok(None);
            }
            if resp.status() == StatusCode::NO_CONTENT {
                break;
            }
            if !resp.status().is_success() {
                return Err(self.status_err(resp, &what));
            }
            let page: Value = read_json(resp).map_err(|e| StorageError::io(self.store(), "", e))?;
            let Some(rows) = page.as_array() else {
                return Err(self.backend_err(format!("{what}: the listing is not a JSON array")));
            };
            if rows.is_empty() {
                break;
            }
            for row in rows {
                // Pseudo-directories ({"subdir": …}) only appear with a delimiter; skip anything without a name.
                let Some(name) = row["name"].as_str() else { continue };
                out.push(Listed {
                    name: name.to_string(),
                    bytes: row["bytes"].as_u64().unwrap_or(0),
                    last_modified: row["last_modified"].as_str().and_then(parse_listing_time),
                });
            }
        }
        Ok(Some(out))
    }
}

impl SwiftStore {
    /// Names in the segments container that start with `prefix` (for tests and diagnostics).
    pub fn list_segments(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let container = self.inner.segments_container.clone();
        Ok(self.inner.list_container(&container, prefix)?.unwrap_or_default().into_iter().map(|e| e.name).collect())
    }

    /// [`Backend::cleanup`]: segments of uploads older than [`CLEANUP_GRACE_SECS`] that no manifest refers to
    /// (left behind by a killed process).
    pub(super) fn remove_leftover_segments(&self) -> Result<u64, StorageError> {
        let inner = &self.inner;
        let segs = inner.segments_container.clone();
        let Some(listed) = inner.list_container(&segs, "")? else { return Ok(0) };
        let now = chrono::Utc::now().timestamp();
        // Group by upload: `<key>/slo/<epoch>-<random>/`.
        let mut groups: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for l in listed {
            let mut parts = l.name.splitn(4, '/');
            let (Some(key), Some("slo"), Some(id), Some(_)) = (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let started: Option<i64> = id.split('-').next().and_then(|t| t.parse().ok());
            if started.is_some_and(|t| now - t >= CLEANUP_GRACE_SECS) {
                groups.entry(format!("{key}/slo/{id}/")).or_default().push(l.name);
            }
        }
        let mut removed = 0;
        for (group, names) in groups {
            let key = group.split('/').next().unwrap_or_default();
            if self.manifest_refers_to(key, &format!("/{segs}/{group}"))? {
                continue;
            }
            for name in names {
                let path = inner.object_path(&segs, &name);
                let resp =
                    inner.call("removing a leftover segment", &|s| Ok(inner.request(s, Method::DELETE, &path)))?;
                if resp.status().is_success() {
                    removed += 1;
                } else if resp.status() != StatusCode::NOT_FOUND {
                    return Err(inner.status_err(resp, "removing a leftover segment"));
                }
            }
        }
        Ok(removed)
    }

    /// Whether the manifest under `key` names a segment whose path starts with `prefix`.
    fn manifest_refers_to(&self, key: &str, prefix: &str) -> Result<bool, StorageError> {
        let inner = &self.inner;
        if check_key(key).is_err() {
            return Ok(false);
        }
        let path = format!("{}?multipart-manifest=get", inner.object_path(&inner.settings.container, key));
        let what = format!("reading the manifest of {key}");
        let resp = inner.call(&what, &|s| Ok(inner.request(s, Method::GET, &path)))?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(false);
        }
        if !resp.status().is_success() {
            return Err(inner.status_err(resp, &what));
        }
        let slo = header_str(resp.headers(), "X-Static-Large-Object").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        if !slo {
            return Ok(false);
        }
        let manifest: Value = read_json(resp).map_err(|e| StorageError::io(self.describe(), key, e))?;
        Ok(manifest
            .as_array()
            .is_some_and(|entries| entries.iter().any(|e| e["name"].as_str().is_some_and(|n| n.starts_with(prefix)))))
    }
}

/// A listing's `last_modified` (`2024-01-02T03:04:05.678900`, UTC) in epoch seconds.
pub(super) fn parse_listing_time(s: &str) -> Option<i64> {
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").ok().map(|t| t.and_utc().timestamp())
}
