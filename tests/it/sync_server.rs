//! The 0.6 sync server: a replay of the requests bakthat 0.6 sends (reference §11), authentication on every route,
//! and a round trip of this bakthat between two homes through it (S3 on moto, started by scripts/test.sh).

use crate::common;

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bakthat::sync::server::{run, tls_config, Limits, Options, ServerDb};
use common::cli::Home;
use common::moto;
use serde_json::{json, Value};

struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        Server::start_with(None, Limits::default())
    }

    /// With `tls`: HTTPS with this (certificate, key). `server::run` on a runtime of the test's, stopped on drop.
    fn start_with(tls: Option<(PathBuf, PathBuf)>, limits: Limits) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let db = ServerDb::open(&dir.path().join("server.sqlite")).unwrap();
        db.add_user("alice", "s3cret").unwrap();
        db.add_user("bob", "other").unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let options = Options { tls: tls.map(|(cert, key)| tls_config(&cert, &key).unwrap()), limits };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                listener.set_nonblocking(true).unwrap();
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                run(listener, db, options, async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap()
            })
        });
        Server { addr, stop: Some(stop), thread: Some(thread), dir }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A raw HTTP request, as the 0.6 client (python-requests) sends it; returns the status and the JSON body.
    fn request(&self, method: &str, path: &str, auth: Option<(&str, &str)>, client: &str, body: &str) -> (u16, Value) {
        let mut s = TcpStream::connect(self.addr).unwrap();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAccept-Encoding: gzip, deflate\r\nAccept: */*\r\n\
             User-Agent: python-requests/1.2.3 CPython/2.7.3 Linux/3.2.0\r\ncontent-type: application/json\r\n\
             bakthat-client: {client}\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        if let Some((u, p)) = auth {
            req.push_str(&format!("Authorization: Basic {}\r\n", b64(format!("{u}:{p}").as_bytes())));
        }
        req.push_str("\r\n");
        req.push_str(body);
        s.write_all(req.as_bytes()).unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        let status: u16 = resp.split_whitespace().nth(1).unwrap().parse().unwrap();
        let body = resp.split_once("\r\n\r\n").unwrap().1;
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    }
}

impl Server {
    /// A connection whose reads give up after 10 s.
    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }

    /// Sends `raw` as it is; the answer's status, or `None` if the server closed the connection without one.
    fn raw(&self, raw: &str) -> Option<u16> {
        let mut s = self.connect();
        let _ = s.write_all(raw.as_bytes());
        status_of(&mut s)
    }
}

/// The status of the answer on `s`, or `None` if it ends without one. Panics if neither happens before the read
/// timeout: the server held the connection.
fn status_of(s: &mut TcpStream) -> Option<u16> {
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("the server neither answered nor closed the connection in time (read so far: {answer:?})")
            }
            // A reset after the answer (the server closed with unread bytes): what came before it counts.
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&answer);
    text.strip_prefix("HTTP/1.1 ").and_then(|t| t.get(..3)).and_then(|c| c.parse().ok())
}

/// A request head for `path` with `extra` header lines.
fn head(path: &str, auth: Option<(&str, &str)>, extra: &str) -> String {
    let mut h =
        format!("POST {path} HTTP/1.1\r\nHost: sync\r\ncontent-type: application/json\r\nbakthat-client: h\r\n{extra}");
    if let Some((u, p)) = auth {
        h.push_str(&format!("Authorization: Basic {}\r\n", b64(format!("{u}:{p}").as_bytes())));
    }
    h + "\r\n"
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn b64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A row as bakthat 0.6 sends it: Python 2 `json.dumps` separators, its own row id, tags as a string.
fn row_06(id: i64, stored: &str, last_updated: i64, deleted: bool, client: &str) -> String {
    let name = stored.split('.').next().unwrap();
    format!(
        "{{\"filename\": \"{name}\", \"tags\": \"daily db\", \"metadata\": {{\"is_enc\": true, \"client\": \"{client}\"}}, \
         \"backend\": \"s3\", \"is_deleted\": {deleted}, \"backend_hash\": \"69c02b2e6d9c\", \"last_updated\": \
         {last_updated}, \"stored_filename\": \"{stored}\", \"backup_date\": 1353715225, \"id\": {id}, \"size\": 1024}}"
    )
}

const ALICE: Option<(&str, &str)> = Some(("alice", "s3cret"));

#[test]
fn every_route_requires_valid_credentials() {
    let srv = Server::start();
    let body = "{\"sync_ts\": 0, \"new\": []}";
    for (method, path) in
        [("POST", "/clients"), ("POST", "/backups/sync"), ("GET", "/clients"), ("GET", "/backups"), ("GET", "/nope")]
    {
        for auth in [None, Some(("alice", "wrong")), Some(("nobody", "s3cret")), Some(("bob", "s3cret"))] {
            let (status, _) = srv.request(method, path, auth, "h", body);
            assert_eq!(status, 401, "{method} {path} with {auth:?}");
        }
    }
    assert_eq!(srv.request("POST", "/clients", ALICE, "h", "").0, 200);
    assert_eq!(srv.request("POST", "/backups/sync", ALICE, "h", body).0, 200);
    assert_eq!(srv.request("POST", "/backups/sync", ALICE, "h", "not json").0, 400);
    assert_eq!(srv.request("GET", "/nope", ALICE, "h", "").0, 404);
}

#[test]
fn replay_of_0_6_client_requests() {
    let srv = Server::start();
    // Registration: an empty POST; `_id` is a string; the same client gets the same id again.
    let (status, a) = srv.request("POST", "/clients", ALICE, "host-a", "");
    assert_eq!(status, 200);
    let id = a["_id"].as_str().unwrap().to_string();
    assert_eq!(a["client"], "host-a");
    assert_eq!(srv.request("POST", "/clients", ALICE, "host-a", "").1["_id"], id.as_str());
    assert_ne!(srv.request("POST", "/clients", ALICE, "host-b", "").1["_id"], id.as_str());

    // Host A pushes its row (its local id 1).
    let body = format!(
        "{{\"new\": [{}], \"sync_ts\": 0}}",
        row_06(1, "mydir.20121124000025.tgz.enc", 1353715225, false, "host-a")
    );
    let (status, r) = srv.request("POST", "/backups/sync", ALICE, "host-a", &body);
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["updated"], json!([]), "a client never gets its own pushes back");
    let ts_a = r["sync_ts"].as_i64().unwrap();

    // Host B pushes another backup with the same local id 1; it receives A's row, without any id.
    let body = format!(
        "{{\"new\": [{}], \"sync_ts\": 0}}",
        row_06(1, "other.20121125000000.tgz.enc", 1353801600, false, "host-b")
    );
    let (_, r) = srv.request("POST", "/backups/sync", ALICE, "host-b", &body);
    let ts_b = r["sync_ts"].as_i64().unwrap();
    assert!(ts_b > ts_a, "sync_ts is strictly increasing: {ts_a} then {ts_b}");
    let updated = r["updated"].as_array().unwrap();
    assert_eq!(updated.len(), 1, "{r}");
    let row = &updated[0];
    assert_eq!(row["stored_filename"], "mydir.20121124000025.tgz.enc");
    assert!(row.get("id").is_none() && row.get("_id").is_none() && row.get("meta").is_none(), "{row}");
    assert_eq!(row["tags"], "daily db", "tags go back as a string");
    assert_eq!(row["is_deleted"], false);
    assert_eq!(row["metadata"], json!({"is_enc": true, "client": "host-a"}));

    // A syncs from its sync_ts: it gets B's row only.
    let (_, r) =
        srv.request("POST", "/backups/sync", ALICE, "host-a", &format!("{{\"new\": [], \"sync_ts\": {ts_a}}}"));
    let names: Vec<&str> =
        r["updated"].as_array().unwrap().iter().map(|r| r["stored_filename"].as_str().unwrap()).collect();
    assert_eq!(names, ["other.20121125000000.tgz.enc"]);
    let ts_a = r["sync_ts"].as_i64().unwrap();

    // A pushes an older state of B's row: it is not stored, and the newer row comes back to A.
    let stale = row_06(9, "other.20121125000000.tgz.enc", 1353801000, true, "host-a");
    let (_, r) =
        srv.request("POST", "/backups/sync", ALICE, "host-a", &format!("{{\"new\": [{stale}], \"sync_ts\": {ts_a}}}"));
    assert_eq!(r["updated"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r["updated"][0]["is_deleted"], false);
    assert_eq!(r["updated"][0]["last_updated"], 1353801600);
    let ts_a = r["sync_ts"].as_i64().unwrap();

    // A deletes its own backup (a deleted row with a newer last_updated, is_deleted as 0.6's bool or an int).
    let deleted = row_06(1, "mydir.20121124000025.tgz.enc", 1353800000, true, "host-a")
        .replace("\"is_deleted\": true", "\"is_deleted\": 1");
    let (_, r) = srv.request(
        "POST",
        "/backups/sync",
        ALICE,
        "host-a",
        &format!("{{\"new\": [{deleted}], \"sync_ts\": {ts_a}}}"),
    );
    assert_eq!(r["updated"], json!([]));
    let (_, r) =
        srv.request("POST", "/backups/sync", ALICE, "host-b", &format!("{{\"new\": [], \"sync_ts\": {ts_b}}}"));
    assert_eq!(r["updated"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r["updated"][0]["stored_filename"], "mydir.20121124000025.tgz.enc");
    assert_eq!(r["updated"][0]["is_deleted"], true, "deletions reach the other hosts");

    // Users do not see each other's rows.
    let (_, r) =
        srv.request("POST", "/backups/sync", Some(("bob", "other")), "host-c", "{\"sync_ts\": 0, \"new\": []}");
    assert_eq!(r["updated"], json!([]));
}

// ---- this bakthat, two homes, one server ----

/// A home whose default profile is the moto bucket `bucket` (destination s3), syncing as alice with the server at
/// `url`.
fn home(bucket: &str, url: &str) -> Home {
    let profile = moto::profile_yaml(bucket);
    Home::new(|_| {
        format!("default:\n{profile}  default_destination: s3\nsync:\n  url: {url}\n  username: alice\n  password: s3cret\n")
    })
}

#[test]
fn two_homes_round_trip_through_the_server() {
    let srv = Server::start();
    let bucket = moto::unique("syncsrv");
    let a = home(&bucket, &srv.url());
    let b = home(&bucket, &srv.url());
    fs::write(a.path("notes.txt"), b"notes").unwrap();
    a.ok(&["backup", a.path("notes.txt").to_str().unwrap(), "--prompt", "no", "--tags", "x y"], None);
    a.ok(&["sync"], None);
    let out = b.ok(&["sync"], None);
    assert!(out.contains("1 new"), "{out}");
    assert_eq!(b.show(false), a.show(false));
    let to = b.path("out");
    b.ok(&["restore", "notes.txt", "--to", to.to_str().unwrap()], None);
    assert_eq!(fs::read(to.join("notes.txt")).unwrap(), b"notes");

    // A delete on B reaches A through the server.
    b.ok(&["delete", "notes.txt"], None);
    b.ok(&["sync"], None);
    a.ok(&["sync"], None);
    assert!(a.show(false).is_empty());
    assert_eq!(a.show(true), b.show(true));

    // reset_sync: the next sync registers again and sends everything; nothing changes.
    b.ok(&["reset_sync"], None);
    b.ok(&["sync"], None);
    assert_eq!(b.show(true), a.show(true));

    // Wrong credentials are reported.
    let bad = home(&bucket, &srv.url());
    let cfg = fs::read_to_string(bad.path("bakthat.yml")).unwrap().replace("s3cret", "nope");
    fs::write(bad.path("bakthat.yml"), cfg).unwrap();
    let o = bad.run(&["sync"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("refused the credentials"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn https_with_a_certificate() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = common::tls::self_signed_cert(certs.path());
    let srv = Server::start_with(Some((cert.clone(), key)), Limits::default());
    let url = format!("https://{}", srv.addr);
    let bucket = moto::unique("synctls");
    let a = home(&bucket, &url);
    // Without trusting the certificate the client refuses the server; with it, the sync works.
    let o = a.run(&["sync"], None);
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    fs::copy(&cert, a.path("ca.pem")).unwrap();
    let out = a.ok(&["sync"], None);
    assert!(out.contains("synced"), "{out}");
    // Plain HTTP to the HTTPS port gets nothing usable.
    let plain = home(&bucket, &srv.url());
    assert_eq!(plain.run(&["sync"], None).status.code(), Some(1));
}

// ---- strangers and slow clients (issue 11, item 3) ----

const SYNC_BODY: &str = "{\"sync_ts\": 0, \"new\": []}";

/// Issue 11 item 3: the old server allocated the announced body (up to 64 MiB) and waited for it before it looked
/// at the credentials; 12 such connections took it to 768 MB.
#[test]
fn strangers_are_refused_before_their_body_is_read() {
    let srv = Server::start();
    for auth in [None, Some(("alice", "wrong")), Some(("nobody", "s3cret"))] {
        let status = srv.raw(&head("/backups/sync", auth, &format!("Content-Length: {}\r\n", 60 << 20)));
        assert_eq!(status, Some(401), "{auth:?}");
    }
}

/// Issue 11 item 3: `Content-Length: -1` or an unparsable one was read as 0 and answered 200.
#[test]
fn a_malformed_content_length_is_a_400() {
    let srv = Server::start();
    for value in ["-1", "abc", "1, 2", "99999999999999999999999"] {
        for path in ["/clients", "/backups/sync"] {
            let status = srv.raw(&head(path, ALICE, &format!("Content-Length: {value}\r\n")));
            assert_eq!(status, Some(400), "{path} with Content-Length: {value}");
        }
    }
}

/// Issue 11 item 3: over 64 MiB the old server dropped the connection without an answer.
#[test]
fn a_body_over_the_limit_is_a_413() {
    let srv = Server::start();
    let status = srv.raw(&head("/backups/sync", ALICE, &format!("Content-Length: {}\r\n", (64 << 20) + 1)));
    assert_eq!(status, Some(413), "announced over 64 MiB");

    // With a 1 KiB limit: a chunked body is cut where it passes the limit; a body of exactly the limit is read.
    let srv = Server::start_with(None, Limits { max_body: 1024, ..Limits::default() });
    let chunked =
        head("/backups/sync", ALICE, "Transfer-Encoding: chunked\r\n") + &format!("800\r\n{}\r\n", "x".repeat(0x800));
    assert_eq!(srv.raw(&chunked), Some(413), "chunked over the limit");
    let body = format!("{{\"sync_ts\": 0, \"new\": []}}{}", " ".repeat(1024 - SYNC_BODY.len()));
    assert_eq!(srv.raw(&(head("/backups/sync", ALICE, "Content-Length: 1024\r\n") + &body)), Some(200));
}

/// Issue 11 item 3: `[]` (or any non-object) was accepted as a sync and answered with every row.
#[test]
fn a_sync_body_must_be_an_object_of_sync_ts_and_new() {
    let srv = Server::start();
    for body in
        ["[]", "\"sync\"", "3", "{\"sync_ts\": \"soon\"}", "{\"sync_ts\": -1}", "{\"new\": {}}", "{\"new\": [1]}"]
    {
        let (status, answer) = srv.request("POST", "/backups/sync", ALICE, "h", body);
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(answer["error"].is_string(), "{body}: {answer}");
    }
    assert_eq!(srv.request("POST", "/backups/sync", ALICE, "h", SYNC_BODY).0, 200);
}

/// Issue 11 item 3: a verified password was cached by user, so the old password stayed valid until a restart.
#[test]
fn a_changed_password_takes_effect_at_once() {
    let srv = Server::start();
    assert_eq!(srv.request("POST", "/backups/sync", ALICE, "h", SYNC_BODY).0, 200);
    // What `bakthat sync-server --db PATH --add-user alice` does from another process.
    ServerDb::open(&srv.dir.path().join("server.sqlite")).unwrap().add_user("alice", "n3w").unwrap();
    assert_eq!(srv.request("POST", "/backups/sync", ALICE, "h", SYNC_BODY).0, 401);
    for _ in 0..2 {
        assert_eq!(srv.request("POST", "/backups/sync", Some(("alice", "n3w")), "h", SYNC_BODY).0, 200);
    }
    assert_eq!(srv.request("POST", "/backups/sync", ALICE, "h", SYNC_BODY).0, 401);
}

/// Issue 11 item 3 (slowloris): the old server gave every connection a thread and waited 30 s for each read.
#[test]
fn slow_clients_are_cut_off() {
    let limits = Limits {
        head_timeout: Duration::from_millis(300),
        body_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let srv = Server::start_with(None, limits.clone());
    // Silent, then a head that never ends: closed (or answered 408) well before the 10 s read timeout.
    for sent in ["", "POST /backups/sync HTTP/1.1\r\nHost: sync\r\n"] {
        let mut s = srv.connect();
        s.write_all(sent.as_bytes()).unwrap();
        let status = status_of(&mut s);
        assert!(matches!(status, None | Some(408)), "{sent:?}: {status:?}");
    }
    // A body that never ends.
    let mut s = srv.connect();
    s.write_all((head("/backups/sync", ALICE, "Content-Length: 100\r\n") + "{\"sync").as_bytes()).unwrap();
    assert_eq!(status_of(&mut s), Some(408));

    // A TLS handshake that never starts.
    let certs = tempfile::tempdir().unwrap();
    let tls = Server::start_with(Some(common::tls::self_signed_cert(certs.path())), limits);
    let started = Instant::now();
    assert_eq!(status_of(&mut tls.connect()), None);
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}

/// Issue 11 item 3: one thread per connection and no cap. Over the cap a connection waits until one ends.
#[test]
fn connections_over_the_cap_wait_for_a_free_slot() {
    let srv = Server::start_with(None, Limits { max_connections: 2, ..Limits::default() });
    // Alice's password verified once, so that her next request is answered without Argon2's delay.
    assert_eq!(srv.raw(&head("/clients", ALICE, "Content-Length: 0\r\n")), Some(200));
    let held: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = srv.connect();
            s.write_all(b"POST /clients HTTP/1.1\r\n").unwrap();
            s
        })
        .collect();
    let mut third = srv.connect();
    third.write_all(head("/clients", ALICE, "Content-Length: 0\r\n").as_bytes()).unwrap();
    third.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let waited = third.read(&mut [0u8; 1]).expect_err("answered while two held connections had both slots");
    assert!(matches!(waited.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut), "{waited}");
    drop(held);
    third.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(status_of(&mut third), Some(200));
}

/// Issue 11 item 3: the old server read header lines of any length.
#[test]
fn an_oversized_head_is_a_431() {
    let srv = Server::start();
    let junk = format!("X-Junk: {}\r\nContent-Length: 0\r\n", "j".repeat(32 << 10));
    assert_eq!(srv.raw(&head("/clients", ALICE, &junk)), Some(431));
    assert_eq!(srv.raw(&head("/clients", ALICE, "Content-Length: 0\r\n")), Some(200));
}
