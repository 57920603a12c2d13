//! S3 and Glacier stores against moto (started by scripts/test.sh; a missing server fails these tests): storage
//! classes, bucket creation, cleanup of unfinished uploads, cold objects, Glacier retrieval jobs, and fault
//! injection through a local proxy that answers 5xx, resets connections, stalls and cuts responses short.

use crate::common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bakthat::inventory::Inventory;
use bakthat::storage::glacier::{GlacierCatalog, GlacierStore, JobState, RetrievalJob};
use bakthat::storage::s3::{S3Settings, S3Store};
use bakthat::storage::{Backend, PutOptions, Retrieval, StorageError};
use bakthat::stores::InventoryCatalog;
use common::moto;

fn s3(bucket: &str) -> S3Store {
    S3Store::new(&moto::s3_settings(&moto::endpoint(), bucket)).unwrap()
}

/// A raw SDK client on moto, to look at what the store did.
fn raw_client() -> (tokio::runtime::Runtime, aws_sdk_s3::Client) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let conf = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(moto::endpoint())
        .force_path_style(true)
        .credentials_provider(aws_sdk_s3::config::Credentials::new("test", "test", None, None, "test"))
        .build();
    (rt, aws_sdk_s3::Client::from_conf(conf))
}

fn data(len: usize) -> Vec<u8> {
    common::bytes(7, len, false)
}

fn read_all(b: &dyn Backend, key: &str) -> Vec<u8> {
    let mut out = Vec::new();
    b.get(key).unwrap().read_to_end(&mut out).unwrap();
    out
}

#[test]
fn storage_class_and_metadata_are_set_on_upload() {
    let bucket = moto::unique("class");
    let mut settings = moto::s3_settings(&moto::endpoint(), &bucket);
    settings.storage_class = Some("standard_ia".into());
    let s = S3Store::new(&settings).unwrap();
    // The profile's class, on a single PutObject and on a multipart upload.
    let info = s.put_bytes("small", b"abc", &PutOptions::default()).unwrap();
    assert_eq!(info.storage_class.as_deref(), Some("STANDARD_IA"));
    assert_eq!(s.head("small").unwrap().unwrap().storage_class.as_deref(), Some("STANDARD_IA"));
    let opts = PutOptions {
        metadata: vec![("origin".into(), "bakthat-test".into())],
        storage_class: Some("GLACIER_IR".into()),
        size_hint: None,
    };
    let mut up = s.create("multi", &opts).unwrap();
    up.write_all(&data(9 << 20)).unwrap();
    up.commit().unwrap();
    let head = s.head("multi").unwrap().unwrap();
    assert_eq!((head.size, head.storage_class.as_deref()), (9 << 20, Some("GLACIER_IR")));
    // The flag's class wins over the profile's.
    let rr = PutOptions { storage_class: Some("REDUCED_REDUNDANCY".into()), ..PutOptions::default() };
    s.put_bytes("rr", b"x", &rr).unwrap();
    assert_eq!(s.head("rr").unwrap().unwrap().storage_class.as_deref(), Some("REDUCED_REDUNDANCY"));

    let (rt, c) = raw_client();
    let h = rt.block_on(c.head_object().bucket(&bucket).key("multi").send()).unwrap();
    assert_eq!(h.metadata().and_then(|m| m.get("origin")).map(String::as_str), Some("bakthat-test"));

    // Unknown classes are refused up front, with the list of good ones.
    let bad = PutOptions { storage_class: Some("COLDER".into()), ..PutOptions::default() };
    let e = s.create("x", &bad).err().unwrap().to_string();
    assert!(e.contains("unknown S3 storage class") && e.contains("STANDARD_IA"), "{e}");
    settings.storage_class = Some("NOPE".into());
    assert!(S3Store::new(&settings).is_err());
}

#[test]
fn a_missing_bucket_is_created_in_its_region_and_reads_say_so() {
    let endpoint = moto::endpoint();
    let bucket = moto::unique("region");
    let mut settings = moto::s3_settings(&endpoint, &bucket);
    settings.access.region = Some("eu-west-1".into());
    let s = S3Store::new(&settings).unwrap();
    // Reading a bucket that does not exist is a clear error, not "not found".
    let e = s.list("").unwrap_err().to_string();
    assert!(e.contains("does not exist") && e.contains("s3_bucket"), "{e}");
    assert_eq!(s.cleanup().unwrap(), 0, "cleanup of a missing bucket has nothing to do");
    s.put_bytes("k", b"v", &PutOptions::default()).unwrap();
    let (rt, c) = raw_client();
    let loc = rt.block_on(c.get_bucket_location().bucket(&bucket).send()).unwrap();
    assert_eq!(loc.location_constraint().map(|l| l.as_str()), Some("eu-west-1"));
    assert_eq!(read_all(&s, "k"), b"v");
}

#[test]
fn cleanup_aborts_only_stale_multipart_uploads() {
    let endpoint = moto::endpoint();
    let bucket = moto::unique("cleanup");
    let s = S3Store::new(&moto::s3_settings(&endpoint, &bucket)).unwrap();
    // A backup killed mid-upload: the multipart upload was started and never completed nor aborted.
    let mut up = s.create("killed", &PutOptions::default()).unwrap();
    up.write_all(&data(9 << 20)).unwrap();
    std::mem::forget(up);
    let (rt, c) = raw_client();
    let pending = || rt.block_on(c.list_multipart_uploads().bucket(&bucket).send()).unwrap().uploads().len();
    assert_eq!(pending(), 1);
    // moto reports every upload as started in 2010, so "young" is checked with an age limit of a century.
    let mut settings = moto::s3_settings(&endpoint, &bucket);
    settings.stale_upload_age = Duration::from_secs(100 * 365 * 86400);
    assert_eq!(S3Store::new(&settings).unwrap().cleanup().unwrap(), 0, "a young upload may belong to a running backup");
    assert_eq!(pending(), 1);
    assert_eq!(s.cleanup().unwrap(), 1, "an upload older than an hour is removed");
    assert_eq!(pending(), 0);
    assert!(s.head("killed").unwrap().is_none());
    // Dropping an upload aborts it at once.
    let mut up = s.create("dropped", &PutOptions::default()).unwrap();
    up.write_all(&data(9 << 20)).unwrap();
    drop(up);
    assert_eq!(pending(), 0);
}

#[test]
fn cold_objects_need_a_restore_first() {
    let s = s3(&moto::unique("cold"));
    for class in ["GLACIER", "DEEP_ARCHIVE"] {
        let key = format!("cold-{class}");
        let opts = PutOptions { storage_class: Some(class.into()), ..PutOptions::default() };
        s.put_bytes(&key, b"frozen bytes", &opts).unwrap();
        assert_eq!(s.retrieval_state(&key).unwrap(), Retrieval::NotStarted, "{class}");
        match s.get(&key) {
            Err(StorageError::NotRetrieved { state, .. }) => assert_eq!(state, Retrieval::NotStarted),
            other => panic!("get of a cold object: {:?}", other.map(|_| ())),
        }
        assert!(matches!(s.get_range(&key, 0, 4), Err(StorageError::NotRetrieved { .. })));
        // moto completes restores at once.
        assert_eq!(s.start_retrieval(&key).unwrap(), Retrieval::Ready);
        assert_eq!(s.retrieval_state(&key).unwrap(), Retrieval::Ready);
        assert_eq!(s.start_retrieval(&key).unwrap(), Retrieval::Ready, "idempotent");
        assert_eq!(read_all(&s, &key), b"frozen bytes");
        assert_eq!(s.get_range(&key, 7, 100).unwrap(), b"bytes");
    }
    assert!(matches!(s.retrieval_state("nothing-here"), Err(StorageError::NotFound { .. })));
}

#[test]
fn glacier_retrieval_jobs_are_tracked_and_restarted() {
    let inventory = Arc::new(Inventory::open_in_memory().unwrap());
    let catalog = Arc::new(InventoryCatalog::new(inventory.clone()));
    let vault = moto::unique("jobs");
    let g = GlacierStore::new(&moto::glacier_settings(&moto::endpoint(), &vault), catalog.clone()).unwrap();
    let payload = data(1_500_000);
    g.put_bytes("a.tgz", &payload, &PutOptions::default()).unwrap();
    assert_eq!(g.head("a.tgz").unwrap().map(|i| i.size), Some(1_500_000));
    assert_eq!(g.retrieval_state("a.tgz").unwrap(), Retrieval::NotStarted);
    match g.get("a.tgz") {
        Err(StorageError::NotRetrieved { state: Retrieval::NotStarted, .. }) => {}
        other => panic!("get before retrieval: {:?}", other.map(|_| ())),
    }
    let Retrieval::Pending { job_id: Some(job), ready_at: Some(_) } = g.start_retrieval("a.tgz").unwrap() else {
        panic!("a retrieval starts as pending with a job id and an estimate");
    };
    // Asking again does not start a second job.
    match g.start_retrieval("a.tgz").unwrap() {
        Retrieval::Pending { job_id, .. } => assert_eq!(job_id.as_deref(), Some(job.as_str())),
        Retrieval::Ready => {}
        s => panic!("{s:?}"),
    }
    let recorded = inventory.job("a.tgz", bakthat::inventory::JobKind::ArchiveRetrieval).unwrap().unwrap();
    assert_eq!((recorded.job_id.as_str(), recorded.backend.as_str()), (job.as_str(), "glacier"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while g.retrieval_state("a.tgz").unwrap() != Retrieval::Ready {
        assert!(Instant::now() < deadline, "the job never completed");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(catalog.job("a.tgz").unwrap().map(|j| j.state), Some(JobState::Ready));
    assert!(read_all(&g, "a.tgz") == payload);
    assert_eq!(g.get_range("a.tgz", 1_048_570, 10).unwrap(), &payload[1_048_570..1_048_580]);

    // A recorded job that is not for this archive (Glacier answers with the archive id) is forgotten and a new one
    // is started. (An expired job, which real Glacier reports as ResourceNotFoundException, takes the same path;
    // moto answers 500 for unknown jobs, so that case cannot be shown here.)
    g.put_bytes("b.tgz", b"other", &PutOptions::default()).unwrap();
    let Retrieval::Pending { job_id: Some(other), .. } = g.start_retrieval("b.tgz").unwrap() else { panic!() };
    catalog.put_job("a.tgz", &RetrievalJob { job_id: other, state: JobState::Ready, created_at: 1 }).unwrap();
    assert_eq!(g.retrieval_state("a.tgz").unwrap(), Retrieval::NotStarted);
    assert!(catalog.job("a.tgz").unwrap().is_none());
    assert!(matches!(g.start_retrieval("a.tgz").unwrap(), Retrieval::Pending { .. }));
    assert_eq!(g.list("").unwrap().iter().map(|o| o.key.as_str()).collect::<Vec<_>>(), ["a.tgz", "b.tgz"]);

    g.delete("a.tgz").unwrap();
    assert!(g.head("a.tgz").unwrap().is_none());
    assert!(inventory.archive_id(&bakthat::model::StoredName::from_key("a.tgz")).unwrap().is_none());
    assert!(catalog.job("a.tgz").unwrap().is_none());
    assert!(matches!(g.get("a.tgz"), Err(StorageError::NotFound { .. })));
}

// ---- fault injection ----

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// `503 SlowDown`.
    Unavailable,
    /// The connection is reset before any answer.
    Reset,
    /// No answer until the client gives up.
    Stall,
    /// The answer is cut off after its first bytes (a download breaks midway).
    Cut,
}

#[derive(Clone, Copy)]
enum Mode {
    /// Every `n`th request fails, at most `max` times in all: 503, reset and stall take turns, and about every fourth
    /// fault on a GET cuts its answer short instead.
    Every { n: usize, max: usize },
    /// Every request fails this way.
    All(Fault),
}

/// What the proxy shares with its connection threads.
struct Shared {
    upstream: SocketAddr,
    mode: Mode,
    requests: AtomicUsize,
    injected: Mutex<Vec<Fault>>,
    /// Responses actually cut short (a cut planned for an answer without a body does not happen).
    cuts: AtomicUsize,
}

impl Shared {
    /// Decides the fate of the next request.
    fn decide(&self, is_get: bool) -> Option<Fault> {
        let n = self.requests.fetch_add(1, Ordering::SeqCst);
        let mut done = self.injected.lock().unwrap();
        let fault = match self.mode {
            Mode::All(f) => f,
            Mode::Every { n: every, max } => {
                if n % every != every - 1 || done.len() >= max {
                    return None;
                }
                const TURNS: [Fault; 3] = [Fault::Unavailable, Fault::Reset, Fault::Stall];
                let cuts = done.iter().filter(|f| **f == Fault::Cut).count();
                let others = done.len() - cuts;
                if is_get && cuts <= others / 3 {
                    Fault::Cut
                } else {
                    TURNS[others % 3]
                }
            }
        };
        done.push(fault);
        Some(fault)
    }
}

/// A TCP proxy in front of moto that injects faults. One request per connection (it forces `Connection: close`),
/// so connections count requests.
struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    fn start(upstream: &str, mode: Mode) -> Proxy {
        let upstream: SocketAddr = upstream.trim_start_matches("http://").trim_end_matches('/').parse().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            upstream,
            mode,
            requests: AtomicUsize::new(0),
            injected: Mutex::new(Vec::new()),
            cuts: AtomicUsize::new(0),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (sh, st) = (shared.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = conn else { continue };
                let sh = sh.clone();
                std::thread::spawn(move || serve(client, &sh));
            }
        });
        Proxy { addr, shared, stop }
    }

    fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn injected(&self, f: Fault) -> usize {
        self.shared.injected.lock().unwrap().iter().filter(|k| **k == f).count()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wakes the accept loop
    }
}

/// Reads up to the end of an HTTP head; returns the head (with its blank line) and any bytes after it.
fn read_head(s: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(i + 4);
            return Some((String::from_utf8_lossy(&buf).into_owned(), rest));
        }
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The head with `Connection: close` instead of any Connection header.
fn closing(head: &str) -> String {
    let mut out: Vec<&str> =
        head.trim_end().split("\r\n").filter(|l| !l.to_ascii_lowercase().starts_with("connection:")).collect();
    out.push("Connection: close");
    format!("{}\r\n\r\n", out.join("\r\n"))
}

fn reset(s: TcpStream) {
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: setsockopt on a socket we own, with a correctly sized linger struct.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(s);
}

/// Reads until the peer closes (or 20 s pass), so closing does not reset a connection with unread data.
fn drain(s: &mut TcpStream) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
    let mut sink = [0u8; 65536];
    while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
}

fn serve(mut client: TcpStream, shared: &Shared) {
    let Some((head, early)) = read_head(&mut client) else { return };
    let fault = shared.decide(head.starts_with("GET "));
    match fault {
        Some(Fault::Reset) => return reset(client),
        Some(Fault::Unavailable) => {
            let body = "<?xml version=\"1.0\"?><Error><Code>SlowDown</Code><Message>injected</Message></Error>";
            let _ = write!(
                client,
                "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = client.shutdown(Shutdown::Write);
            return drain(&mut client);
        }
        Some(Fault::Stall) => return drain(&mut client),
        _ => {}
    }
    let Ok(mut up) = TcpStream::connect(shared.upstream) else { return reset(client) };
    if up.write_all(closing(&head).as_bytes()).and_then(|_| up.write_all(&early)).is_err() {
        return reset(client);
    }
    let (mut c_read, mut u_write) = (client.try_clone().unwrap(), up.try_clone().unwrap());
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut c_read, &mut u_write);
    });
    let Some((rhead, rest)) = read_head(&mut up) else { return reset(client) };
    if client.write_all(closing(&rhead).as_bytes()).is_err() {
        return;
    }
    // A cut stops halfway through the body (at most 100 kB in).
    let length = rhead
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>()))
        .and_then(Result::ok)
        .unwrap_or(0);
    let cut_at = (fault == Some(Fault::Cut) && length >= 2).then(|| (length / 2).min(100_000));
    let mut sent = 0usize;
    let mut pending = rest;
    let mut chunk = vec![0u8; 65536];
    loop {
        if !pending.is_empty() {
            if let Some(cut) = cut_at.filter(|c| sent + pending.len() > *c) {
                let keep = cut - sent;
                let _ = client.write_all(&pending[..keep]);
                shared.cuts.fetch_add(1, Ordering::SeqCst);
                // The request copier holds a clone of the socket: shut it down so the client sees the end now.
                let _ = up.shutdown(Shutdown::Both);
                let _ = client.shutdown(Shutdown::Both);
                return reset(client);
            }
            if client.write_all(&pending).is_err() {
                return;
            }
            sent += pending.len();
            pending.clear();
        }
        match up.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => pending.extend_from_slice(&chunk[..n]),
        }
    }
    let _ = client.shutdown(Shutdown::Both);
}

fn through(proxy: &Proxy, bucket: &str, read_timeout: Duration) -> S3Store {
    let mut settings: S3Settings = moto::s3_settings(&proxy.endpoint(), bucket);
    settings.tuning.read_timeout = read_timeout;
    settings.tuning.connect_timeout = Duration::from_secs(2);
    S3Store::new(&settings).unwrap()
}

#[test]
fn transfers_survive_injected_faults_byte_for_byte() {
    let proxy = Proxy::start(&moto::endpoint(), Mode::Every { n: 5, max: 40 });
    let s = through(&proxy, &moto::unique("faults"), Duration::from_secs(2));
    let payload = data(20 << 20);
    for round in 0..2 {
        let key = format!("backup-{round}.tgz");
        let mut up = s.create(&key, &PutOptions::default()).unwrap();
        for piece in payload.chunks(777_777) {
            up.write_all(piece).unwrap();
        }
        assert_eq!(up.commit().unwrap().size, payload.len() as u64);
        assert!(read_all(&s, &key) == payload, "round {round}: the download differs");
        for (start, len) in [(0u64, 100u64), (9 << 20, 1 << 20), ((20 << 20) - 10, 100)] {
            let e = (start + len).min(payload.len() as u64) as usize;
            assert_eq!(s.get_range(&key, start, len).unwrap(), &payload[start as usize..e], "range {start}+{len}");
        }
        s.put_bytes(&format!("{key}.index"), b"small", &PutOptions::default()).unwrap();
        assert_eq!(read_all(&s, &format!("{key}.index")), b"small");
    }
    assert_eq!(s.list("backup-").unwrap().len(), 4);
    let total = proxy.requests();
    for kind in [Fault::Unavailable, Fault::Reset, Fault::Stall] {
        assert!(proxy.injected(kind) >= 1, "no {kind:?} fault was injected in {total} requests");
    }
    assert!(proxy.shared.cuts.load(Ordering::SeqCst) >= 1, "no download was cut short in {total} requests");
    // The faults were about a fifth of the traffic, not a flood of retries.
    assert!(total < 120, "{total} requests");
}

#[test]
fn retries_are_bounded_and_the_error_names_store_and_key() {
    for fault in [Fault::Unavailable, Fault::Reset] {
        let proxy = Proxy::start(&moto::endpoint(), Mode::All(fault));
        let bucket = moto::unique("down");
        let s = through(&proxy, &bucket, Duration::from_secs(2));
        let e = s.head("some-key.tgz").unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, StorageError::Backend { .. }), "{fault:?}: {e:?}");
        assert!(msg.contains(&bucket) && msg.contains("some-key.tgz") && msg.contains("5 attempts"), "{msg}");
        assert_eq!(proxy.requests(), 5, "{fault:?}: one request per attempt");
        let e = s.put_bytes("other.tgz", b"x", &PutOptions::default()).unwrap_err().to_string();
        assert!(e.contains(&bucket) && e.contains("gave up"), "{e}");
        assert_eq!(proxy.requests(), 10);
    }
}

// ---- Glacier multipart uploads, against a tiny fake (moto has none) ----

/// What the fake Glacier saw.
#[derive(Default)]
struct FakeGlacier {
    /// Method and path of every request.
    log: Vec<String>,
    /// Parts received: (start, data).
    parts: Vec<(u64, Vec<u8>)>,
    /// The assembled archive, once completed.
    archive: Option<Vec<u8>>,
    /// Answer 400 to the upload of the part starting here.
    fail_part_at: Option<u64>,
    /// Problems found in what the client sent.
    errors: Vec<String>,
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn respond(s: &mut TcpStream, status: &str, headers: &[(&str, String)], body: &str) {
    let mut out = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(body);
    let _ = s.write_all(out.as_bytes());
}

/// Serves the multipart part of the Glacier API (create vault, initiate, upload part, complete, abort) in memory,
/// checking every tree hash.
fn fake_glacier(state: Arc<Mutex<FakeGlacier>>) -> String {
    use bakthat::storage::glacier::{combine, hex, tree_hash};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { continue };
            let Some((head, mut body)) = read_head(&mut s) else { continue };
            let len: usize = header(&head, "content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
            while body.len() < len {
                let mut buf = vec![0u8; len - body.len()];
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => body.extend_from_slice(&buf[..n]),
                }
            }
            let line = head.lines().next().unwrap_or("").to_string();
            let mut words = line.split(' ');
            let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or("").to_string());
            let path = path.split('?').next().unwrap_or("").to_string();
            let mut st = state.lock().unwrap();
            st.log.push(format!("{method} {path}"));
            let tree = header(&head, "x-amz-sha256-tree-hash").unwrap_or("").to_string();
            match (method, path.ends_with("/multipart-uploads"), path.contains("/multipart-uploads/")) {
                ("PUT", false, false) => respond(&mut s, "201 Created", &[("Location", path.clone())], ""),
                ("POST", true, false) => {
                    let loc = format!("{path}/UPLOAD1");
                    respond(
                        &mut s,
                        "201 Created",
                        &[("Location", loc), ("x-amz-multipart-upload-id", "UPLOAD1".into())],
                        "",
                    )
                }
                ("PUT", _, true) => {
                    let range = header(&head, "content-range").unwrap_or("");
                    let start: u64 = range
                        .trim_start_matches("bytes ")
                        .split('-')
                        .next()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(u64::MAX);
                    if st.fail_part_at == Some(start) {
                        let err = r#"{"code":"InvalidParameterValueException","message":"injected","type":"Client"}"#;
                        respond(
                            &mut s,
                            "400 Bad Request",
                            &[("x-amzn-ErrorType", "InvalidParameterValueException".into())],
                            err,
                        );
                        continue;
                    }
                    if hex(&tree_hash(&body)) != tree {
                        st.errors.push(format!("part at {start}: tree hash {tree} does not match its data"));
                    }
                    if !range.ends_with("/*") || body.len() as u64 != part_len(range) {
                        st.errors.push(format!("bad Content-Range {range:?} for {} bytes", body.len()));
                    }
                    st.parts.push((start, body));
                    respond(&mut s, "204 No Content", &[("x-amz-sha256-tree-hash", tree)], "");
                }
                ("POST", _, true) => {
                    let mut parts = std::mem::take(&mut st.parts);
                    parts.sort_by_key(|p| p.0);
                    let hashes: Vec<[u8; 32]> = parts.iter().map(|p| tree_hash(&p.1)).collect();
                    let archive: Vec<u8> = parts.into_iter().flat_map(|p| p.1).collect();
                    let size: usize = header(&head, "x-amz-archive-size").and_then(|v| v.parse().ok()).unwrap_or(0);
                    if size != archive.len() {
                        st.errors.push(format!("archive size {size}, assembled {}", archive.len()));
                    }
                    if hex(&tree_hash(&archive)) != tree || hex(&combine(&hashes)) != tree {
                        st.errors.push(format!("archive tree hash {tree} does not match"));
                    }
                    st.archive = Some(archive);
                    let loc = path.replace("multipart-uploads/UPLOAD1", "archives/ARCHIVE1");
                    let hs =
                        [("Location", loc), ("x-amz-archive-id", "ARCHIVE1".into()), ("x-amz-sha256-tree-hash", tree)];
                    respond(&mut s, "201 Created", &hs, "");
                }
                ("DELETE", _, true) => respond(&mut s, "204 No Content", &[], ""),
                _ => respond(&mut s, "404 Not Found", &[], r#"{"code":"ResourceNotFoundException","message":"fake"}"#),
            }
        }
    });
    format!("http://{addr}")
}

/// The length a `bytes S-E/*` range announces.
fn part_len(range: &str) -> u64 {
    let r = range.trim_start_matches("bytes ").trim_end_matches("/*");
    match r.split_once('-') {
        Some((a, b)) => b.parse::<u64>().unwrap_or(0) + 1 - a.parse::<u64>().unwrap_or(0),
        None => 0,
    }
}

#[test]
fn glacier_multipart_uploads_send_tree_hashes_and_abort_on_failure() {
    let state = Arc::new(Mutex::new(FakeGlacier::default()));
    let endpoint = fake_glacier(state.clone());
    let inventory = Arc::new(Inventory::open_in_memory().unwrap());
    let catalog = Arc::new(InventoryCatalog::new(inventory.clone()));
    let mut settings = moto::glacier_settings(&endpoint, "vault");
    settings.single_upload_limit = 1 << 20;
    settings.part_size = 1 << 20;
    settings.max_in_flight = 2;
    let g = GlacierStore::new(&settings, catalog.clone()).unwrap();
    let payload = data(3 * (1 << 20) + 123_457);
    let mut up = g.create("big.tgz", &PutOptions::default()).unwrap();
    for piece in payload.chunks(300_001) {
        up.write_all(piece).unwrap();
    }
    let info = up.commit().unwrap();
    assert_eq!(info.size, payload.len() as u64);
    {
        let st = state.lock().unwrap();
        assert!(st.errors.is_empty(), "{:?}", st.errors);
        assert!(st.archive.as_ref() == Some(&payload), "the assembled archive differs");
        let uploads = st.log.iter().filter(|l| l.starts_with("PUT") && l.contains("/multipart-uploads/")).count();
        assert_eq!(uploads, 4, "{:?}", st.log);
    }
    let entry = catalog.archive("big.tgz").unwrap().unwrap();
    assert_eq!((entry.archive_id.as_str(), entry.size), ("ARCHIVE1", Some(payload.len() as u64)));

    // A part the service refuses: the upload is aborted and nothing is recorded.
    state.lock().unwrap().fail_part_at = Some(2 << 20);
    let mut up = g.create("broken.tgz", &PutOptions::default()).unwrap();
    up.write_all(&payload).unwrap();
    let e = up.commit().unwrap_err().to_string();
    assert!(e.contains("broken.tgz"), "{e}");
    assert!(state.lock().unwrap().log.iter().any(|l| l.starts_with("DELETE") && l.ends_with("/UPLOAD1")));
    assert!(catalog.archive("broken.tgz").unwrap().is_none());
}
