//! KeyValue and `share` against real S3 servers (moto, and the Swift all-in-one's s3api, which checks signatures and
//! expiry), started by scripts/test.sh; a missing server fails these tests.

use crate::common;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command as StdCommand, Output, Stdio};
use std::time::{Duration, Instant};

use bakthat::archive::legacy::blowfish_encrypt;
use bakthat::archive::Secret;
use bakthat::config::{Config, Profile};
use bakthat::inventory::Inventory;
use bakthat::kv::{KeyValue, KvError, META_ENC, META_FORMAT, META_GZIP};
use bakthat::model::StoredName;
use bakthat::ops::Ctx;
use bakthat::storage::aws::AwsAccess;
use bakthat::storage::s3::{PresignMethod, S3Settings, S3Store};
use bakthat::storage::{Backend, PutOptions};
use common::cli::{ok, Home};
use common::moto;
use serde_json::json;

/// A context whose profile points at `bucket` on moto, with its own inventory in `dir`.
fn ctx(dir: &Path, bucket: &str) -> Ctx {
    let mut config = Config::empty(&dir.join("bakthat.yml"));
    let profile = Profile {
        access_key: Some("test".into()),
        secret_key: Some("test".into()),
        s3_bucket: Some(bucket.into()),
        region_name: Some("us-east-1".into()),
        endpoint_url: Some(moto::endpoint()),
        ..Profile::default()
    };
    config.set_profile("default", profile);
    Ctx::new(config, "default", Inventory::open(dir.join("inv.sqlite")).unwrap()).unwrap()
}

fn http_get(url: &str) -> (u16, Vec<u8>) {
    let resp = reqwest::blocking::get(url).unwrap();
    let status = resp.status().as_u16();
    (status, resp.bytes().unwrap().to_vec())
}

fn query_param(url: &str, name: &str) -> Option<String> {
    let q = url.split_once('?')?.1;
    q.split('&').find_map(|kv| kv.strip_prefix(&format!("{name}=")).map(str::to_string))
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

#[test]
fn kv_round_trips_and_a_fresh_client_decodes_from_the_object_alone() {
    let bucket = moto::unique("kv");
    let t = tempfile::tempdir().unwrap();
    let c = ctx(t.path(), &bucket);
    let kv = KeyValue::open(&c).unwrap();
    let secret = Secret::new(b"kv password");
    let value = json!({"list": [1, 2, 3], "name": "bakthat", "nested": {"ok": true}});
    kv.set_key("plain", &value, false, None).unwrap();
    kv.set_key("gz", &value, true, None).unwrap();
    kv.set_key("enc", &value, true, Some(&secret)).unwrap();
    for k in ["plain", "gz", "enc"] {
        assert_eq!(kv.get_key(k, Some(&secret)).unwrap(), Some(value.clone()), "{k}");
    }
    assert_eq!(kv.get_key("missing", None).unwrap(), None);

    // The objects describe themselves.
    let store = S3Store::new(&moto::s3_settings(&moto::endpoint(), &bucket)).unwrap();
    let meta = |k: &str| store.get_with_metadata(k).unwrap().unwrap();
    let (bytes, m) = meta("plain");
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&bytes).unwrap(), value);
    assert_eq!((m[META_FORMAT].as_str(), m[META_GZIP].as_str(), m[META_ENC].as_str()), ("json", "0", "none"));
    let (bytes, m) = meta("gz");
    assert!(bytes.starts_with(&[0x1f, 0x8b]));
    assert_eq!((m[META_GZIP].as_str(), m[META_ENC].as_str()), ("1", "none"));
    let (bytes, m) = meta("enc");
    assert!(bakthat::archive::crypto::is_v1(&bytes));
    assert_eq!((m[META_GZIP].as_str(), m[META_ENC].as_str()), ("1", "v1"));

    // Rows as 0.6 recorded them.
    let row = c.inventory.get(&StoredName::from_key("enc")).unwrap().unwrap();
    assert_eq!((row.backend.as_str(), row.filename.as_str()), ("s3", "enc"));
    assert_eq!(row.metadata["KeyValue"], json!(true));
    assert_eq!((row.metadata["is_enc"].clone(), row.metadata["is_gzipped"].clone()), (json!(true), json!(true)));

    // A fresh client (empty inventory) decodes everything; the encrypted one needs the password.
    let t2 = tempfile::tempdir().unwrap();
    let c2 = ctx(t2.path(), &bucket);
    let kv2 = KeyValue::open(&c2).unwrap();
    assert!(c2.inventory.get(&StoredName::from_key("gz")).unwrap().is_none());
    for k in ["plain", "gz", "enc"] {
        assert_eq!(kv2.get_key(k, Some(&secret)).unwrap(), Some(value.clone()), "fresh client, {k}");
    }
    assert!(kv2.get_key("enc", None).unwrap_err().needs_password());
    let e = kv2.get_key("enc", Some(&Secret::new(b"wrong"))).unwrap_err();
    assert!(matches!(e, KvError::WrongPassword { .. }), "{e}");

    // Keys with '/' work, as they did in 0.6 (S3 keys are not file names).
    kv.set_key("app/config.json", &value, true, Some(&secret)).unwrap();
    assert_eq!(kv2.get_key("app/config.json", Some(&secret)).unwrap(), Some(value.clone()));
    assert!(kv.delete_key("app/config.json").unwrap());
    assert!(kv.set_key("app//x", &value, false, None).is_err(), "an empty segment is refused");

    // Overwrite, then delete.
    kv.set_key("gz", &json!("v2"), true, None).unwrap();
    assert_eq!(kv2.get_key("gz", None).unwrap(), Some(json!("v2")));
    assert!(kv.delete_key("gz").unwrap());
    assert!(!kv.delete_key("gz").unwrap());
    assert_eq!(kv2.get_key("gz", None).unwrap(), None);
    assert!(c.inventory.get(&StoredName::from_key("gz")).unwrap().unwrap().is_deleted);
}

#[test]
fn kv_reads_bakthat_0_6_objects() {
    let bucket = moto::unique("kv06");
    let t = tempfile::tempdir().unwrap();
    let c = ctx(t.path(), &bucket);
    let kv = KeyValue::open(&c).unwrap();
    let store = S3Store::new(&moto::s3_settings(&moto::endpoint(), &bucket)).unwrap();
    let value = json!({"from": "bakthat 0.6", "n": 42});
    let text = serde_json::to_vec(&value).unwrap();
    // 0.6 wrote no metadata: gzipped JSON, and beefish Blowfish of gzipped JSON (the password as the key).
    store.put_bytes("old-gz", &gzip(&text), &PutOptions::default()).unwrap();
    let mut enc = Vec::new();
    blowfish_encrypt(&gzip(&text)[..], &mut enc, b"old pass").unwrap();
    store.put_bytes("old-enc", &enc, &PutOptions::default()).unwrap();
    store.put_bytes("old-plain", &text, &PutOptions::default()).unwrap();
    assert!(store.get_with_metadata("old-gz").unwrap().unwrap().1.is_empty());

    assert_eq!(kv.get_key("old-gz", None).unwrap(), Some(value.clone()));
    assert_eq!(kv.get_key("old-plain", None).unwrap(), Some(value.clone()));
    assert_eq!(kv.get_key("old-enc", Some(&Secret::new(b"old pass"))).unwrap(), Some(value));
    assert!(kv.get_key("old-enc", None).unwrap_err().needs_password());
    let e = kv.get_key("old-enc", Some(&Secret::new(b"not it"))).unwrap_err();
    assert!(matches!(e, KvError::WrongPassword { .. }), "{e}");
}

#[test]
fn kv_urls_return_the_stored_bytes_and_carry_their_expiry() {
    let bucket = moto::unique("kvurl");
    let t = tempfile::tempdir().unwrap();
    let c = ctx(t.path(), &bucket);
    let kv = KeyValue::open(&c).unwrap();
    kv.set_key("k", &json!({"a": 1}), true, None).unwrap();
    let stored = S3Store::new(&moto::s3_settings(&moto::endpoint(), &bucket)).unwrap().get_with_metadata("k");
    let stored = stored.unwrap().unwrap().0;
    let url = kv.get_key_url("k", Duration::from_secs(90), PresignMethod::Get).unwrap();
    assert!(url.starts_with(&format!("{}/{bucket}/k?", moto::endpoint())), "{url}");
    assert_eq!(query_param(&url, "X-Amz-Algorithm").as_deref(), Some("AWS4-HMAC-SHA256"));
    // moto does not check presigned signatures or expiry (see s3api_presigned_urls_expire for a server that does).
    assert_eq!(query_param(&url, "X-Amz-Expires").as_deref(), Some("90"));
    assert_eq!(http_get(&url), (200, stored));
    let e = kv.get_key_url("missing", Duration::from_secs(60), PresignMethod::Get).unwrap_err().to_string();
    assert!(e.contains("missing"), "{e}");
    let e = kv.get_key_url("k", Duration::from_secs(8 * 86400), PresignMethod::Get).unwrap_err().to_string();
    assert!(e.contains("7 days"), "{e}");
}

/// The Swift all-in-one's s3api: an S3 server that checks signatures.
fn s3api_settings(bucket: &str, secret: &str) -> S3Settings {
    let endpoint = common::swift::s3_endpoint();
    S3Settings {
        access: AwsAccess {
            access_key: Some("test:tester".into()),
            secret_key: Some(secret.into()),
            ..moto::access(&endpoint)
        },
        ..moto::s3_settings(&endpoint, bucket)
    }
}

#[test]
fn s3api_presigned_urls_expire() {
    let bucket = moto::unique("presign");
    let store = S3Store::new(&s3api_settings(&bucket, "testing")).unwrap();
    store.put_bytes("obj", b"shared bytes", &PutOptions::default()).unwrap();
    let long = store.presign_get("obj", Duration::from_secs(600)).unwrap();
    assert_eq!(http_get(&long), (200, b"shared bytes".to_vec()));
    let short = store.presign_get("obj", Duration::from_secs(1)).unwrap();
    let signed_at = Instant::now();
    // Wait for the expiry itself (a clock condition, not a synchronisation): s3api compares X-Amz-Date + Expires
    // with its clock at a one-second resolution.
    std::thread::sleep(Duration::from_millis(2500).saturating_sub(signed_at.elapsed()));
    let (status, body) = http_get(&short);
    assert_eq!(status, 403, "an expired URL must be refused: {}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("expired"), "{}", String::from_utf8_lossy(&body));
    // A tampered signature is refused too.
    let tampered = long.replace("X-Amz-Signature=", "X-Amz-Signature=0");
    assert_eq!(http_get(&tampered).0, 403);
    store.delete("obj").unwrap();
}

/// Issue 14: 0.6's `get_key_url(key, expires, method)` made URLs for any method (boto's generate_url); only GET
/// was signed before. Each method's URL is used against s3api, which checks SigV4 signatures, and a tampered one
/// is refused.
#[test]
fn s3api_presigned_put_head_and_delete_urls_work_and_are_checked() {
    let bucket = moto::unique("presign-m");
    let store = S3Store::new(&s3api_settings(&bucket, "testing")).unwrap();
    store.put_bytes("seed", b"x", &PutOptions::default()).unwrap(); // creates the bucket
    let client = reqwest::blocking::Client::new();
    let url = |m| store.presign(m, "obj", Duration::from_secs(600)).unwrap();
    let put = url(PresignMethod::Put);
    let tampered = put.replace("X-Amz-Signature=", "X-Amz-Signature=0");
    let refused = client.put(&tampered).body(b"evil".to_vec()).send().unwrap();
    assert_eq!(refused.status().as_u16(), 403);
    assert_eq!(store.head("obj").unwrap(), None, "a refused PUT wrote nothing");
    let sent = client.put(&put).body(b"new bytes".to_vec()).send().unwrap();
    assert!(sent.status().is_success(), "{:?}", sent.text());
    assert_eq!(http_get(&url(PresignMethod::Get)), (200, b"new bytes".to_vec()));
    let head = client.head(url(PresignMethod::Head)).send().unwrap();
    assert_eq!(head.status().as_u16(), 200);
    assert_eq!(head.headers()["content-length"], "9");
    // A URL is for its method only: the GET URL cannot delete.
    let wrong = client.delete(url(PresignMethod::Get)).send().unwrap();
    assert_eq!(wrong.status().as_u16(), 403);
    let deleted = client.delete(url(PresignMethod::Delete)).send().unwrap();
    assert_eq!(deleted.status().as_u16(), 204);
    assert_eq!(store.head("obj").unwrap(), None);
    store.delete("seed").unwrap();
}

// ---- the command line ----

/// A home whose default profile has `bucket` and a vault of the same name on moto, and whose `cold` profile puts
/// archives of the same bucket in the GLACIER storage class.
fn cli_home(bucket: &str) -> Home {
    let profile = moto::profile_yaml(bucket);
    Home::new(|dir| {
        format!(
            "default:\n{profile}  glacier_vault: {bucket}\n  local_path: {}\ncold:\n{profile}  s3_storage_class: GLACIER\n",
            dir.join("local").display()
        )
    })
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn cli_kv_set_get_url_delete() {
    let env = cli_home(&moto::unique("clikv"));
    ok(&env.run(&["kv", "set", "conf", r#"{"a": [1, 2]}"#], None), "kv set");
    assert_eq!(ok(&env.run(&["kv", "get", "conf"], None), "kv get").trim(), r#"{"a":[1,2]}"#);
    ok(&env.run(&["kv", "set", "secret", r#""hidden""#], Some("pw")), "encrypted kv set");
    let out = env.run(&["kv", "get", "secret"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("password"), "{}", stderr(&out));
    assert_eq!(ok(&env.run(&["kv", "get", "secret"], Some("pw")), "kv get").trim(), r#""hidden""#);

    let url = ok(&env.run(&["kv", "url", "conf", "--expires", "10m"], None), "kv url");
    let url = url.trim();
    assert_eq!(query_param(url, "X-Amz-Expires").as_deref(), Some("600"));
    let (status, body) = http_get(url);
    assert_eq!(status, 200);
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&body[..]), &mut text).unwrap();
    assert_eq!(text, r#"{"a":[1,2]}"#);
    let out = env.run(&["kv", "url", "conf", "--expires", "8D"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("7 days"), "{}", stderr(&out));

    let out = env.run(&["kv", "set", "bad", "not json"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not JSON"), "{}", stderr(&out));
    ok(&env.run(&["kv", "delete", "conf"], None), "kv delete");
    let out = env.run(&["kv", "get", "conf"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no key conf"), "{}", stderr(&out));
}

/// Lists a .tgz given on stdin with `tar tz`.
fn tar_list(tgz: &[u8]) -> String {
    let mut child = StdCommand::new("tar")
        .args(["tz"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = tgz.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "tar tz failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn cli_share_gives_a_url_that_tar_can_list() {
    let env = cli_home(&moto::unique("share"));
    let src = env.dir.path().join("src/project");
    common::rich_tree(&src);
    let s = src.to_str().unwrap();
    ok(&env.run(&["backup", s, "-d", "s3", "--prompt", "no"], None), "backup");
    let out = ok(&env.run(&["share", "project", "--expires", "30m"], None), "share");
    let url = out.lines().next().unwrap();
    assert_eq!(query_param(url, "X-Amz-Expires").as_deref(), Some("1800"));
    assert!(out.contains(&format!("curl -fsS '{url}' | tar xz")), "{out}");
    let (status, body) = http_get(url);
    assert_eq!(status, 200);
    let listing = tar_list(&body);
    for p in ["project/small.txt", "project/sub/big.bin", "project/sub/deeper/"] {
        assert!(listing.lines().any(|l| l.starts_with(p)), "{p} not in {listing}");
    }

    // Encrypted: the recipient decrypts with scripts/bakthat-decrypt.
    ok(&env.run(&["backup", s, "-d", "s3", "--name", "secret"], Some("share pw")), "encrypted backup");
    let out = ok(&env.run(&["share", "secret"], None), "share");
    assert!(out.contains("BAKTHAT_PASSWORD=… bakthat-decrypt - | tar xz"), "{out}");
    assert!(out.contains("scripts/bakthat-decrypt"), "{out}");
    // Issue 12: the hint said `pip install cryptography`, which Debian 12 refuses outside a venv (and 38 was too old).
    assert!(out.contains("apt install python3-cryptography python3-argon2"), "{out}");
    let (status, body) = http_get(out.lines().next().unwrap());
    assert_eq!(status, 200);
    let python = std::env::var("BAKTHAT_PYTHON").unwrap_or_else(|_| "/opt/bakthat-venv/bin/python".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/bakthat-decrypt");
    let mut child = StdCommand::new(python)
        .arg(script)
        .arg("-")
        .env("BAKTHAT_PASSWORD", "share pw")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&body));
    let dec = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(dec.status.success(), "bakthat-decrypt: {}", String::from_utf8_lossy(&dec.stderr));
    assert!(tar_list(&dec.stdout).contains("project/small.txt"));

    // In an archive class: restored first (moto restores at once; on AWS this exits 75 until it is done).
    ok(&env.run(&["-p", "cold", "backup", s, "-d", "s3", "--prompt", "no", "--name", "cold"], None), "cold backup");
    let out = ok(&env.run(&["-p", "cold", "share", "cold"], None), "share of a cold backup");
    let (status, body) = http_get(out.lines().next().unwrap());
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(tar_list(&body).contains("project/small.txt"));

    // Limits and other stores.
    let out = env.run(&["share", "project", "--expires", "8D"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("7 days"), "{}", stderr(&out));
    ok(&env.run(&["backup", s, "-d", "local", "--prompt", "no", "--name", "here"], None), "local backup");
    let out = env.run(&["share", "here", "-d", "local"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("only backups in s3"), "{}", stderr(&out));
    let out = env.run(&["share", "here"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no backup matches here in s3"), "{}", stderr(&out));
}

#[test]
fn s3api_checks_credentials() {
    let bucket = moto::unique("auth");
    let good = S3Store::new(&s3api_settings(&bucket, "testing")).unwrap();
    // A round trip, multipart included, on a server that checks every signature.
    let big = common::bytes(3, (6 << 20) + 123, false);
    let mut up = good.create("big", &PutOptions::default()).unwrap();
    up.write_all(&big).unwrap();
    up.commit().unwrap();
    good.put_bytes("small", b"tiny", &PutOptions::default()).unwrap();
    let mut back = Vec::new();
    std::io::Read::read_to_end(&mut good.get("big").unwrap(), &mut back).unwrap();
    assert!(back == big, "multipart object read back differs");
    assert_eq!(good.get_range("big", 5 << 20, 10).unwrap(), big[5 << 20..(5 << 20) + 10].to_vec());
    let keys: Vec<String> = good.list("").unwrap().into_iter().map(|o| o.key).collect();
    assert_eq!(keys, ["big", "small"]);

    // A wrong secret: an authentication error that says what to check, on reads and on writes.
    let bad = S3Store::new(&s3api_settings(&bucket, "not the key")).unwrap();
    for e in [bad.get("small").err().unwrap(), bad.put_bytes("x", b"x", &PutOptions::default()).unwrap_err()] {
        assert!(matches!(e, bakthat::storage::StorageError::Auth { .. }), "{e:?}");
        let msg = common::error_chain(&e);
        assert!(msg.contains("refused the credentials") && msg.contains("secret_key"), "{msg}");
        assert!(!msg.contains('\n'), "one line: {msg}");
    }
    good.delete("big").unwrap();
    good.delete("small").unwrap();

    // The command line: one line on stderr, exit 1.
    let endpoint = common::swift::s3_endpoint();
    let home = Home::new(|_| {
        format!(
            "default:\n  access_key: \"test:tester\"\n  secret_key: wrong\n  region_name: us-east-1\n  \
             s3_bucket: {bucket}\n  endpoint_url: {endpoint}\n"
        )
    });
    fs::write(home.path("file.txt"), b"data").unwrap();
    let out = home.run(&["backup", home.path("file.txt").to_str().unwrap(), "-d", "s3", "--prompt", "no"], None);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("refused the credentials") && err.contains("SignatureDoesNotMatch"), "{err}");
}
