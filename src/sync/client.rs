//! The sync server client (0.6's `BakSyncer`), with 0.6's wire shapes: register once (`POST /clients`, the answer's
//! `_id` kept as config `client_id`), then `POST /backups/sync` with the rows changed since `sync_ts`. Unlike 0.6 it
//! pushes deleted rows too, and applies the answer with newer-`last_updated`-wins. Rows of the `local` destination
//! are not pushed: another host cannot read this host's directory.

use std::time::Duration;

use serde_json::{json, Value};

use super::{apply, Entry, EntryKind, SyncError, SyncReport};
use crate::config::SyncConfig;
use crate::model::{BackupRecord, StoredName};
use crate::ops::Ctx;

/// Config key: this host's time when the last successful server sync started.
const PUSH_MARK: &str = "sync_push_mark";

/// Forgets the server state (0.6's `reset_sync`): `sync_ts = 0`, `client_id = null`.
pub fn reset(ctx: &Ctx) -> Result<(), SyncError> {
    ctx.inventory.set_config("sync_ts", &json!(0))?;
    ctx.inventory.set_config("client_id", &Value::Null)?;
    ctx.inventory.set_config(PUSH_MARK, &json!(0))?;
    Ok(())
}

struct Http<'a> {
    url: String,
    cfg: &'a SyncConfig,
    host: &'a str,
    client: reqwest::blocking::Client,
}

impl Http<'_> {
    fn post(&self, resource: &str, body: Option<&Value>) -> Result<Value, SyncError> {
        let url = format!("{}/{resource}", self.url);
        let err = |message: String| SyncError::Remote { url: url.clone(), message };
        let mut req = self
            .client
            .post(&url)
            .basic_auth(self.cfg.username.clone().unwrap_or_default(), self.cfg.password.clone())
            .header("content-type", "application/json")
            .header("bakthat-client", self.host);
        if let Some(b) = body {
            req = req.body(b.to_string());
        }
        let resp = req.send().map_err(|e| err(format!("cannot reach it ({e})")))?;
        let status = resp.status();
        let text = resp.text().unwrap_or_default();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(err("refused the credentials; check sync.username and sync.password".into()));
        }
        if !status.is_success() {
            return Err(err(format!("answered {status}: {}", text.trim())));
        }
        serde_json::from_str(&text).map_err(|e| err(format!("answered something that is not JSON ({e})")))
    }
}

/// A row from the server as an inventory record (0.6 rows may carry `is_deleted` as 0/1 and `tags` as a list).
fn record_of(row: &Value) -> Option<BackupRecord> {
    let mut row = row.as_object()?.clone();
    row.remove("id");
    if let Some(Value::Array(a)) = row.get("tags") {
        let joined = a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" ");
        row.insert("tags".into(), Value::String(joined));
    }
    if let Some(n) = row.get("is_deleted").and_then(Value::as_i64) {
        row.insert("is_deleted".into(), Value::Bool(n != 0));
    }
    row.entry("metadata").or_insert(json!({}));
    row.entry("tags").or_insert(json!(""));
    row.entry("size").or_insert(json!(0));
    row.entry("is_deleted").or_insert(json!(false));
    if !row.contains_key("filename") {
        let stored = StoredName::from_key(row.get("stored_filename")?.as_str()?);
        row.insert("filename".into(), json!(stored.parse().map(|p| p.name).unwrap_or_default()));
    }
    serde_json::from_value(Value::Object(row)).ok()
}

/// Syncs with the server: registers when needed, pushes the rows changed since the last sync (all of them with
/// `full`), applies what the server sends back.
pub fn sync(ctx: &Ctx, cfg: &SyncConfig, full: bool) -> Result<SyncReport, SyncError> {
    let url = cfg.url.clone().ok_or(SyncError::Config("url"))?.trim_end_matches('/').to_string();
    if cfg.username.as_deref().is_none_or(str::is_empty) {
        return Err(SyncError::Config("username"));
    }
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| SyncError::Remote { url: url.clone(), message: e.to_string() })?;
    let http = Http { url, cfg, host: &ctx.host, client };
    let inv = &ctx.inventory;
    let registered = inv.get_config("client_id")?.is_some_and(|v| !v.is_null());
    if !registered {
        let answer = http.post("clients", None)?;
        let id = answer.get("_id").cloned().unwrap_or(Value::Null);
        inv.set_config("client_id", &Value::String(id.as_str().map(str::to_string).unwrap_or(id.to_string())))?;
    }
    let since = if full { 0 } else { inv.get_config("sync_ts")?.and_then(|v| v.as_i64()).unwrap_or(0) };
    // What to push is chosen by this host's clock (the rows changed since the previous sync started), not by the
    // server's sync_ts as 0.6 did: the server's sequence may run ahead of this clock.
    let started = ctx.now();
    let pushed_from = if full { 0 } else { inv.get_config(PUSH_MARK)?.and_then(|v| v.as_i64()).unwrap_or(0) };
    let rows: Vec<Value> = inv
        .changed_since(pushed_from)?
        .into_iter()
        .filter(|r| r.backend != crate::model::Destination::Local)
        .map(|mut r| {
            r.id = None;
            // This host's name for the store (a path, an endpoint) is not the server's business, and a 0.6 server
            // knows no such column.
            r.store = Default::default();
            serde_json::to_value(r).unwrap_or(Value::Null)
        })
        .collect();
    let answer = http.post("backups/sync", Some(&json!({"sync_ts": since, "new": rows})))?;
    let mut report = SyncReport::default();
    for row in answer.get("updated").and_then(Value::as_array).into_iter().flatten() {
        report.listed += 1;
        let Some(record) = record_of(row) else {
            report.unreadable.push((
                row.get("stored_filename").map(Value::to_string).unwrap_or_default(),
                "not a backup row".into(),
            ));
            continue;
        };
        let key = record.stored_filename.to_string();
        // A server row's store (validated when parsed) is another host's view: not believed; the row is placed
        // from its backend hash below, as older rows are, or stays "store unknown".
        let record = BackupRecord { store: Default::default(), ..record };
        report.count(&key, apply(ctx, &Entry { kind: EntryKind::Backup, record, index: Vec::new() }))?;
    }
    crate::stores::place_unknown_rows(&ctx.config, &ctx.inventory)?;
    if let Some(ts) = answer.get("sync_ts").and_then(Value::as_i64) {
        inv.set_config("sync_ts", &json!(ts))?;
    }
    inv.set_config(PUSH_MARK, &json!(started))?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;

    use super::*;
    use crate::config::{Config, Profile};
    use crate::inventory::Inventory;

    /// A sync server that answers every request with `body` (as a hostile or broken 0.6 server could).
    fn canned_server(body: Value, requests: usize) -> (String, std::thread::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            for stream in listener.incoming().take(requests) {
                let mut stream = stream.unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut len = 0;
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                reader.take(len).read_to_end(&mut Vec::new()).unwrap();
                let text = body.to_string();
                write!(stream, "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}", text.len())
                    .unwrap();
            }
        });
        (url, handle)
    }

    // Regression (issue 11, item 1): a 0.6 sync server's rows went into the inventory as they were, so a row named
    // `/tmp/x/pwn.txt` or `../out/rel.txt` made `restore` write there. They are refused and reported.
    #[test]
    fn rows_from_a_server_with_hostile_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::empty(&dir.path().join("bakthat.yml"));
        config.set_profile("default", Profile { local_path: Some(dir.path().join("store")), ..Profile::default() });
        let ctx = Ctx::new(config, "default", Inventory::open_in_memory().unwrap()).unwrap();
        ctx.inventory.set_config("client_id", &json!("me")).unwrap();
        let row = |filename: &str, stored: &str| {
            json!({"backend": "s3", "backend_hash": "h", "backup_date": 1, "filename": filename, "is_deleted": 0,
                   "last_updated": 1, "metadata": {}, "size": 1, "stored_filename": stored, "tags": []})
        };
        let updated = vec![
            row("/tmp/x/pwn.txt", "pwn.20260101000000"),
            row("../out/rel.txt", "rel.20260101000000"),
            row("a\0b", "nul.20260101000000"),
            row(&"x".repeat(300), "long.20260101000000"),
            row("ok", "../ok.20260101000000"),
            row("fine", "fine.20260101000000"),
        ];
        let (url, server) = canned_server(json!({"updated": updated, "sync_ts": 5}), 1);
        let cfg = SyncConfig { url: Some(url), username: Some("u".into()), ..SyncConfig::default() };
        let report = sync(&ctx, &cfg, false).unwrap();
        server.join().unwrap();
        assert_eq!((report.listed, report.inserted, report.unreadable.len()), (6, 1, 5), "{report:?}");
        let rows = ctx.inventory.search(&Default::default()).unwrap();
        assert_eq!(rows.iter().map(|r| r.filename.as_str()).collect::<Vec<_>>(), ["fine"]);
    }
}
