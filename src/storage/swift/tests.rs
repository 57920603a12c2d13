//! The Swift client against a tiny fake HTTP server (Keystone v2/v3, re-auth, retries, resumed downloads). The real
//! Swift all-in-one runs the conformance tests in tests/it/backends.rs.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::AtomicUsize;

use super::*;
use crate::storage::retry::tests::Recorded;

#[derive(Debug, Clone)]
struct Req {
    method: String,
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Req {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Close the connection after this many body bytes.
    cut_at: Option<usize>,
}

impl Reply {
    fn new(status: u16) -> Reply {
        Reply { status, headers: Vec::new(), body: Vec::new(), cut_at: None }
    }

    fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    fn body(mut self, body: impl Into<Vec<u8>>) -> Reply {
        self.body = body.into();
        self
    }

    fn json(self, v: Value) -> Reply {
        self.header("Content-Type", "application/json").body(v.to_string())
    }
}

/// A server on 127.0.0.1:0 answering each request with `handler(request, base_url)`, one request per connection.
struct Fake {
    url: String,
    log: Arc<Mutex<Vec<Req>>>,
}

impl Fake {
    fn start(handler: impl Fn(&Req, &str) -> Reply + Send + Sync + 'static) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let log = Arc::new(Mutex::new(Vec::new()));
        let (base, seen) = (url.clone(), log.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let _ = answer(conn, &base, &handler, &seen);
            }
        });
        Fake { url, log }
    }

    fn requests(&self) -> Vec<Req> {
        self.log.lock().unwrap().clone()
    }

    fn count(&self, method: &str, path: &str) -> usize {
        self.requests().iter().filter(|r| r.method == method && r.path == path).count()
    }
}

fn answer(conn: TcpStream, base: &str, handler: &dyn Fn(&Req, &str) -> Reply, log: &Mutex<Vec<Req>>) -> io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    let req = Req { method, path, headers, body };
    log.lock().unwrap().push(req.clone());
    let reply = handler(&req, base);
    let mut out = format!("HTTP/1.1 {} Fake\r\nConnection: close\r\n", reply.status);
    for (k, v) in &reply.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if !reply.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-length")) {
        out.push_str(&format!("Content-Length: {}\r\n", reply.body.len()));
    }
    out.push_str("\r\n");
    let mut conn = conn;
    conn.write_all(out.as_bytes())?;
    if req.method != "HEAD" {
        conn.write_all(&reply.body[..reply.cut_at.unwrap_or(reply.body.len())])?;
    }
    conn.flush()
}

fn settings(auth_url: String, version: AuthVersion) -> SwiftSettings {
    SwiftSettings {
        auth_url,
        auth_version: version,
        user: "acct:user".into(),
        key: "secret".into(),
        container: "cont".into(),
        ..SwiftSettings::default()
    }
}

fn open(s: &SwiftSettings) -> Result<SwiftStore, StorageError> {
    // Retries wait through a recorder: the tests never sleep.
    let retry = Retry::new(ATTEMPTS, BACKOFF, MAX_BACKOFF).with_sleep(Arc::new(Recorded::default()));
    SwiftStore::with_retry(s, retry)
}

/// A v1 auth endpoint handing out `tok1`, `tok2`, … and an account at `/v1/AUTH_t`.
fn v1_auth(req: &Req, base: &str, issued: &AtomicUsize) -> Option<Reply> {
    if req.path != "/auth/v1.0" {
        return None;
    }
    if req.header("X-Auth-User") != Some("acct:user") || req.header("X-Auth-Key") != Some("secret") {
        return Some(Reply::new(401).body("Unauthorized"));
    }
    let n = issued.fetch_add(1, Ordering::SeqCst) + 1;
    Some(
        Reply::new(200)
            .header("X-Storage-Url", &format!("{base}/v1/AUTH_t"))
            .header("X-Auth-Token", &format!("tok{n}")),
    )
}

#[test]
fn keystone_v2_sends_tenant_and_user_and_picks_the_region_endpoint() {
    let fake = Fake::start(|req, base| match (req.method.as_str(), req.path.as_str()) {
        ("POST", "/v2.0/tokens") => Reply::new(200).json(json!({"access": {
            "token": {"id": "tok-v2", "expires": "2099-01-01T00:00:00Z"},
            "serviceCatalog": [
                {"type": "identity", "endpoints": [{"region": "RegionTwo", "publicURL": format!("{base}/identity")}]},
                {"type": "object-store", "name": "swift", "endpoints": [
                    {"region": "RegionOne", "publicURL": format!("{base}/v1/AUTH_one")},
                    {"region": "RegionTwo", "publicURL": format!("{base}/v1/AUTH_two/"),
                     "internalURL": format!("{base}/internal")}]}]}})),
        ("HEAD", "/v1/AUTH_two/cont") if req.header("X-Auth-Token") == Some("tok-v2") => Reply::new(204),
        _ => Reply::new(400),
    });
    let mut s = settings(format!("{}/v2.0/", fake.url), AuthVersion::V2);
    s.user = "tenant:user".into();
    s.region = Some("RegionTwo".into());
    open(&s).unwrap();
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    let auth = reqs[0].json();
    assert_eq!(auth["auth"]["tenantName"], "tenant");
    assert_eq!(auth["auth"]["passwordCredentials"], json!({"username": "user", "password": "secret"}));
    assert_eq!(reqs[0].header("Content-Type"), Some("application/json"));

    // No region asked for, or one the catalog lacks: the first object-store endpoint.
    s.region = Some("us-east-1".into());
    let fake1 = Fake::start(|req, base| match (req.method.as_str(), req.path.as_str()) {
        ("POST", "/v2.0/tokens") => Reply::new(200).json(json!({"access": {"token": {"id": "t"}, "serviceCatalog": [
            {"type": "object-store", "endpoints": [{"region": "RegionOne", "publicURL": format!("{base}/v1/AUTH_one")}]}
        ]}})),
        ("HEAD", "/v1/AUTH_one/cont") => Reply::new(204),
        _ => Reply::new(400),
    });
    s.auth_url = format!("{}/v2.0", fake1.url);
    open(&s).unwrap();
    assert_eq!(fake1.count("HEAD", "/v1/AUTH_one/cont"), 1);
}

#[test]
fn keystone_v3_uses_the_subject_token_the_public_endpoint_and_domains() {
    let fake = Fake::start(|req, base| match (req.method.as_str(), req.path.as_str()) {
        ("POST", "/v3/auth/tokens") => Reply::new(201).header("X-Subject-Token", "tok-v3").json(json!({"token": {
            "catalog": [{"type": "object-store", "endpoints": [
                {"interface": "internal", "region_id": "R1", "url": format!("{base}/internal")},
                {"interface": "public", "region_id": "R1", "region": "R1", "url": format!("{base}/v1/AUTH_p")},
                {"interface": "admin", "region_id": "R1", "url": format!("{base}/admin")}]}]}})),
        // The container is missing and gets created.
        ("HEAD", "/v1/AUTH_p/cont") => Reply::new(404),
        ("PUT", "/v1/AUTH_p/cont") if req.header("X-Auth-Token") == Some("tok-v3") => Reply::new(201),
        _ => Reply::new(400),
    });
    let mut s = settings(format!("{}/v3", fake.url), AuthVersion::V3);
    s.user = "proj:user".into();
    s.user_domain = Some("users".into());
    s.region = Some("R1".into());
    open(&s).unwrap();
    let reqs = fake.requests();
    assert_eq!(reqs.iter().map(|r| r.method.as_str()).collect::<Vec<_>>(), ["POST", "HEAD", "PUT"]);
    let auth = &reqs[0].json()["auth"];
    assert_eq!(auth["identity"]["methods"], json!(["password"]));
    assert_eq!(
        auth["identity"]["password"]["user"],
        json!({"name": "user", "domain": {"name": "users"}, "password": "secret"})
    );
    assert_eq!(auth["scope"]["project"], json!({"name": "proj", "domain": {"name": "Default"}}));

    // Refused credentials are an Auth error that names what to check.
    let refused = Fake::start(|_, _| Reply::new(401).json(json!({"error": {"code": 401, "title": "Unauthorized"}})));
    s.auth_url = format!("{}/v3", refused.url);
    let err = open(&s).expect_err("refused");
    assert!(matches!(err, StorageError::Auth { .. }), "{err:?}");
    let text = crate::error_chain(&err);
    assert!(text.contains("auth_url") && text.contains("secret_key") && text.contains("PROJECT:USER"), "{text}");
}

#[test]
fn keystone_catalog_without_object_store_is_a_clear_error() {
    let fake = Fake::start(|_, _| {
        Reply::new(201).header("X-Subject-Token", "t").json(json!({"token": {"catalog": [{"type": "compute"}]}}))
    });
    let err = open(&settings(format!("{}/v3", fake.url), AuthVersion::V3)).expect_err("no endpoint");
    assert!(crate::error_chain(&err).contains("no public object-store endpoint"), "{}", crate::error_chain(&err));
}

#[test]
fn a_401_reauthenticates_once_and_a_second_401_is_an_auth_error() {
    let issued = Arc::new(AtomicUsize::new(0));
    let n = issued.clone();
    let fake = Fake::start(move |req, base| {
        if let Some(r) = v1_auth(req, base, &n) {
            return r;
        }
        let token = req.header("X-Auth-Token").unwrap_or("");
        match (req.method.as_str(), req.path.as_str()) {
            ("HEAD", "/v1/AUTH_t/cont") => Reply::new(204),
            // The first token "expires" for this object; a fresh one works.
            ("HEAD", "/v1/AUTH_t/cont/a") if token == "tok1" => Reply::new(401),
            ("HEAD", "/v1/AUTH_t/cont/a") => Reply::new(200).header("Content-Length", "5"),
            ("HEAD", "/v1/AUTH_t/cont/b") => Reply::new(401),
            _ => Reply::new(400),
        }
    });
    let store = open(&settings(format!("{}/auth/v1.0", fake.url), AuthVersion::V1)).unwrap();
    assert_eq!(store.head("a").unwrap().map(|i| i.size), Some(5));
    assert_eq!(issued.load(Ordering::SeqCst), 2, "one re-authentication");
    assert_eq!(store.head("a").unwrap().map(|i| i.size), Some(5), "the fresh token is cached");
    assert_eq!(issued.load(Ordering::SeqCst), 2);

    let err = store.head("b").expect_err("401 twice");
    assert!(matches!(err, StorageError::Auth { .. }), "{err:?}");
    assert!(crate::error_chain(&err).contains("auth_url"), "{}", crate::error_chain(&err));
    assert_eq!(fake.count("HEAD", "/v1/AUTH_t/cont/b"), 2, "one retry after re-auth, no more");

    // A wrong key is refused at the auth endpoint.
    let mut wrong = settings(format!("{}/auth/v1.0", fake.url), AuthVersion::V1);
    wrong.key = "nope".into();
    let err = open(&wrong).expect_err("wrong key");
    assert!(matches!(err, StorageError::Auth { .. }), "{err:?}");
    let text = crate::error_chain(&err);
    assert!(text.contains("access_key") && text.contains("ACCOUNT:USER") && text.contains("auth_url"), "{text}");
}

#[test]
fn server_errors_are_retried_then_reported() {
    let flaky = Arc::new(AtomicUsize::new(0));
    let (issued, f) = (Arc::new(AtomicUsize::new(0)), flaky.clone());
    let fake = Fake::start(move |req, base| {
        if let Some(r) = v1_auth(req, base, &issued) {
            return r;
        }
        match (req.method.as_str(), req.path.as_str()) {
            ("HEAD", "/v1/AUTH_t/cont") => Reply::new(204),
            ("HEAD", "/v1/AUTH_t/cont/flaky") if f.fetch_add(1, Ordering::SeqCst) < 2 => Reply::new(503),
            ("HEAD", "/v1/AUTH_t/cont/flaky") => Reply::new(200).header("Content-Length", "7"),
            ("HEAD", "/v1/AUTH_t/cont/down") => Reply::new(503),
            ("GET", "/v1/AUTH_t/cont/forbidden") => Reply::new(403).body("no access"),
            _ => Reply::new(400),
        }
    });
    let store = open(&settings(format!("{}/auth/v1.0", fake.url), AuthVersion::V1)).unwrap();
    assert_eq!(store.head("flaky").unwrap().map(|i| i.size), Some(7));
    assert_eq!(flaky.load(Ordering::SeqCst), 3);
    let err = store.head("down").expect_err("always 503");
    assert!(matches!(err, StorageError::Backend { .. }), "{err:?}");
    assert!(err.to_string().contains("503") && err.to_string().contains("4 times"), "{err}");
    assert_eq!(fake.count("HEAD", "/v1/AUTH_t/cont/down"), ATTEMPTS as usize);
    let Err(err) = store.get("forbidden") else { panic!("403 is an error") };
    assert!(err.to_string().contains("403") && err.to_string().contains("permission"), "{err}");
}

#[test]
fn an_unreachable_server_is_a_transient_io_error() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = open(&settings(format!("http://127.0.0.1:{port}/auth/v1.0"), AuthVersion::V1)).expect_err("refused");
    assert!(matches!(err, StorageError::Io { .. }), "{err:?}");
    assert!(err.is_transient(), "{err:?}");
    assert!(crate::error_chain(&err).contains("auth_url"), "{}", crate::error_chain(&err));
}

#[test]
fn a_download_resumes_after_a_broken_connection() {
    let data: Vec<u8> = (0..100u8).collect();
    let (issued, d) = (Arc::new(AtomicUsize::new(0)), data.clone());
    let fake = Fake::start(move |req, base| {
        if let Some(r) = v1_auth(req, base, &issued) {
            return r;
        }
        let etag = if req.path.ends_with("/changing") && req.header("Range").is_some() { "\"e2\"" } else { "\"e1\"" };
        match (req.method.as_str(), req.path.as_str(), req.header("Range")) {
            ("HEAD", "/v1/AUTH_t/cont", _) => Reply::new(204),
            ("GET", _, None) => Reply { cut_at: Some(40), ..Reply::new(200).header("ETag", etag).body(d.clone()) },
            ("GET", _, Some(range)) => {
                let start: usize = range.trim_start_matches("bytes=").trim_end_matches('-').parse().unwrap();
                Reply::new(206)
                    .header("ETag", etag)
                    .header("Content-Range", &format!("bytes {start}-99/100"))
                    .body(d[start..].to_vec())
            }
            _ => Reply::new(400),
        }
    });
    let store = open(&settings(format!("{}/auth/v1.0", fake.url), AuthVersion::V1)).unwrap();
    let mut got = Vec::new();
    store.get("obj").unwrap().read_to_end(&mut got).unwrap();
    assert_eq!(got, data);
    let ranges: Vec<_> = fake.requests().iter().filter_map(|r| r.header("Range").map(str::to_string)).collect();
    assert_eq!(ranges, ["bytes=40-"]);

    // The object changed between the two requests: an error, not a splice of two versions.
    let err = store.get("changing").unwrap().read_to_end(&mut Vec::new()).expect_err("etag changed");
    assert!(err.to_string().contains("changed"), "{err}");
}

#[test]
fn small_uploads_are_one_put_with_metadata() {
    let issued = Arc::new(AtomicUsize::new(0));
    let fake = Fake::start(move |req, base| {
        if let Some(r) = v1_auth(req, base, &issued) {
            return r;
        }
        match (req.method.as_str(), req.path.as_str()) {
            ("HEAD", "/v1/AUTH_t/cont") => Reply::new(204),
            ("PUT", "/v1/AUTH_t/cont/a%20b%2B.tgz") => {
                Reply::new(201).header("Etag", "x").header("Last-Modified", "Wed, 15 Jan 2025 10:00:00 GMT")
            }
            _ => Reply::new(400),
        }
    });
    let store = open(&settings(format!("{}/auth/v1.0", fake.url), AuthVersion::V1)).unwrap();
    let opts = PutOptions { metadata: vec![("Client".into(), "host1".into())], ..PutOptions::default() };
    let info = store.put_bytes("a b+.tgz", &vec![7u8; 3 << 20], &opts).unwrap();
    assert_eq!(info.size, 3 << 20);
    assert_eq!(info.modified, Some(1736935200));
    let put = fake.requests().into_iter().find(|r| r.method == "PUT").unwrap();
    assert_eq!(put.body.len(), 3 << 20, "spilled to a file and sent whole");
    assert_eq!(put.header("X-Object-Meta-Client"), Some("host1"));
}

#[test]
fn settings_parsing_helpers() {
    assert_eq!(AuthVersion::from_setting(Some("1"), "x"), Ok(AuthVersion::V1));
    assert_eq!(AuthVersion::from_setting(Some("2.0"), "x"), Ok(AuthVersion::V2));
    assert_eq!(AuthVersion::from_setting(Some("3"), "x"), Ok(AuthVersion::V3));
    assert!(AuthVersion::from_setting(Some("4"), "x").unwrap_err().contains("use 1"));
    assert_eq!(AuthVersion::from_setting(None, "https://k/v3/"), Ok(AuthVersion::V3));
    assert_eq!(AuthVersion::from_setting(None, "https://k/v2.0"), Ok(AuthVersion::V2));
    assert_eq!(AuthVersion::from_setting(None, "https://s/auth/v1.0"), Ok(AuthVersion::V1));
    assert_eq!(keystone_url("https://k/v3/", "auth/tokens"), "https://k/v3/auth/tokens");
    assert_eq!(keystone_url("https://k/v2.0/tokens", "tokens"), "https://k/v2.0/tokens");
    assert_eq!(enc("a b/c+ü~"), "a%20b%2Fc%2B%C3%BC~");
    assert_eq!(enc_path("k/slo/1/00000001"), "k/slo/1/00000001");
    assert_eq!(parse_listing_time("2025-01-15T10:00:00.123450"), Some(1736935200));
    assert_eq!(split_user("t:u:v"), (Some("t"), "u:v"));
    assert_eq!(split_user("u"), (None, "u"));
    let s = SwiftSettings { key: "hunter2".into(), ..SwiftSettings::default() };
    assert!(!format!("{s:?}").contains("hunter2"));
    let err = SwiftStore::new(&SwiftSettings { container: "a/b".into(), ..SwiftSettings::default() }).unwrap_err();
    assert!(err.to_string().contains("s3_bucket"), "{err}");
}
