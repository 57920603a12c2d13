//! The 0.6 sync server: a replay of the requests bakthat 0.6 sends (reference §11), authentication on every route,
//! and a round trip of this bakthat between two homes through it (S3 on moto, started by scripts/test.sh).

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use bakthat::sync::server::{serve, serve_tls, tls_config, ServerDb};
use common::cli::Home;
use common::moto;
use serde_json::{json, Value};

struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        Server::start_with(None)
    }

    /// With `tls`: HTTPS with this (certificate, key).
    fn start_with(tls: Option<(PathBuf, PathBuf)>) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let db = ServerDb::open(&dir.path().join("server.sqlite")).unwrap();
        db.add_user("alice", "s3cret").unwrap();
        db.add_user("bob", "other").unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let thread = match tls {
            None => std::thread::spawn(move || serve(listener, db, s2).unwrap()),
            Some((cert, key)) => {
                let config = tls_config(&cert, &key).unwrap();
                std::thread::spawn(move || serve_tls(listener, db, config, s2).unwrap())
            }
        };
        Server { addr, stop, thread: Some(thread), _dir: dir }
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

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
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
    let srv = Server::start_with(Some((cert.clone(), key)));
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
