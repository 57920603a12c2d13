//! The OpenStack Swift store: objects in one container, spoken to over Swift's HTTP API with a blocking `reqwest`
//! client.
//!
//! * **Auth**: v1 (tempauth, swauth: `GET auth_url` with `X-Auth-User`/`X-Auth-Key`), Keystone v2 (`POST
//!   {auth_url}/tokens`, `access_key` is `TENANT:USER`) and Keystone v3 (`POST {auth_url}/auth/tokens`, password
//!   method, `access_key` is `PROJECT:USER`, domains `Default` unless given). The token is cached; a 401 makes the
//!   store authenticate again once and retry, and a second 401 is [`StorageError::Auth`].
//! * **TLS** is verified against the system CA bundle (`SSL_CERT_FILE` is honoured); [`SwiftSettings::insecure`]
//!   turns verification off (bakthat 0.6 always did).
//! * **Uploads** are streamed through a spool that keeps the first MiB in memory and the rest in an anonymous
//!   temporary file, never more than one segment per file. An object of at most [`SwiftSettings::segment_size`]
//!   bytes is one `PUT`. A larger one becomes a Static Large Object: its segments go to the container
//!   `<container>_segments` (the name the `swift` CLI uses) as `<key>/slo/<epoch>-<random>/<n>`, uploaded by a
//!   background thread while the next segment is written, and [`Upload::commit`] writes the manifest
//!   (`?multipart-manifest=put`) under the key, which is what makes the object visible. Objects of more than
//!   [`SwiftSettings::manifest_segments`] segments get nested manifests (in the segments container). Dropping an
//!   upload deletes its segments; [`Backend::cleanup`] removes segments that a killed process left behind once they
//!   are a day old and no manifest refers to them.
//! * **Reads** stream the response; a connection lost mid-download is resumed with a `Range` request (the `ETag`
//!   must not change in between).
//! * **Deletes** of a manifest use `?multipart-manifest=delete`, so the segments go too.
//! * **Failures**: 5xx, 408, 429, 498, timeouts and connection errors are retried ([`ATTEMPTS`] attempts with
//!   exponential backoff and jitter, see [`super::retry`]); after that a connection problem is [`StorageError::Io`] (transient) and a server error
//!   is [`StorageError::Backend`]. An untrusted TLS certificate is not retried.
//!
//! Not here: Swift's S3 emulation (`s3api`) is reached through the S3 store; container ACLs, storage policies and
//! object expiry are not managed.

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_LENGTH, ETAG, LAST_MODIFIED, RANGE};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use thiserror::Error;

use super::retry::{Retry, Transient};
use super::{check_key, Backend, ObjectInfo, PutOptions, StorageError, Upload};

/// The default segment size, and so the largest object written with a single `PUT`: 64 MiB.
pub const DEFAULT_SEGMENT_SIZE: u64 = 64 << 20;
/// Swift's smallest allowed segment (`min_segment_size`, except for the last one): 1 MiB.
pub const MIN_SEGMENT_SIZE: u64 = 1 << 20;
/// Swift's default `max_manifest_segments`.
pub const DEFAULT_MANIFEST_SEGMENTS: usize = 1000;
/// How many times a request is tried before its failure is reported.
pub const ATTEMPTS: u32 = 4;
/// Segments of interrupted uploads younger than this are left to [`Backend::cleanup`] of a later run: another
/// process may still be uploading them.
pub const CLEANUP_GRACE_SECS: i64 = 24 * 3600;

/// Bytes of a segment kept in memory before the spool moves to a temporary file.
const SPILL: usize = 1 << 20;
/// Connect, header and per-read timeout.
const TIMEOUT: Duration = Duration::from_secs(60);
/// Slowest transfer rate tolerated for a `PUT` before it times out (the timeout grows with the body).
const MIN_RATE: u64 = 256 << 10;
/// The first retry waits up to this long, the next ones twice as long as the one before (with jitter).
const BACKOFF: Duration = Duration::from_millis(250);
/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(8);

/// Which auth protocol `auth_url` speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthVersion {
    /// Swift's own auth (tempauth, swauth): `GET auth_url` with `X-Auth-User`/`X-Auth-Key`.
    V1,
    /// Keystone v2.0 (`/tokens`).
    V2,
    /// Keystone v3 (`/auth/tokens`).
    V3,
}

impl AuthVersion {
    /// Parses the profile's `auth_version` (`1`, `1.0`, `2`, `2.0`, `3`); when it is unset, a Keystone path in the
    /// URL (`…/v2.0`, `…/v3`) decides, and otherwise v1 (python-swiftclient's default).
    pub fn from_setting(setting: Option<&str>, auth_url: &str) -> Result<AuthVersion, String> {
        match setting.map(str::trim) {
            Some("1" | "1.0") => Ok(AuthVersion::V1),
            Some("2" | "2.0") => Ok(AuthVersion::V2),
            Some("3" | "3.0") => Ok(AuthVersion::V3),
            Some(other) => Err(format!("unknown Swift auth version {other:?}; use 1 (tempauth), 2 or 3 (Keystone)")),
            None => {
                let url = auth_url.trim_end_matches('/');
                Ok(if url.ends_with("/v3") {
                    AuthVersion::V3
                } else if url.ends_with("/v2.0") {
                    AuthVersion::V2
                } else {
                    AuthVersion::V1
                })
            }
        }
    }
}

/// How to reach a Swift container. `Debug` hides the key.
#[derive(Clone)]
pub struct SwiftSettings {
    /// The auth endpoint: `https://host/auth/v1.0`, `https://keystone/v2.0`, `https://keystone/v3`.
    pub auth_url: String,
    pub auth_version: AuthVersion,
    /// v1: `ACCOUNT:USER`; v2: `TENANT:USER`; v3: `PROJECT:USER` (the profile's `access_key`).
    pub user: String,
    /// The key or password (the profile's `secret_key`).
    pub key: String,
    /// The container (the profile's `s3_bucket`); created when missing.
    pub container: String,
    /// Keystone: the catalog region to use (the first `object-store` endpoint when unset or not in the catalog).
    pub region: Option<String>,
    /// Skip TLS certificate verification.
    pub insecure: bool,
    /// Keystone v3: the user's domain name (default `Default`).
    pub user_domain: Option<String>,
    /// Keystone v3: the project's domain name (default `Default`).
    pub project_domain: Option<String>,
    /// Objects larger than this are uploaded as segments of this size (at least [`MIN_SEGMENT_SIZE`]).
    pub segment_size: u64,
    /// Segments per manifest (the cluster's `max_manifest_segments`); more segments get nested manifests.
    pub manifest_segments: usize,
}

impl Default for SwiftSettings {
    fn default() -> Self {
        SwiftSettings {
            auth_url: String::new(),
            auth_version: AuthVersion::V1,
            user: String::new(),
            key: String::new(),
            container: String::new(),
            region: None,
            insecure: false,
            user_domain: None,
            project_domain: None,
            segment_size: DEFAULT_SEGMENT_SIZE,
            manifest_segments: DEFAULT_MANIFEST_SEGMENTS,
        }
    }
}

impl std::fmt::Debug for SwiftSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwiftSettings")
            .field("auth_url", &self.auth_url)
            .field("auth_version", &self.auth_version)
            .field("user", &self.user)
            .field("key", &"<hidden>")
            .field("container", &self.container)
            .field("region", &self.region)
            .field("insecure", &self.insecure)
            .field("user_domain", &self.user_domain)
            .field("project_domain", &self.project_domain)
            .field("segment_size", &self.segment_size)
            .field("manifest_segments", &self.manifest_segments)
            .finish()
    }
}

/// A Swift container seen as a store. Cheap to clone (the client and the token are shared).
#[derive(Clone)]
pub struct SwiftStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SwiftStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwiftStore").field("settings", &self.inner.settings).finish_non_exhaustive()
    }
}

struct Inner {
    settings: SwiftSettings,
    client: Client,
    describe: String,
    session: Mutex<Option<Arc<Session>>>,
    segments_container: String,
    segments_ready: AtomicBool,
    retry: Retry,
}

/// A failed attempt at a request.
enum Attempt {
    /// A status worth another attempt (5xx, 408, 429, 498).
    Status(Box<Response>),
    /// No answer: a timeout or a connection problem.
    Transport(reqwest::Error),
    /// A failure that another attempt cannot cure.
    Final(StorageError),
}

impl Transient for Attempt {
    fn is_transient(&self) -> bool {
        !matches!(self, Attempt::Final(_))
    }
}

/// A token and the account URL it is good for.
#[derive(Debug)]
struct Session {
    storage_url: String,
    token: String,
}

/// What the auth service said when it refused the credentials (the source of [`StorageError::Auth`]).
#[derive(Debug, Error)]
#[error("{0}")]
pub struct AuthRefused(String);

impl SwiftStore {
    /// Authenticates and makes sure the container exists (creating it when missing).
    pub fn new(settings: &SwiftSettings) -> Result<SwiftStore, StorageError> {
        Self::with_retry(settings, Retry::new(ATTEMPTS, BACKOFF, MAX_BACKOFF))
    }

    fn with_retry(settings: &SwiftSettings, retry: Retry) -> Result<SwiftStore, StorageError> {
        let describe = format!("swift container {} at {}", settings.container, settings.auth_url);
        let bad = |message: String| StorageError::Backend { store: describe.clone(), message, source: None };
        if settings.container.is_empty() || settings.container.contains('/') {
            return Err(bad(format!(
                "invalid container name {:?}; set s3_bucket in the profile to a name without '/'",
                settings.container
            )));
        }
        if settings.segment_size < MIN_SEGMENT_SIZE {
            return Err(bad(format!("segment size {} is below Swift's minimum of 1 MiB", settings.segment_size)));
        }
        if settings.manifest_segments < 2 {
            return Err(bad("a manifest must be allowed at least 2 segments".into()));
        }
        let client = Client::builder()
            .user_agent(concat!("bakthat/", env!("CARGO_PKG_VERSION")))
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .tcp_keepalive(Duration::from_secs(30))
            .danger_accept_invalid_certs(settings.insecure)
            .build()
            .map_err(|e| StorageError::Backend {
                store: describe.clone(),
                message: "cannot set up the HTTP client".into(),
                source: Some(Box::new(e)),
            })?;
        let store = SwiftStore {
            inner: Arc::new(Inner {
                segments_container: format!("{}_segments", settings.container),
                settings: settings.clone(),
                client,
                describe,
                session: Mutex::new(None),
                segments_ready: AtomicBool::new(false),
                retry,
            }),
        };
        store.inner.ensure_container(&store.inner.settings.container)?;
        Ok(store)
    }

    /// The container that holds the segments of large objects.
    pub fn segments_container(&self) -> &str {
        &self.inner.segments_container
    }
}

/// An uploaded segment (or nested manifest), as a manifest names it.
#[derive(Debug, Clone)]
struct Segment {
    /// `<segments container>/<name>`, without the leading `/`.
    path: String,
    etag: String,
    size: u64,
}

impl Inner {
    fn store(&self) -> String {
        self.describe.clone()
    }

    fn backend_err(&self, message: String) -> StorageError {
        StorageError::Backend { store: self.store(), message, source: None }
    }

    fn auth_err(&self, message: String) -> StorageError {
        StorageError::Auth { store: self.store(), source: Box::new(AuthRefused(message)) }
    }

    // ---- transport ------------------------------------------------------------------------------------------------

    /// Sends a request built afresh for each attempt, retrying transient failures ([`Inner::retry`]). Any other
    /// response, error statuses included, is returned for the caller to judge.
    fn exec(
        &self,
        what: &str,
        build: &dyn Fn() -> Result<RequestBuilder, StorageError>,
    ) -> Result<Response, StorageError> {
        let result = self.retry.run(|n| {
            let failed = match build().map_err(Attempt::Final)?.send() {
                Ok(resp) if retryable(resp.status()) => Attempt::Status(Box::new(resp)),
                Ok(resp) => return Ok(resp),
                Err(e) if e.is_builder() || e.is_redirect() => Attempt::Final(StorageError::Backend {
                    store: self.store(),
                    message: format!("{what}: cannot make the request"),
                    source: Some(Box::new(e)),
                }),
                Err(e) if is_certificate_error(&e) => Attempt::Final(StorageError::Backend {
                    store: self.store(),
                    message: format!(
                        "{what}: the server's TLS certificate is not trusted; add its CA to the system CA bundle \
                         (or point SSL_CERT_FILE at it), or set swift_insecure: true in the profile"
                    ),
                    source: Some(Box::new(e)),
                }),
                Err(e) => Attempt::Transport(e),
            };
            match &failed {
                Attempt::Status(r) => tracing::debug!("{}: {what}: attempt {n}: {}", self.describe, r.status()),
                Attempt::Transport(e) => tracing::debug!("{}: {what}: attempt {n}: {e}", self.describe),
                Attempt::Final(_) => {}
            }
            Err(failed)
        });
        let attempts = self.retry.attempts;
        match result {
            Ok(resp) => Ok(resp),
            Err(Attempt::Final(e)) => Err(e),
            Err(Attempt::Status(resp)) => {
                let status = resp.status();
                Err(self.backend_err(format!(
                    "{what}: the server answered {status} {attempts} times{}; try again later",
                    snippet(*resp)
                )))
            }
            Err(Attempt::Transport(e)) => {
                let kind = if e.is_timeout() { io::ErrorKind::TimedOut } else { io::ErrorKind::ConnectionAborted };
                Err(StorageError::Io {
                    store: self.store(),
                    key: format!("{what} failed {attempts} times; check the network and auth_url"),
                    source: io::Error::new(kind, e),
                })
            }
        }
    }

    /// Like [`Inner::exec`], with the token: authenticates when needed and once more on a 401.
    fn call(
        &self,
        what: &str,
        build: &dyn Fn(&Session) -> Result<RequestBuilder, StorageError>,
    ) -> Result<Response, StorageError> {
        let session = self.session(None)?;
        let resp = self.exec(what, &|| build(&session))?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let session = self.session(Some(&session.token))?;
        let resp = self.exec(what, &|| build(&session))?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            return Err(self.auth_err(format!(
                "{what}: a fresh token from {} was refused (401); check that the user may use the account, and \
                 access_key, secret_key and auth_url",
                self.settings.auth_url
            )));
        }
        Ok(resp)
    }

    /// The cached session, or a new one when there is none or when the cached token is `stale`.
    fn session(&self, stale: Option<&str>) -> Result<Arc<Session>, StorageError> {
        let mut cached = self.session.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = cached.as_ref() {
            if stale != Some(s.token.as_str()) {
                return Ok(s.clone());
            }
        }
        let fresh = Arc::new(self.authenticate()?);
        *cached = Some(fresh.clone());
        Ok(fresh)
    }

    fn request(&self, session: &Session, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, format!("{}/{path}", session.storage_url)).header("X-Auth-Token", &session.token)
    }

    /// `container/key` URL-encoded, relative to the storage URL.
    fn object_path(&self, container: &str, name: &str) -> String {
        format!("{}/{}", enc(container), enc_path(name))
    }

    // ---- containers and listings --------------------------------------------------------------------------------

    fn ensure_container(&self, container: &str) -> Result<(), StorageError> {
        let path = enc(container);
        let what = format!("checking container {container}");
        let resp = self.call(&what, &|s| Ok(self.request(s, Method::HEAD, &path)))?;
        if resp.status().is_success() {
            return Ok(());
        }
        if resp.status() != StatusCode::NOT_FOUND {
            return Err(self.status_err(resp, &what));
        }
        let what = format!("creating container {container}");
        let resp = self.call(&what, &|s| Ok(self.request(s, Method::PUT, &path).header(CONTENT_LENGTH, "0")))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(self.status_err(resp, &what))
        }
    }

    fn ensure_segments_container(&self) -> Result<(), StorageError> {
        if !self.segments_ready.load(Ordering::Relaxed) {
            self.ensure_container(&self.segments_container)?;
            self.segments_ready.store(true, Ordering::Relaxed);
        }
        Ok(())
    }

    // ---- objects --------------------------------------------------------------------------------------------------

    /// An error for an unexpected status.
    fn status_err(&self, resp: Response, what: &str) -> StorageError {
        let status = resp.status();
        let hint = match status {
            StatusCode::FORBIDDEN => "; the user lacks permission on this account or container (check its ACLs)",
            StatusCode::INSUFFICIENT_STORAGE => "; the cluster is out of space",
            StatusCode::PAYLOAD_TOO_LARGE => "; the object exceeds the cluster's size limit",
            _ => "",
        };
        self.backend_err(format!("{what}: the server answered {status}{}{hint}", snippet(resp)))
    }

    /// PUTs a spooled body (retried from its start on failure).
    fn put(&self, what: &str, path: &str, body: &Sealed, headers: &HeaderMap) -> Result<Response, StorageError> {
        let timeout = TIMEOUT + Duration::from_secs(body.len() / MIN_RATE);
        self.call(what, &|s| {
            let body = body.body().map_err(|e| StorageError::io(self.store(), what, e))?;
            Ok(self
                .request(s, Method::PUT, path)
                .headers(headers.clone())
                .header("Content-Type", "application/octet-stream")
                .timeout(timeout)
                .body(body))
        })
    }

    fn put_segment(&self, name: &str, body: &Sealed) -> Result<Segment, StorageError> {
        let path = self.object_path(&self.segments_container, name);
        let what = format!("uploading segment {name}");
        let resp = self.put(&what, &path, body, &HeaderMap::new())?;
        if !resp.status().is_success() {
            return Err(self.status_err(resp, &what));
        }
        let etag = header_str(resp.headers(), "Etag").unwrap_or_default().trim_matches('"').to_string();
        Ok(Segment { path: format!("{}/{name}", self.segments_container), etag, size: body.len() })
    }

    /// Writes an SLO manifest naming `segments` to `container/name` (the answer carries the manifest's etag).
    fn put_manifest(
        &self,
        container: &str,
        name: &str,
        segments: &[Segment],
        headers: &HeaderMap,
    ) -> Result<Response, StorageError> {
        let manifest: Vec<Value> = segments
            .iter()
            .map(|s| json!({"path": format!("/{}", s.path), "etag": s.etag, "size_bytes": s.size}))
            .collect();
        let body = Sealed::Mem(serde_json::to_vec(&manifest).map_err(|e| self.backend_err(e.to_string()))?);
        let path = format!("{}?multipart-manifest=put", self.object_path(container, name));
        let what = format!("writing the manifest of {name}");
        let resp = self.put(&what, &path, &body, headers)?;
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(self.status_err(resp, &what))
        }
    }

    /// Deletes objects of the segments container, ignoring failures (for aborted uploads).
    fn delete_segments_quietly(&self, segments: &[Segment]) {
        for seg in segments {
            let name = seg.path.split_once('/').map_or(seg.path.as_str(), |(_, n)| n);
            let path = self.object_path(&self.segments_container, name);
            if let Err(e) = self.call("deleting an aborted segment", &|s| Ok(self.request(s, Method::DELETE, &path))) {
                tracing::warn!("{}: cannot delete segment {name} of an aborted upload: {e}", self.describe);
            }
        }
    }

    fn info_from_headers(&self, key: &str, h: &HeaderMap) -> ObjectInfo {
        let size = header_str(h, CONTENT_LENGTH.as_str()).and_then(|v| v.parse().ok()).unwrap_or(0);
        let modified = header_str(h, LAST_MODIFIED.as_str())
            .and_then(|v| chrono::DateTime::parse_from_rfc2822(&v).ok())
            .map(|t| t.timestamp())
            .or_else(|| header_str(h, "X-Timestamp").and_then(|v| v.parse::<f64>().ok()).map(|t| t as i64));
        ObjectInfo { key: key.to_string(), size, modified, storage_class: None }
    }

    /// HEAD of an object: `None` when missing.
    fn head_raw(&self, key: &str) -> Result<Option<Response>, StorageError> {
        let path = self.object_path(&self.settings.container, key);
        let what = format!("reading the metadata of {key}");
        let resp = self.call(&what, &|s| Ok(self.request(s, Method::HEAD, &path)))?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => Ok(Some(resp)),
            _ => Err(self.status_err(resp, &what)),
        }
    }

    /// GET of an object from `start` (a `Range` request when not 0).
    fn open(&self, key: &str, start: u64) -> Result<Response, StorageError> {
        let path = self.object_path(&self.settings.container, key);
        let what = format!("downloading {key}");
        let resp = self.call(&what, &|s| {
            let r = self.request(s, Method::GET, &path);
            Ok(if start > 0 { r.header(RANGE, format!("bytes={start}-")) } else { r })
        })?;
        match resp.status() {
            StatusCode::NOT_FOUND => Err(StorageError::NotFound { store: self.store(), key: key.to_string() }),
            s if s.is_success() => Ok(resp),
            _ => Err(self.status_err(resp, &what)),
        }
    }
}

impl Backend for SwiftStore {
    fn kind(&self) -> &'static str {
        "swift"
    }

    fn describe(&self) -> String {
        self.inner.describe.clone()
    }

    fn create(&self, key: &str, opts: &PutOptions) -> Result<Box<dyn Upload>, StorageError> {
        check_key(key)?;
        let mut headers = HeaderMap::new();
        for (name, value) in &opts.metadata {
            let bad = || StorageError::Backend {
                store: self.describe(),
                message: format!("metadata {name:?} cannot be sent as an HTTP header (use ASCII names and values)"),
                source: None,
            };
            let name = HeaderName::from_bytes(format!("X-Object-Meta-{name}").as_bytes()).map_err(|_| bad())?;
            headers.insert(name, HeaderValue::from_str(value).map_err(|_| bad())?);
        }
        Ok(Box::new(SwiftUpload {
            inner: self.inner.clone(),
            key: key.to_string(),
            headers,
            current: Spool::default(),
            total: 0,
            uploader: None,
            segments: Vec::new(),
            committed: false,
        }))
    }

    fn get(&self, key: &str) -> Result<Box<dyn Read + Send>, StorageError> {
        check_key(key)?;
        let resp = self.inner.open(key, 0)?;
        let size = header_str(resp.headers(), CONTENT_LENGTH.as_str()).and_then(|v| v.parse().ok());
        let etag = header_str(resp.headers(), ETAG.as_str());
        Ok(Box::new(ObjectReader {
            inner: self.inner.clone(),
            key: key.to_string(),
            resp: Some(resp),
            pos: 0,
            size,
            etag,
            failures: 0,
        }))
    }

    fn get_range(&self, key: &str, start: u64, len: u64) -> Result<Vec<u8>, StorageError> {
        check_key(key)?;
        if len == 0 {
            return match self.head(key)? {
                Some(_) => Ok(Vec::new()),
                None => Err(StorageError::NotFound { store: self.describe(), key: key.to_string() }),
            };
        }
        let inner = &self.inner;
        let path = inner.object_path(&inner.settings.container, key);
        let what = format!("downloading part of {key}");
        let end = start.saturating_add(len) - 1;
        let resp = inner
            .call(&what, &|s| Ok(inner.request(s, Method::GET, &path).header(RANGE, format!("bytes={start}-{end}"))))?;
        let status = resp.status();
        let skip = match status {
            StatusCode::NOT_FOUND => return Err(StorageError::NotFound { store: self.describe(), key: key.into() }),
            StatusCode::RANGE_NOT_SATISFIABLE => return Ok(Vec::new()),
            StatusCode::PARTIAL_CONTENT => 0,
            // A server that ignores Range sends the whole object.
            StatusCode::OK => start,
            _ => return Err(inner.status_err(resp, &what)),
        };
        let mut out = Vec::new();
        let mut body = resp;
        io::copy(&mut (&mut body).take(skip), &mut io::sink())
            .and_then(|_| (&mut body).take(len).read_to_end(&mut out))
            .map_err(|e| StorageError::io(self.describe(), key, e))?;
        Ok(out)
    }

    fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StorageError> {
        check_key(key)?;
        Ok(self.inner.head_raw(key)?.map(|r| self.inner.info_from_headers(key, r.headers())))
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        self.list_after(prefix, "")
    }

    fn list_after(&self, prefix: &str, start_after: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        let container = self.inner.settings.container.clone();
        let mut out: Vec<ObjectInfo> = self
            .inner
            .list_container_after(&container, prefix, start_after)?
            .unwrap_or_default()
            .into_iter()
            .map(|l| ObjectInfo { key: l.name, size: l.bytes, modified: l.last_modified, storage_class: None })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        check_key(key)?;
        let inner = &self.inner;
        let Some(head) = inner.head_raw(key)? else { return Ok(()) };
        let slo = header_str(head.headers(), "X-Static-Large-Object").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let mut path = inner.object_path(&inner.settings.container, key);
        if slo {
            path.push_str("?multipart-manifest=delete");
        }
        let what = format!("deleting {key}");
        let resp =
            inner.call(&what, &|s| Ok(inner.request(s, Method::DELETE, &path).header("Accept", "application/json")))?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(()),
            s if s.is_success() && slo => {
                // A bulk delete answers 200 and tells in the body how each part went.
                let report: Value = read_json(resp).map_err(|e| StorageError::io(self.describe(), key, e))?;
                let status = report["Response Status"].as_str().unwrap_or("");
                let errors = report["Errors"].as_array().map_or(0, Vec::len);
                if status.starts_with('2') && errors == 0 {
                    Ok(())
                } else {
                    Err(inner.backend_err(format!("{what} and its segments: {status}, errors: {}", report["Errors"])))
                }
            }
            s if s.is_success() => Ok(()),
            _ => Err(inner.status_err(resp, &what)),
        }
    }

    fn cleanup(&self) -> Result<u64, StorageError> {
        self.remove_leftover_segments()
    }
}

// ---- helpers --------------------------------------------------------------------------------------------------------

trait JsonBody {
    fn json_body(self, v: &Value) -> RequestBuilder;
}

impl JsonBody for RequestBuilder {
    fn json_body(self, v: &Value) -> RequestBuilder {
        self.header("Content-Type", "application/json").body(v.to_string())
    }
}

/// Whether a request failed on the server's certificate (retrying cannot help).
fn is_certificate_error(e: &reqwest::Error) -> bool {
    let mut cur: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = cur {
        if err.to_string().contains("certificate") {
            return true;
        }
        cur = err.source();
    }
    false
}

fn retryable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 429 | 498 | 500 | 502 | 503 | 504)
}

/// `: <first 200 characters of the body>` for error messages, or nothing.
fn snippet(resp: Response) -> String {
    let mut text = String::new();
    let _ = resp.take(4096).read_to_string(&mut text);
    // HTML error pages: keep the words.
    let mut plain = String::with_capacity(text.len());
    let mut in_tag = false;
    for c in text.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                plain.push(' ');
            }
            c if !in_tag => plain.push(c),
            _ => {}
        }
    }
    let text = plain.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        String::new()
    } else {
        let cut: String = text.chars().take(200).collect();
        format!(" ({cut})")
    }
}

fn read_json(resp: Response) -> io::Result<Value> {
    let mut body = Vec::new();
    resp.take(64 << 20).read_to_end(&mut body)?;
    serde_json::from_slice(&body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

fn header_str(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// [`enc`] for each `/`-separated part.
fn enc_path(s: &str) -> String {
    s.split('/').map(enc).collect::<Vec<_>>().join("/")
}

fn random_hex() -> String {
    let mut rnd = [0u8; 6];
    if getrandom::getrandom(&mut rnd).is_err() {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        rnd[..4].copy_from_slice(&nanos.to_le_bytes());
    }
    rnd.iter().map(|b| format!("{b:02x}")).collect()
}

mod auth;
mod download;
mod listing;
mod upload;

#[cfg(test)]
use auth::{keystone_url, split_user};
use download::ObjectReader;
#[cfg(test)]
use listing::parse_listing_time;
use upload::{Sealed, Spool, SwiftUpload};

#[cfg(test)]
mod tests;
