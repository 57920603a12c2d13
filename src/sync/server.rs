//! The bakthat 0.6 sync server (`bakthat sync-server`), wire-compatible, with its bugs fixed.
//!
//! Routes: `POST /clients` (register; answers `{"_id": …, "client": …}`) and `POST /backups/sync` (request
//! `{"sync_ts": N, "new": [rows]}`, answer `{"updated": [rows], "sync_ts": M}`), as in the 0.6 reference §11. Fixed
//! here: every route needs HTTP Basic auth (401 otherwise); passwords are stored as Argon2id PHC strings; a row
//! replaces the stored one only if its `last_updated` is strictly newer (a client whose push lost gets the winning
//! row back); clients' row ids are stripped and never stored or sent; deletions are kept and sent like any change;
//! `sync_ts` is a per-server sequence (`max(now, previous + 1)`), so two syncs in one second never miss each other.
//!
//! HTTP is hyper's HTTP/1 server on a tokio runtime, HTTPS with rustls when given a certificate, else plain HTTP for
//! use behind a reverse proxy. Strangers cannot make it hold memory or threads: the credentials are checked before
//! any byte of the body is read, bodies and request heads have limits (413, 431; a malformed `Content-Length` is a
//! 400), the TLS handshake, the request head and the body each have a deadline, at most
//! [`Limits::max_connections`] connections are served at once (the rest wait in the listener's backlog), and at
//! most [`Limits::password_checks`] Argon2 verifications run at once. One request per connection. State is one
//! SQLite file. Not here: the client ([`super::client`]), or anything of a general web server.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Body, Bytes, Incoming};
use hyper::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONNECTION, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{json, Map, Value};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use thiserror::Error;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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
    /// A request the protocol does not allow (answered 400).
    #[error("{0}")]
    BadRequest(String),
}

/// What a stranger or a slow client may cost the server. [`Limits::default`] is what `bakthat sync-server` uses.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body: a larger `Content-Length` is answered 413 before the body is read, a larger chunked
    /// body when it goes past this. The default (64 MiB) holds the rows of a first sync of ~150,000 backups.
    pub max_body: usize,
    /// Largest request head, the request line and all headers (431 above it).
    pub max_head: usize,
    /// Connections served at once; further ones wait in the listener's backlog until one ends.
    pub max_connections: usize,
    /// Deadline for the TLS handshake, and then again for the request head, from the connection's start (slowloris).
    pub head_timeout: Duration,
    /// Deadline for the whole body of an authenticated request (408 after it).
    pub body_timeout: Duration,
    /// Argon2 password verifications (19 MiB and some 50 ms of a core each) running at once; a correct password
    /// verified before is recognised without Argon2.
    pub password_checks: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_body: 64 << 20,
            max_head: 16 << 10,
            max_connections: 64,
            head_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(120),
            password_checks: 1,
        }
    }
}

impl Limits {
    /// The longest a connection may live: handshake, head, body, then some time to answer.
    fn connection_lifetime(&self) -> Duration {
        self.head_timeout * 2 + self.body_timeout + Duration::from_secs(60)
    }
}

/// How [`run`] serves: TLS or not, and its [`Limits`].
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// HTTPS with this configuration (see [`tls_config`]); plain HTTP without.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub limits: Limits,
}

/// A password that has been verified against a user's current PHC string: `HMAC(key, phc \0 password)`, with a key
/// of this process. A new PHC string (the password changed, even by another process) no longer matches it.
type Verified = [u8; 32];

/// The server's state: users, clients and the backups rows of each user.
pub struct ServerDb {
    conn: Mutex<Connection>,
    /// Per user, the proof of the last password verified with Argon2, so Argon2 runs once per user and password.
    verified: Mutex<HashMap<String, Verified>>,
    verified_key: [u8; 32],
    /// Argon2 working areas between checks (see [`ServerDb::argon2_matches`]).
    argon2_memory: Mutex<Vec<Vec<argon2::Block>>>,
}

/// Largest Argon2 memory cost accepted from a stored hash: 256 MiB in 1 KiB blocks.
const MAX_ARGON2_BLOCKS: usize = 256 << 10;

/// What [`ServerDb::lookup`] found for a user and password.
enum Lookup {
    NoSuchUser,
    /// This password was verified against the user's current PHC string before.
    Known,
    /// Argon2 has to decide (see [`ServerDb::verify`]).
    Unverified {
        phc: String,
    },
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
        let mut verified_key = [0u8; 32];
        getrandom::getrandom(&mut verified_key).map_err(|e| ServerError::Hash(e.to_string()))?;
        Ok(ServerDb {
            conn: Mutex::new(conn),
            verified: Mutex::new(HashMap::new()),
            verified_key,
            argon2_memory: Mutex::new(Vec::new()),
        })
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

    /// Whether `name`/`password` are a user's credentials (Argon2 unless this password was verified against the
    /// user's current password hash before).
    pub fn check(&self, name: &str, password: &str) -> Result<bool, ServerError> {
        Ok(match self.lookup(name, password)? {
            Lookup::NoSuchUser => false,
            Lookup::Known => true,
            Lookup::Unverified { phc } => self.verify(name, password, &phc),
        })
    }

    /// The cheap part of [`ServerDb::check`]: the user's current PHC string, and whether this password was verified
    /// against it. Reading the PHC string each time is what makes a password changed by another process (`bakthat
    /// sync-server --add-user`) take effect at once.
    fn lookup(&self, name: &str, password: &str) -> Result<Lookup, ServerError> {
        let phc: Option<String> =
            self.conn().query_row("SELECT password FROM users WHERE name = ?1", [name], |r| r.get(0)).optional()?;
        let Some(phc) = phc else { return Ok(Lookup::NoSuchUser) };
        let proof = self.proof(&phc, password);
        let known = self
            .verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .is_some_and(|v| bool::from(v.ct_eq(&proof)));
        Ok(if known { Lookup::Known } else { Lookup::Unverified { phc } })
    }

    /// The expensive part of [`ServerDb::check`]: Argon2 against `phc`; remembers a success.
    fn verify(&self, name: &str, password: &str, phc: &str) -> bool {
        let ok = self.argon2_matches(password, phc).unwrap_or(false);
        if ok {
            let proof = self.proof(phc, password);
            self.verified.lock().unwrap_or_else(|p| p.into_inner()).insert(name.to_string(), proof);
        }
        ok
    }

    /// Argon2 of `password` with `phc`'s parameters and salt, in working memory kept for the next check: a stream of
    /// wrong passwords made the allocator keep each freed 19 MiB area (measured: +19 MiB per check, 845 MB after
    /// 100 wrong passwords). The pool holds at most as many areas as checks ran at once.
    fn argon2_matches(&self, password: &str, phc: &str) -> Result<bool, argon2::password_hash::Error> {
        use argon2::password_hash::Error as E;
        let hash = PasswordHash::new(phc)?;
        let params = Params::try_from(&hash)?;
        let algorithm = Algorithm::try_from(hash.algorithm)?;
        let version = hash.version.map(Version::try_from).transpose()?.unwrap_or_default();
        let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else { return Err(E::PhcStringField) };
        if params.block_count() > MAX_ARGON2_BLOCKS {
            return Err(E::ParamValueInvalid(argon2::password_hash::errors::InvalidValue::TooLong));
        }
        let mut salt_bytes = [0u8; 64];
        let salt = salt.decode_b64(&mut salt_bytes)?;
        let taken = self.argon2_memory.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut memory = taken.unwrap_or_default();
        memory.resize(params.block_count(), argon2::Block::default());
        let mut out = vec![0u8; expected.len()];
        let result = Argon2::new(algorithm, version, params).hash_password_into_with_memory(
            password.as_bytes(),
            salt,
            &mut out,
            &mut memory[..],
        );
        self.argon2_memory.lock().unwrap_or_else(|p| p.into_inner()).push(memory);
        result.map_err(E::from)?;
        Ok(bool::from(out.as_slice().ct_eq(expected.as_bytes())))
    }

    fn proof(&self, phc: &str, password: &str) -> Verified {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.verified_key).expect("HMAC takes any key length");
        mac.update(phc.as_bytes());
        mac.update(&[0]);
        mac.update(password.as_bytes());
        mac.finalize().into_bytes().into()
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
    /// A body that is not `{"sync_ts": N, "new": [rows]}` (either key may be missing or null) is a
    /// [`ServerError::BadRequest`].
    pub fn sync(&self, user: &str, client: Option<&str>, body: &Value) -> Result<Value, ServerError> {
        let bad = |m: &str| ServerError::BadRequest(m.to_string());
        let Value::Object(body) = body else {
            return Err(bad("the body must be an object {\"sync_ts\": N, \"new\": [rows]}"));
        };
        let since = match body.get("sync_ts") {
            None | Some(Value::Null) => 0,
            Some(v) => as_i64(v).filter(|n| *n >= 0).ok_or_else(|| bad("`sync_ts` must be a number of seconds"))?,
        };
        let new = match body.get("new") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(rows)) => rows.clone(),
            Some(_) => return Err(bad("`new` must be a list of rows")),
        };
        let rows: Vec<Map<String, Value>> =
            new.into_iter().map(normalize_row).collect::<Result<_, _>>().map_err(ServerError::BadRequest)?;
        let mut conn = self.conn();
        let tx = conn.transaction()?;
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
        let out = run()?;
        tx.commit()?;
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

/// Serves plain HTTP with the default [`Limits`] until `stop` is set (checked every 100 ms), on a runtime of its
/// own. For callers without tokio (the CLI, whose signal handlers set `stop`).
pub fn serve(listener: std::net::TcpListener, db: ServerDb, stop: Arc<AtomicBool>) -> Result<(), ServerError> {
    serve_blocking(listener, db, Options::default(), stop)
}

/// Serves HTTPS with `tls` (see [`tls_config`]) and the default [`Limits`] until `stop` is set.
pub fn serve_tls(
    listener: std::net::TcpListener,
    db: ServerDb,
    tls: Arc<rustls::ServerConfig>,
    stop: Arc<AtomicBool>,
) -> Result<(), ServerError> {
    serve_blocking(listener, db, Options { tls: Some(tls), ..Options::default() }, stop)
}

/// [`run`] on a current-thread runtime of its own until `stop` is set.
pub fn serve_blocking(
    listener: std::net::TcpListener,
    db: ServerDb,
    options: Options,
    stop: Arc<AtomicBool>,
) -> Result<(), ServerError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .max_blocking_threads(options.limits.password_checks + 4)
        .build()?;
    runtime.block_on(async move {
        listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(listener)?;
        let stopped = async move {
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        run(listener, db, options, stopped).await
    })
}

/// What every connection's requests share.
struct Shared {
    db: ServerDb,
    limits: Limits,
    /// One permit per Argon2 verification running.
    password_checks: Arc<Semaphore>,
}

/// Serves until `shutdown` completes, then waits (at most [`Limits::head_timeout`]) for the connections being
/// served. Takes its listener, so a test binds `127.0.0.1:0`. Call within a tokio runtime with I/O and time enabled;
/// the database and Argon2 run on its blocking threads.
pub async fn run(
    listener: TcpListener,
    db: ServerDb,
    options: Options,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    let limits = options.limits;
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let shared = Arc::new(Shared {
        db,
        password_checks: Arc::new(Semaphore::new(limits.password_checks.max(1))),
        limits: limits.clone(),
    });
    let tls = options.tls.map(tokio_rustls::TlsAcceptor::from);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.head_timeout)
        .max_header_size(limits.max_head)
        .max_buf_size(limits.max_head.max(8192))
        .keep_alive(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // A slot first, then accept: connections over the cap wait in the kernel's backlog, costing nothing here.
        let Some(slot) = unless(shutdown.as_mut(), slots.clone().acquire_owned()).await else { break };
        let slot = slot.expect("the semaphore is never closed");
        let tcp = match unless(shutdown.as_mut(), listener.accept()).await {
            None => break,
            Some(Ok((tcp, _))) => tcp,
            Some(Err(e)) if accept_error_is_transient(&e) => {
                tracing::warn!("sync server: accepting a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Some(Err(e)) => return Err(e.into()),
        };
        tokio::spawn(connection(tcp, tls.clone(), http.clone(), shared.clone(), slot));
    }
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(limits.head_timeout, slots.acquire_many(all)).await;
    Ok(())
}

/// `work`'s output, or `None` once `shutdown` completes first.
async fn unless<T>(mut shutdown: Pin<&mut impl Future<Output = ()>>, work: impl Future<Output = T>) -> Option<T> {
    let mut work = std::pin::pin!(work);
    std::future::poll_fn(|cx| match shutdown.as_mut().poll(cx) {
        Poll::Ready(()) => Poll::Ready(None),
        Poll::Pending => work.as_mut().poll(cx).map(Some),
    })
    .await
}

/// Errors of `accept` after which the listener still works (out of descriptors or memory, a peer gone early).
fn accept_error_is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionAborted | ConnectionReset | Interrupted | WouldBlock | OutOfMemory)
        || matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::EPROTO))
}

/// One connection, one request: the TLS handshake within the head deadline, then hyper, all within the connection's
/// lifetime. Holds its slot until it ends.
async fn connection(
    tcp: TcpStream,
    tls: Option<tokio_rustls::TlsAcceptor>,
    http: hyper::server::conn::http1::Builder,
    shared: Arc<Shared>,
    _slot: OwnedSemaphorePermit,
) {
    let limits = shared.limits.clone();
    let service = hyper::service::service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(answer(&shared, req).await) }
    });
    let served = async {
        match tls {
            None => {
                let _ = http.serve_connection(TokioIo::new(tcp), service).await;
            }
            Some(acceptor) => {
                if let Ok(Ok(stream)) = tokio::time::timeout(limits.head_timeout, acceptor.accept(tcp)).await {
                    let _ = http.serve_connection(TokioIo::new(stream), service).await;
                }
            }
        }
    };
    let _ = tokio::time::timeout(limits.connection_lifetime(), served).await;
}

type Answer = Response<Full<Bytes>>;

fn reply(status: StatusCode, body: &Value) -> Answer {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
    resp
}

fn error(status: StatusCode, message: impl Into<String>) -> Answer {
    reply(status, &json!({"error": message.into()}))
}

/// The answer to one request: credentials first (without touching the body), then the route, then the body within
/// its limits and deadline.
async fn answer(shared: &Arc<Shared>, req: Request<Incoming>) -> Answer {
    let Some(user) = authenticate(shared, req.headers()).await else {
        let mut resp = error(StatusCode::UNAUTHORIZED, "authentication required");
        resp.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"bakthat\""));
        return resp;
    };
    let client = req.headers().get("bakthat-client").and_then(|v| v.to_str().ok()).map(str::to_string);
    let path = req.uri().path().trim_end_matches('/');
    let sync = match (req.method(), path) {
        (&Method::POST, "/clients") => false,
        (&Method::POST, "/backups/sync") => true,
        (_, "/clients" | "/backups/sync") => return error(StatusCode::METHOD_NOT_ALLOWED, "use POST"),
        _ => return error(StatusCode::NOT_FOUND, "no such route"),
    };
    let db = shared.clone();
    if !sync {
        // 0.6 sends an empty body; whatever else came is never read.
        let client = client.unwrap_or_else(|| "unknown".into());
        return match blocking(move || db.db.register(&user, &client)).await {
            Ok(v) => reply(StatusCode::OK, &v),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        };
    }
    let body = match read_body(req.into_body(), &shared.limits).await {
        Ok(body) => body,
        Err(resp) => return resp,
    };
    let outcome = blocking(move || {
        let body: Value =
            serde_json::from_slice(&body).map_err(|e| ServerError::BadRequest(format!("the body is not JSON: {e}")))?;
        db.db.sync(&user, client.as_deref(), &body)
    })
    .await;
    match outcome {
        Ok(v) => reply(StatusCode::OK, &v),
        Err(ServerError::BadRequest(m)) => error(StatusCode::BAD_REQUEST, m),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// The body, or the answer saying why not: 413 over [`Limits::max_body`] (before reading anything when the
/// `Content-Length` says so), 408 past [`Limits::body_timeout`], 400 when the connection fails mid-body.
async fn read_body(body: Incoming, limits: &Limits) -> Result<Bytes, Answer> {
    let too_large = || error(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is over {} bytes", limits.max_body));
    if body.size_hint().lower() > limits.max_body as u64 {
        return Err(too_large());
    }
    match tokio::time::timeout(limits.body_timeout, Limited::new(body, limits.max_body).collect()).await {
        Err(_) => Err(error(StatusCode::REQUEST_TIMEOUT, "the body did not arrive in time")),
        Ok(Err(e)) if e.is::<LengthLimitError>() => Err(too_large()),
        Ok(Err(e)) => Err(error(StatusCode::BAD_REQUEST, format!("reading the body: {e}"))),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

/// Runs database work on a blocking thread.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ServerError> + Send + 'static,
) -> Result<T, ServerError> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| Err(ServerError::Io(std::io::Error::other(e))))
}

/// The user of a request with valid Basic credentials. Argon2 runs on a blocking thread, at most
/// [`Limits::password_checks`] at once; a password verified before, and requests without credentials or for no
/// such user, cost a database lookup and no Argon2.
async fn authenticate(shared: &Arc<Shared>, headers: &HeaderMap) -> Option<String> {
    let (user, password) = basic_credentials(headers)?;
    let db = shared.clone();
    let (user, password, lookup) = blocking(move || {
        let lookup = db.db.lookup(&user, &password)?;
        Ok((user, password, lookup))
    })
    .await
    .ok()?;
    let phc = match lookup {
        Lookup::NoSuchUser => return None,
        Lookup::Known => return Some(user),
        Lookup::Unverified { phc } => phc,
    };
    let permit = shared.password_checks.clone().acquire_owned().await.ok()?;
    let db = shared.clone();
    blocking(move || {
        let _permit = permit;
        Ok(db.db.verify(&user, &password, &phc).then_some(user))
    })
    .await
    .ok()?
}

/// `Authorization: Basic base64(user:password)`, decoded.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, b64) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(base64_decode(b64.trim())?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
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
