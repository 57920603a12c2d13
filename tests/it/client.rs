//! The library client driven end to end on the local store: every action, the events with their session ids, and
//! the profile's hook commands (their JSON and environment, a failing `before_backup`, the timeout).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bakthat::client::events::{Action, EventKind};
use bakthat::client::{Client, ClientError, HookExit};
use bakthat::config::Config;
use bakthat::ops::{BackupOptions, OpsError, RestoreOptions, RotateOptions, ShowQuery};
use serde_json::Value;

const DAY: i64 = 86_400;
/// 2013-01-01 03:00 UTC.
const START: i64 = 1_357_009_200;

struct Fixture {
    tmp: tempfile::TempDir,
    clock: Arc<AtomicI64>,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture { tmp: tempfile::tempdir().unwrap(), clock: Arc::new(AtomicI64::new(START)) }
    }

    fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// A client whose `default` profile stores in `<tmp>/store`, with `extra` YAML lines added to the profile.
    fn client(&self, extra: &str) -> Client {
        let store = self.path().join("store");
        let yaml = format!("default:\n  local_path: {}\n{extra}", store.display());
        let config = Config::from_yaml(&self.path().join("bakthat.yml"), &yaml).unwrap();
        let mut client = Client::from_config(config, "default", &self.path().join("inv.sqlite")).unwrap();
        let clock = self.clock.clone();
        client.ctx_mut().clock = Arc::new(move || clock.load(Ordering::SeqCst));
        client
    }

    /// A directory `name` holding one file.
    fn source(&self, name: &str) -> PathBuf {
        let dir = self.path().join("src").join(name);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("data.txt"), format!("contents of {name}")).unwrap();
        dir
    }

    fn objects(&self) -> Vec<String> {
        match fs::read_dir(self.path().join("store")) {
            // Backup objects, not the sync journal.
            Ok(rd) => rd
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with(bakthat::journal::JOURNAL_PREFIX))
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

fn opts(source: PathBuf) -> BackupOptions {
    BackupOptions { source, ..BackupOptions::default() }
}

#[test]
fn every_action_through_the_client() {
    let f = Fixture::new();
    let c = f.client("  rotation: {days: 2}\n");
    let src = f.source("db");
    for day in 0..5 {
        f.clock.store(START + day * DAY, Ordering::SeqCst);
        let out = c.backup(&opts(src.clone())).unwrap();
        assert_eq!(out.record.filename, "db");
    }
    assert_eq!(c.show(&ShowQuery::default()).unwrap().len(), 5);

    let v = c.verify("db", None, None).unwrap();
    assert_eq!(v.record.backup_date, START + 4 * DAY);

    let to = f.path().join("restored");
    let r = c.restore(&RestoreOptions { name: "db".into(), to: Some(to.clone()), ..Default::default() }).unwrap();
    assert_eq!(r.record.backup_date, START + 4 * DAY);
    assert_eq!(fs::read_to_string(to.join("db/data.txt")).unwrap(), "contents of db");

    let dry = c.rotate("db", &RotateOptions { dry_run: true, ..Default::default() }).unwrap();
    assert_eq!(dry.iter().filter(|p| !p.keep).count(), 3);
    assert_eq!(c.show(&ShowQuery::default()).unwrap().len(), 5, "a dry run deletes nothing");
    let done = c.rotate("db", &RotateOptions::default()).unwrap();
    assert_eq!(done.iter().filter(|p| p.keep).count(), 2);
    assert_eq!(c.show(&ShowQuery::default()).unwrap().len(), 2);

    let gone = c.delete_older_than("db", "12h", None, false, None).unwrap();
    assert_eq!(gone.len(), 1);
    let deleted = c.delete("db", None, None).unwrap();
    assert_eq!(deleted.backup_date, START + 4 * DAY);
    assert!(c.show(&ShowQuery::default()).unwrap().is_empty());
    assert!(f.objects().is_empty(), "archives and index sidecars are gone: {:?}", f.objects());

    let err = c.delete("db", None, None).unwrap_err();
    assert!(matches!(err, ClientError::Ops(OpsError::NoMatch { .. })), "{err:?}");
    assert_eq!(err.exit_code(), 1);
}

/// What the test records of an event: kind, session id, name, number of records, failed.
type Seen = (EventKind, uuid::Uuid, String, usize, bool);

#[test]
fn events_fire_in_order_with_one_session_id_per_action() {
    let f = Fixture::new();
    let c = f.client("  rotation: {days: 1}\n");
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let s = seen.clone();
    c.events().on_any(move |ev| {
        let failed = ev.error().is_some();
        s.lock().unwrap().push((ev.kind, ev.session_id, ev.name.to_string(), ev.records().len(), failed));
    });
    let backups = Arc::new(Mutex::new(Vec::new()));
    let b = backups.clone();
    c.events().on_backup(move |ev| b.lock().unwrap().push(ev.records()[0].stored_filename.to_string()));

    let src = f.source("site");
    c.backup(&opts(src.clone())).unwrap();
    f.clock.store(START + DAY, Ordering::SeqCst);
    let second = c.backup(&opts(src)).unwrap();
    let to = f.path().join("out");
    c.restore(&RestoreOptions { name: "site".into(), to: Some(to), ..Default::default() }).unwrap();
    c.rotate("site", &RotateOptions::default()).unwrap();
    c.delete_older_than("site", "1h", None, false, None).unwrap();
    c.delete("site", None, None).unwrap();
    assert!(c.delete("site", None, None).is_err());

    let seen = seen.lock().unwrap();
    let names: Vec<String> = seen.iter().map(|e| e.0.name()).collect();
    assert_eq!(
        names,
        [
            "before_backup",
            "on_backup",
            "before_backup",
            "on_backup",
            "before_restore",
            "on_restore",
            "before_rotate_backups",
            "on_rotate_backups",
            "before_delete_older_than",
            "on_delete_older_than",
            "before_delete",
            "on_delete",
            "before_delete",
            "on_delete",
        ]
    );
    for pair in seen.chunks(2) {
        assert_eq!(pair[0].0.action, pair[1].0.action);
        assert!(pair[0].0.before && !pair[1].0.before);
        assert_eq!(pair[0].1, pair[1].1, "before_* and on_* of one action share the session id");
        assert_eq!(pair[0].1.get_version_num(), 4);
        assert_eq!(pair[0].2, "site");
    }
    let mut ids: Vec<_> = seen.iter().map(|e| e.1).collect();
    ids.dedup();
    assert_eq!(ids.len(), 7, "each action has its own session id");
    // Records: one backup each; rotate deleted the first; delete_older_than found nothing left to delete.
    let counts: Vec<usize> = seen.iter().filter(|e| !e.0.before).map(|e| e.3).collect();
    assert_eq!(counts, [1, 1, 1, 1, 0, 1, 0]);
    assert!(seen.last().unwrap().4, "the failed delete's on_delete carries the error");
    assert_eq!(backups.lock().unwrap()[1], second.record.stored_filename.to_string());
}

/// A hook that writes its stdin and its BAKTHAT_* variables to `<dir>/<event>.json` and `.env`.
fn recorder(dir: &Path) -> String {
    format!(r#"cat > "{0}/$BAKTHAT_EVENT.json"; env | grep ^BAKTHAT_ | sort > "{0}/$BAKTHAT_EVENT.env""#, dir.display())
}

fn read_json(path: PathBuf) -> Value {
    serde_json::from_slice(&fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

#[test]
fn hooks_receive_the_event_as_json_and_environment() {
    let f = Fixture::new();
    let out = f.path().join("hook-out");
    fs::create_dir(&out).unwrap();
    let cmd = serde_json::to_string(&recorder(&out)).unwrap();
    let c = f.client(&format!(
        "  hooks:\n    before_backup: {cmd}\n    on_backup: [{cmd}, 'exit 7']\n    on_delete: {cmd}\n"
    ));
    let stored = c.backup(&opts(f.source("mail"))).unwrap().record;

    let before = read_json(out.join("before_backup.json"));
    let on = read_json(out.join("on_backup.json"));
    assert_eq!(before["event"], "before_backup");
    assert_eq!(before["action"], "backup");
    assert_eq!(before["name"], "mail");
    assert_eq!(before["profile"], "default");
    assert_eq!(before["destination"], "local");
    assert_eq!(before["status"], Value::Null);
    assert!(before["source"].as_str().unwrap().ends_with("src/mail"));
    assert_eq!(on["event"], "on_backup");
    assert_eq!(on["status"], "ok");
    assert_eq!(on["session_id"], before["session_id"]);
    assert_eq!(on["records"][0]["stored_filename"], stored.stored_filename.as_str());
    assert_eq!(on["records"][0]["size"], stored.size);
    assert_eq!(on["records"][0]["filename"], "mail");

    let env = fs::read_to_string(out.join("on_backup.env")).unwrap();
    let sid = on["session_id"].as_str().unwrap();
    for line in [
        "BAKTHAT_EVENT=on_backup".to_string(),
        "BAKTHAT_ACTION=backup".to_string(),
        format!("BAKTHAT_SESSION_ID={sid}"),
        "BAKTHAT_PROFILE=default".to_string(),
        "BAKTHAT_NAME=mail".to_string(),
        "BAKTHAT_STATUS=ok".to_string(),
        format!("BAKTHAT_STORED_FILENAME={}", stored.stored_filename),
        format!("BAKTHAT_SIZE={}", stored.size),
    ] {
        assert!(env.lines().any(|l| l == line), "{line} missing from\n{env}");
    }

    // on_* hooks also run when the action fails, and see the error.
    assert!(c.delete("nothing-by-this-name", None, None).is_err());
    let on = read_json(out.join("on_delete.json"));
    assert_eq!(on["status"], "error");
    assert!(on["error"].as_str().unwrap().contains("no backup matches"), "{on}");
    assert!(fs::read_to_string(out.join("on_delete.env")).unwrap().contains("BAKTHAT_STATUS=error"));
}

#[test]
fn a_failing_before_backup_hook_stops_the_backup_and_leaves_nothing() {
    let f = Fixture::new();
    let marker = f.path().join("on-ran");
    let c = f.client(&format!(
        "  hooks:\n    before_backup: ['true', 'exit 3']\n    on_backup: 'echo \"$BAKTHAT_STATUS\" > {}'\n",
        marker.display()
    ));
    let err = c.backup(&opts(f.source("db"))).unwrap_err();
    match &err {
        ClientError::HookFailed { event, command, exit } => {
            assert_eq!(event, "before_backup");
            assert_eq!(command, "exit 3");
            assert_eq!(*exit, HookExit::Code(3));
        }
        other => panic!("{other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("before_backup") && msg.contains("exit 3") && msg.contains("exit status 3"), "{msg}");
    assert!(f.objects().is_empty(), "no object in the store: {:?}", f.objects());
    let all = ShowQuery { include_deleted: true, ..ShowQuery::default() };
    assert!(c.show(&all).unwrap().is_empty(), "no inventory row");
    assert_eq!(fs::read_to_string(&marker).unwrap().trim(), "error", "on_backup saw the failure");

    // With before_fail_aborts: false the same hook is only logged.
    let c = f.client("  hooks:\n    before_backup: 'exit 3'\n    before_fail_aborts: false\n");
    c.backup(&opts(f.source("db"))).unwrap();
    assert_eq!(c.show(&ShowQuery::default()).unwrap().len(), 1);
}

#[test]
fn a_hook_past_its_timeout_is_killed() {
    let f = Fixture::new();
    // `; true` keeps sh from exec-ing sleep, so the kill has to reach the whole process group.
    let c = f.client("  hooks:\n    before_delete: 'sleep 60; true'\n    timeout: 1\n");
    let started = Instant::now();
    let err = c.delete("anything", None, None).unwrap_err();
    assert!(
        matches!(&err, ClientError::HookFailed { exit: HookExit::TimedOut(t), .. } if *t == Duration::from_secs(1)),
        "{err:?}"
    );
    assert!(err.to_string().contains("timeout"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(50), "the hook was killed rather than waited for");
}

#[test]
fn a_misspelt_hook_event_is_an_error_when_the_client_opens() {
    let f = Fixture::new();
    let yaml = format!("default:\n  local_path: {}\n  hooks: {{on_bakup: 'x'}}\n", f.path().display());
    let config = Config::from_yaml(&f.path().join("bakthat.yml"), &yaml).unwrap();
    let err = Client::from_config(config, "default", &f.path().join("inv.sqlite")).unwrap_err();
    assert!(matches!(err, ClientError::HookConfig { .. }), "{err:?}");
    assert!(err.to_string().contains("on_backup"), "{err}");
    assert_eq!(Action::RotateBackups.on().name(), "on_rotate_backups");
}

#[test]
fn the_helper_backs_up_its_directory_under_its_own_name() {
    let f = Fixture::new();
    let c = f.client("  rotation: {days: 1}\n");
    for day in 0..3 {
        f.clock.store(START + day * DAY, Ordering::SeqCst);
        let scope = c.helper("mysql").unwrap().tags(["db", "nightly"]);
        let status = scope.command("sh").args(["-c", &format!("echo 'dump {day}' > all.sql")]).status().unwrap();
        assert!(status.success());
        let out = scope.backup().unwrap();
        assert_eq!(out.record.filename, "mysql");
        assert!(out.record.stored_filename.as_str().starts_with("mysql.2013"), "{}", out.record.stored_filename);
        assert_eq!(out.record.tags, "db nightly");
        let to = f.path().join(format!("restore-{day}"));
        scope.restore(&to).unwrap();
        assert_eq!(fs::read_to_string(to.join("mysql/all.sql")).unwrap(), format!("dump {day}\n"));
        let plan = scope.rotate().unwrap();
        assert_eq!(plan.iter().filter(|p| p.keep).count(), 1);
        assert!(scope.delete_older_than("1D").unwrap().is_empty());
    }
    assert_eq!(c.show(&ShowQuery::default()).unwrap().len(), 1);
    assert!(matches!(c.helper("a/b"), Err(ClientError::BadName { .. })));
    assert!(matches!(c.helper(""), Err(ClientError::BadName { .. })));
}

#[test]
fn the_helper_directory_is_removed_on_drop_error_and_panic() {
    let f = Fixture::new();
    let c = f.client("");
    let dir = Mutex::new(PathBuf::new());

    // A panic inside the scope.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let scope = c.helper("pg").unwrap();
        *dir.lock().unwrap() = scope.path().to_path_buf();
        fs::write(scope.path().join("dump.sql"), "x").unwrap();
        // Read-only directories must not keep it alive either.
        fs::create_dir(scope.path().join("ro")).unwrap();
        fs::write(scope.path().join("ro/file"), "x").unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(scope.path().join("ro"), fs::Permissions::from_mode(0o500)).unwrap();
        panic!("the dump failed");
    }));
    assert!(result.is_err());
    let path = dir.lock().unwrap().clone();
    assert!(path.ends_with("pg") && !path.exists() && !path.parent().unwrap().exists(), "{}", path.display());

    // An error returned from the scope with `?`.
    let script = || -> Result<(), ClientError> {
        let scope = c.helper("pg")?;
        *dir.lock().unwrap() = scope.path().to_path_buf();
        c.delete("no-such-backup", None, None)?;
        Ok(())
    };
    assert!(script().is_err());
    assert!(!dir.lock().unwrap().exists());
}

#[test]
fn plugins_activate_with_the_profile_and_deactivate_with_the_client() {
    use bakthat::client::plugin::{Plugin, PluginContext, PluginError};

    #[derive(Default)]
    struct Counter {
        log: Arc<Mutex<Vec<String>>>,
    }
    impl Plugin for Counter {
        fn activate(&mut self, ctx: PluginContext) -> Result<(), PluginError> {
            let threshold = ctx.setting("counter").and_then(|v| v.get("threshold")).and_then(|v| v.as_u64());
            self.log.lock().unwrap().push(format!("activate {} {threshold:?}", ctx.profile_name));
            let log = self.log.clone();
            ctx.events.on_backup(move |ev| log.lock().unwrap().push(format!("backup {}", ev.name)));
            Ok(())
        }
        fn deactivate(&mut self) {
            self.log.lock().unwrap().push("deactivate".into());
        }
    }
    struct Refuses;
    impl Plugin for Refuses {
        fn activate(&mut self, _: PluginContext) -> Result<(), PluginError> {
            Err("needs a license key".into())
        }
    }

    let f = Fixture::new();
    let mut c = f.client("  counter: {threshold: 3}\n");
    let plugin = Counter::default();
    let log = plugin.log.clone();
    c.add_plugin(plugin).unwrap();
    let err = c.add_plugin(Refuses).unwrap_err();
    assert!(matches!(&err, ClientError::Plugin { name, .. } if name.ends_with("Refuses")), "{err:?}");
    c.backup(&opts(f.source("etc"))).unwrap();
    drop(c);
    assert_eq!(*log.lock().unwrap(), ["activate default Some(3)", "backup etc", "deactivate"]);
}

/// A one-shot HTTP server on a free loopback port: answers `status` to the first request and hands over
/// (request head, body).
fn one_shot_server(status: &'static str) -> (String, std::thread::JoinHandle<(String, Vec<u8>)>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut head = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            head.push_str(&line);
        }
        let len = head
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
            .unwrap_or(0);
        let mut body = vec![0; len];
        reader.read_exact(&mut body).unwrap();
        let mut stream = stream;
        write!(stream, "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
        (head, body)
    });
    (url, handle)
}

#[test]
fn a_monitored_backup_posts_to_the_webhook() {
    let f = Fixture::new();
    let (url, server) = one_shot_server("200 OK");
    let c = f.client(&format!("  webhook_url: {url}\n"));
    let out = c.backup_monitored(&opts(f.source("www")), "nightly-www").unwrap();
    let (head, body) = server.join().unwrap();
    assert!(head.starts_with("POST /hook HTTP/1.1"), "{head}");
    assert!(head.to_ascii_lowercase().contains("content-type: application/json"), "{head}");
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["key"], "nightly-www");
    assert_eq!(body["host"], c.ctx().host.as_str());
    assert_eq!(body["size"], out.record.size);
    assert_eq!(body["stored_filename"], out.record.stored_filename.as_str());
    assert_eq!(body["backup_date"], START);
}

#[test]
fn a_failing_webhook_never_fails_the_backup() {
    let f = Fixture::new();
    let (url, server) = one_shot_server("500 Internal Server Error");
    let c = f.client(&format!("  webhook_url: {url}\n"));
    let out = c.backup_monitored(&opts(f.source("www")), "k").unwrap();
    server.join().unwrap();
    let err = c.report("k", &out.record).unwrap_err();
    assert!(matches!(&err, ClientError::Webhook { .. }), "{err:?}");
    assert!(err.to_string().contains("the backup itself is stored"), "{err}");
    assert_eq!(c.show(&ShowQuery::default()).unwrap().len(), 1);
    // No webhook_url: the backup is stored and the report is an error only when asked for directly.
    let c = f.client("");
    let out = c.backup_monitored(&opts(f.source("www2")), "k").unwrap();
    assert!(matches!(c.report("k", &out.record), Err(ClientError::NoWebhook { .. })));
}

/// The command line goes through the client: its hooks and the `-k` webhook apply to CLI users.
#[test]
fn cli_users_get_hooks_and_the_webhook() {
    let f = Fixture::new();
    let (url, server) = one_shot_server("200 OK");
    let marker = f.path().join("on-backup.json");
    let config = f.path().join("bakthat.yml");
    let write_config = |before: &str| {
        let yaml = format!(
            "default:\n  local_path: {}\n  webhook_url: {url}\n  hooks:\n    before_backup: '{before}'\n    on_backup: 'cat > {m}; env > {m}.env'\n",
            f.path().join("store").display(),
            m = marker.display()
        );
        fs::write(&config, yaml).unwrap();
    };
    let bakthat = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_bakthat"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", f.path())
            .env("BAKTHAT_CONFIG", &config)
            .env("BAKTHAT_DB", f.path().join("inventory.sqlite"))
            .env("BAKTHAT_PASSWORD", "hunter2")
            .args(args)
            .output()
            .unwrap()
    };
    let src = f.source("home");
    let src = src.to_str().unwrap();

    write_config("echo refusing >&2; exit 4");
    let out = bakthat(&["backup", src, "--prompt", "no", "-k", "home-key"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("refusing") && stderr.contains("before_backup") && stderr.contains("exit status 4"));
    assert!(f.objects().is_empty());
    assert_eq!(read_json(marker.clone())["status"], "error");

    write_config("true");
    let out = bakthat(&["backup", src, "--prompt", "no", "-k", "home-key"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let on = read_json(marker);
    assert_eq!(on["status"], "ok");
    let (_, body) = server.join().unwrap();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["key"], "home-key");
    assert_eq!(body["stored_filename"], on["records"][0]["stored_filename"]);
    assert_eq!(f.objects().len(), 2, "the archive and its index sidecar");
    assert!(on["records"][0]["stored_filename"].as_str().unwrap().ends_with(".tgz.enc"));
    let env = fs::read_to_string(f.path().join("on-backup.json.env")).unwrap();
    assert!(env.contains("BAKTHAT_EVENT=on_backup") && !env.contains("hunter2"), "hooks never see the password");
}

/// Hooks run in their own process group, out of reach of the terminal's Ctrl-C: bakthat kills them itself.
#[test]
fn ctrl_c_during_a_hook_kills_it_and_exits_130() {
    use std::io::Read;
    let f = Fixture::new();
    let fifo = f.path().join("started");
    let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    let config = f.path().join("bakthat.yml");
    let yaml = format!(
        "default:\n  local_path: {}\n  hooks:\n    before_backup: 'echo started > {}; sleep 60; true'\n",
        f.path().join("store").display(),
        fifo.display()
    );
    fs::write(&config, yaml).unwrap();
    let started = Instant::now();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_bakthat"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", f.path())
        .env("BAKTHAT_CONFIG", &config)
        .env("BAKTHAT_DB", f.path().join("inventory.sqlite"))
        .args(["backup", f.source("x").to_str().unwrap(), "--prompt", "no"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Opening the FIFO blocks until the hook writes to it: then the hook is running. (On another thread, so that a
    // bakthat that never runs the hook fails the test instead of hanging it.)
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = fs::File::open(&fifo).and_then(|mut f| f.read_to_string(&mut line));
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(Duration::from_secs(120)).expect("the before_backup hook never started");
    assert_eq!(line.trim(), "started");
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(50), "the hook was killed, not waited for");
    assert!(f.objects().is_empty());
}

#[test]
fn a_guard_refuses_an_action_before_it_runs() {
    let f = Fixture::new();
    let c = f.client("");
    let outcome = Arc::new(Mutex::new(String::new()));
    let o = outcome.clone();
    c.events().on_backup(move |ev| *o.lock().unwrap() = ev.error().map(|e| e.to_string()).unwrap_or_default());
    c.events().guard(Action::Backup, |ev| {
        if ev.name == "secrets" {
            Err("secrets are not backed up from this host".into())
        } else {
            Ok(())
        }
    });
    let err = c.backup(&opts(f.source("secrets"))).unwrap_err();
    assert!(matches!(&err, ClientError::Refused { event, .. } if event == "before_backup"), "{err:?}");
    assert!(outcome.lock().unwrap().contains("not backed up from this host"));
    assert!(f.objects().is_empty());
    c.backup(&opts(f.source("public"))).unwrap();
    assert_eq!(c.show(&ShowQuery::default()).unwrap().len(), 1);
}
