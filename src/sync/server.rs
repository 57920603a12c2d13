//! The bakthat 0.6 sync server (`bakthat-syncserver`), wire-compatible, with its bugs fixed.
//!
//! Routes: `POST /clients` (register; answers `{"_id": …, "client": …}`) and `POST /backups/sync` (request
//! `{"sync_ts": N, "new": [rows]}`, answer `{"updated": [rows], "sync_ts": M}`), as in the 0.6 reference §11. Fixed
//! here: every route needs HTTP Basic auth (401 otherwise); passwords are stored as Argon2id PHC strings; a row
//! replaces the stored one only if its `last_updated` is strictly newer (a client whose push lost gets the winning
//! row back); clients' row ids are stripped and never stored or sent; deletions are kept and sent like any change;
//! `sync_ts` is a per-server sequence (`max(now, previous + 1)`), so two syncs in one second never miss each other.
//!
//! It is a small HTTP/1.1 server on `std::net` (one thread per connection, `Connection: close`), serving HTTPS with
//! rustls when given a certificate ([`serve_tls`]), else plain HTTP for use behind a reverse proxy. State is one
//! SQLite file. It is not a general web server.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// Errors of the sync server.
#[derive(Debug, Error)]
pub enum ServerError {
    #[error("sync server database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("sync server: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot hash the password: {0}")]
    Hash(String),
    /// The certificate or key given for HTTPS is unusable.
    #[error("sync server TLS: {0}")]
    Tls(String),
}

/// Largest request body accepted (rows of a first sync of a large inventory fit easily).
const MAX_BODY: usize = 64 << 20;

/// The server's state: users, clients and the backups rows of each user.
pub struct ServerDb {
    conn: Mutex<Connection>,
    /// sha256(user \0 password) of credentials already verified, so Argon2 runs once per user and process.
    verified: Mutex<HashMap<String, [u8; 32]>>,
}

impl ServerDb {
    /// Opens (creating) the server database.
    pub fn open(path: &Path) -> Result<ServerDb, ServerError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY, password TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS clients (id INTEGER PRIMARY KEY, user TEXT NOT NULL, client TEXT NOT NULL,
                 created INTEGER NOT NULL, last_sync INTEGER, UNIQUE (user, client));
             CREATE TABLE IF NOT EXISTS backups (user TEXT NOT NULL, stored_filename TEXT NOT NULL,
                 last_updated INTEGER NOT NULL, sync INTEGER NOT NULL, data TEXT NOT NULL,
                 PRIMARY KEY (user, stored_filename));
             CREATE INDEX IF NOT EXISTS backups_sync ON backups (user, sync);
             CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value INTEGER NOT NULL);",
        )?;
        Ok(ServerDb { conn: Mutex::new(conn), verified: Mutex::new(HashMap::new()) })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a user or changes its password (stored as an Argon2id PHC string).
    pub fn add_user(&self, name: &str, password: &str) -> Result<(), ServerError> {
        let mut salt = [0u8; 16];
        getrandom::getrandom(&mut salt).map_err(|e| ServerError::Hash(e.to_string()))?;
        let salt = SaltString::encode_b64(&salt).map_err(|e| ServerError::Hash(e.to_string()))?;
        let phc = Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| ServerError::Hash(e.to_string()))?
            .to_string();
        self.conn().execute(
            "INSERT INTO users (name, password) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET password = ?2",
            params![name, phc],
        )?;
        self.verified.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
        Ok(())
    }

    /// Whether `name`/`password` are a user's credentials.
    pub fn check(&self, name: &str, password: &str) -> Result<bool, ServerError> {
        let digest: [u8; 32] = Sha256::new()
            .chain_update(name.as_bytes())
            .chain_update([0u8])
            .chain_update(password.as_bytes())
            .finalize()
            .into();
        if self.verified.lock().unwrap_or_else(|p| p.into_inner()).get(name) == Some(&digest) {
            return Ok(true);
        }
        let phc: Option<String> =
            self.conn().query_row("SELECT password FROM users WHERE name = ?1", [name], |r| r.get(0)).optional()?;
        let Some(phc) = phc else { return Ok(false) };
        let ok = PasswordHash::new(&phc)
            .map(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
            .unwrap_or(false);
        if ok {
            self.verified.lock().unwrap_or_else(|p| p.into_inner()).insert(name.to_string(), digest);
        }
        Ok(ok)
    }

    /// `POST /clients`: registers the client named by the `bakthat-client` header (or returns its registration).
    pub fn register(&self, user: &str, client: &str) -> Result<Value, ServerError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO clients (user, client, created) VALUES (?1, ?2, ?3) ON CONFLICT (user, client) DO NOTHING",
            params![user, client, chrono::Utc::now().timestamp()],
        )?;
        let (id, last_sync): (i64, Option<i64>) = conn.query_row(
            "SELECT id, last_sync FROM clients WHERE user = ?1 AND client = ?2",
            params![user, client],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(json!({"_id": id.to_string(), "client": client, "slug": slug(client), "user": user, "last_sync": last_sync}))
    }

    /// `POST /backups/sync`: returns the rows changed since `sync_ts` by others, and stores the pushed rows where
    /// they are newer.
    pub fn sync(&self, user: &str, client: Option<&str>, body: &Value) -> Result<Value, String> {
        let since = body.get("sync_ts").and_then(as_i64).unwrap_or(0);
        let new = match body.get("new") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(rows)) => rows.clone(),
            Some(_) => return Err("`new` must be a list of rows".into()),
        };
        let rows: Vec<Map<String, Value>> = new.into_iter().map(normalize_row).collect::<Result<_, _>>()?;
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| e.to_string())?;
        let run = || -> rusqlite::Result<Value> {
            let mut updated = Vec::new();
            {
                let mut stmt = tx
                    .prepare("SELECT data FROM backups WHERE user = ?1 AND sync > ?2 ORDER BY sync, stored_filename")?;
                for data in stmt.query_map(params![user, since], |r| r.get::<_, String>(0))? {
                    updated.push(serde_json::from_str::<Value>(&data?).unwrap_or(Value::Null));
                }
            }
            let prev: i64 =
                tx.query_row("SELECT value FROM state WHERE key = 'sync'", [], |r| r.get(0)).optional()?.unwrap_or(0);
            let seq = chrono::Utc::now().timestamp().max(prev + 1);
            tx.execute(
                "INSERT INTO state (key, value) VALUES ('sync', ?1) ON CONFLICT (key) DO UPDATE SET value = ?1",
                [seq],
            )?;
            for row in rows.iter() {
                let stored = row.get("stored_filename").and_then(Value::as_str).unwrap_or_default();
                let lu = row.get("last_updated").and_then(as_i64).unwrap_or(0);
                let current: Option<(i64, String)> = tx
                    .query_row(
                        "SELECT last_updated, data FROM backups WHERE user = ?1 AND stored_filename = ?2",
                        params![user, stored],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()?;
                match current {
                    Some((have, data)) if have >= lu => {
                        // The pushed row lost: send the winner back unless it is already in `updated`.
                        if have > lu {
                            let winner = serde_json::from_str::<Value>(&data).unwrap_or(Value::Null);
                            if !updated.contains(&winner) {
                                updated.push(winner);
                            }
                        }
                    }
                    _ => {
                        let data = Value::Object(row.clone()).to_string();
                        tx.execute(
                            "INSERT INTO backups (user, stored_filename, last_updated, sync, data) \
                             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (user, stored_filename) DO UPDATE SET \
                             last_updated = ?3, sync = ?4, data = ?5",
                            params![user, stored, lu, seq, data],
                        )?;
                    }
                }
            }
            if let Some(c) = client {
                tx.execute("UPDATE clients SET last_sync = ?1 WHERE user = ?2 AND client = ?3", params![seq, user, c])?;
            }
            Ok(json!({"updated": updated, "sync_ts": seq}))
        };
        let out = run().map_err(|e| e.to_string())?;
        tx.commit().map_err(|e| e.to_string())?;
        Ok(out)
    }
}

fn slug(client: &str) -> String {
    client.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect()
}

fn as_i64(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)).or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// A pushed row in the stored (and sent) shape: no `id`, `tags` a space-separated string, `is_deleted` a bool,
/// `metadata` an object, `stored_filename` present.
fn normalize_row(row: Value) -> Result<Map<String, Value>, String> {
    let Value::Object(mut m) = row else { return Err("each row must be an object".into()) };
    m.remove("id");
    m.remove("_id");
    m.remove("meta");
    match m.get("stored_filename") {
        Some(Value::String(s)) if !s.is_empty() => {}
        _ => return Err("a row has no stored_filename".into()),
    }
    let tags = match m.remove("tags") {
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" "),
        Some(Value::String(s)) => s,
        _ => String::new(),
    };
    m.insert("tags".into(), Value::String(tags));
    let deleted = match m.get("is_deleted") {
        Some(Value::Bool(b)) => *b,
        Some(v) => as_i64(v).unwrap_or(0) != 0,
        None => false,
    };
    m.insert("is_deleted".into(), Value::Bool(deleted));
    if let Some(Value::String(s)) = m.get("metadata") {
        let parsed = serde_json::from_str::<Value>(s).unwrap_or_else(|_| Value::String(s.clone()));
        m.insert("metadata".into(), parsed);
    }
    for k in ["last_updated", "backup_date", "size"] {
        if let Some(n) = m.get(k).and_then(as_i64) {
            m.insert(k.into(), json!(n));
        }
    }
    Ok(m)
}

/// Serves plain HTTP until `stop` is set (checked every 50 ms between connections). Each connection gets its own
/// thread.
pub fn serve(listener: TcpListener, db: ServerDb, stop: Arc<AtomicBool>) -> Result<(), ServerError> {
    serve_with(listener, db, None, stop)
}

/// Serves HTTPS with `tls` (see [`tls_config`]) until `stop` is set.
pub fn serve_tls(
    listener: TcpListener,
    db: ServerDb,
    tls: Arc<rustls::ServerConfig>,
    stop: Arc<AtomicBool>,
) -> Result<(), ServerError> {
    serve_with(listener, db, Some(tls), stop)
}

/// A TLS configuration from a PEM certificate chain and a PEM private key (PKCS#8, PKCS#1 or SEC1).
pub fn tls_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, ServerError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &Path, e: &dyn std::fmt::Display| ServerError::Tls(format!("{}: {e}", what.display()));
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| bad(cert, &e))?;
    if certs.is_empty() {
        return Err(bad(cert, &"no certificate in the file"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| bad(cert, &e))?;
    Ok(Arc::new(config))
}

fn serve_with(
    listener: TcpListener,
    db: ServerDb,
    tls: Option<Arc<rustls::ServerConfig>>,
    stop: Arc<AtomicBool>,
) -> Result<(), ServerError> {
    listener.set_nonblocking(true)?;
    let db = Arc::new(db);
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let db = db.clone();
                let tls = tls.clone();
                std::thread::spawn(move || {
                    let _ = connection(stream, &db, tls);
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(50)),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn connection(tcp: TcpStream, db: &ServerDb, tls: Option<Arc<rustls::ServerConfig>>) -> std::io::Result<()> {
    tcp.set_nonblocking(false)?;
    tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
    tcp.set_write_timeout(Some(Duration::from_secs(30)))?;
    match tls {
        None => {
            let mut tcp = tcp;
            handle(&mut tcp, db)
        }
        Some(config) => {
            let conn = rustls::ServerConnection::new(config).map_err(std::io::Error::other)?;
            let mut s = rustls::StreamOwned::new(conn, tcp);
            handle(&mut s, db)?;
            s.conn.send_close_notify();
            s.flush()
        }
    }
}

struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

fn read_request(r: &mut impl BufRead) -> std::io::Result<Option<Request>> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else { return Ok(None) };
    let path = target.split('?').next().unwrap_or("/").trim_end_matches('/').to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
        if headers.len() > 100 {
            return Ok(None);
        }
    }
    let mut req = Request { method: method.to_string(), path, headers, body: Vec::new() };
    let len: usize = req.header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    if len > MAX_BODY {
        return Ok(None);
    }
    req.body.resize(len, 0);
    r.read_exact(&mut req.body)?;
    Ok(Some(req))
}

fn respond(stream: &mut impl Write, status: u16, body: &Value, extra: &str) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Internal Server Error",
    };
    let body = body.to_string();
    write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra}connection: \
         close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

/// The user of a request with valid Basic credentials.
fn authenticate(req: &Request, db: &ServerDb) -> Option<String> {
    let value = req.header("authorization")?;
    let (scheme, b64) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(base64_decode(b64.trim())?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    db.check(user, password).ok()?.then(|| user.to_string())
}

fn handle<S: Read + Write>(stream: &mut S, db: &ServerDb) -> std::io::Result<()> {
    let req = {
        let mut r = BufReader::new(&mut *stream);
        match read_request(&mut r)? {
            Some(req) => req,
            None => return Ok(()),
        }
    };
    let Some(user) = authenticate(&req, db) else {
        return respond(
            stream,
            401,
            &json!({"error": "authentication required"}),
            "www-authenticate: Basic realm=\"bakthat\"\r\n",
        );
    };
    let client = req.header("bakthat-client").map(str::to_string);
    match (req.method.as_str(), req.path.as_str()) {
        ("POST", "/clients") => match db.register(&user, client.as_deref().unwrap_or("unknown")) {
            Ok(v) => respond(stream, 200, &v, ""),
            Err(e) => respond(stream, 500, &json!({"error": e.to_string()}), ""),
        },
        ("POST", "/backups/sync") => {
            let body: Value = match serde_json::from_slice(&req.body) {
                Ok(v) => v,
                Err(e) => return respond(stream, 400, &json!({"error": format!("the body is not JSON: {e}")}), ""),
            };
            match db.sync(&user, client.as_deref(), &body) {
                Ok(v) => respond(stream, 200, &v, ""),
                Err(e) => respond(stream, 400, &json!({"error": e}), ""),
            }
        }
        (_, "/clients" | "/backups/sync") => respond(stream, 405, &json!({"error": "use POST"}), ""),
        _ => respond(stream, 404, &json!({"error": "no such route"}), ""),
    }
}

/// Standard base64 (padding optional); `None` on any other character.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes().filter(|c| *c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_basic_credentials() {
        assert_eq!(base64_decode("dXNlcjpwYXNz").unwrap(), b"user:pass");
        assert_eq!(base64_decode("YQ==").unwrap(), b"a");
        assert!(base64_decode("a b").is_none());
    }

    #[test]
    fn rows_are_normalized() {
        let row = json!({"id": 7, "tags": ["a", "b"], "is_deleted": 1, "stored_filename": "x.20200101000000.tgz",
            "metadata": "{\"is_enc\": false}", "last_updated": 5});
        let m = normalize_row(row).unwrap();
        assert!(!m.contains_key("id"));
        assert_eq!(m["tags"], "a b");
        assert_eq!(m["is_deleted"], true);
        assert_eq!(m["metadata"], json!({"is_enc": false}));
        assert!(normalize_row(json!({"tags": ""})).is_err());
    }
}
