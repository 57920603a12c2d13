//! The archive format end to end: pack, encrypt, restore, random access, tamper detection, and what `tar` and
//! `gzip` make of it.

use crate::common;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use bakthat::archive::crypto::{CryptoError, KdfParams, MasterKey};
use bakthat::archive::extract::ExtractOptions;
use bakthat::archive::index::{EntryKind, Index};
use bakthat::archive::pack::PackOptions;
use bakthat::archive::read::Decoder;
use bakthat::archive::{self, ArchiveError, Encryption, Hints, Secret};
use bakthat::model::Compression;
use common::*;
use proptest::prelude::*;

const CHEAP: KdfParams = KdfParams { m_cost_kib: 256, t_cost: 1, parallelism: 1 };

fn enc(pw: &[u8], chunk: u32) -> Encryption {
    Encryption { master: Arc::new(MasterKey::derive(pw, MasterKey::random_salt(), CHEAP).unwrap()), chunk_size: chunk }
}

fn small_span() -> PackOptions {
    PackOptions { span: 64 << 10, ..PackOptions::default() }
}

fn pack(src: &Path, e: Option<&Encryption>, opts: &PackOptions) -> (Vec<u8>, Index) {
    let name = src.file_name().unwrap().to_str().unwrap();
    let (report, out) = archive::write_archive(src, name, opts, e, Vec::new()).unwrap();
    assert_eq!(report.index.stored_len, out.len() as u64);
    (out, report.index)
}

fn restore(data: &[u8], key: &str, secret: Option<&Secret>, dest: &Path) -> Result<(), ArchiveError> {
    archive::restore_archive(data, Hints::from_name(key, false), secret, dest, &ExtractOptions::default()).map(|_| ())
}

#[test]
fn plain_archive_is_an_ordinary_tgz() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    rich_tree(&src);
    let (data, index) = pack(&src, None, &small_span());
    assert!(index.members.len() > 50, "several members expected, got {}", index.members.len());
    let tgz = t.path().join("a.tgz");
    fs::write(&tgz, &data).unwrap();
    run(Command::new("gzip").arg("-t").arg(&tgz));
    let listing = run(Command::new("tar").arg("tzf").arg(&tgz));
    let mut from_tar: Vec<String> = listing.lines().map(|l| l.trim_end_matches('/').to_string()).collect();
    let mut from_index: Vec<String> =
        index.entries.iter().map(|e| String::from_utf8(e.path.clone()).unwrap()).collect();
    from_tar.sort();
    from_index.sort();
    assert_eq!(from_tar, from_index);
    let out = t.path().join("out");
    fs::create_dir(&out).unwrap();
    run(Command::new("tar").arg("xzf").arg(&tgz).arg("-C").arg(&out));
    assert_eq!(snapshot(&out.join("src")), snapshot(&src));
    let ours = t.path().join("ours");
    fs::create_dir(&ours).unwrap();
    restore(&data, "src.20260101000000.tgz", None, &ours).unwrap();
    assert_eq!(snapshot(&ours.join("src")), snapshot(&src));
}

#[test]
fn index_records_kinds_and_links() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    rich_tree(&src);
    let (_, index) = pack(&src, None, &PackOptions::default());
    let kind = |p: &str| index.entry(p.as_bytes()).unwrap_or_else(|| panic!("{p} missing")).kind;
    assert_eq!(kind("src"), EntryKind::Dir);
    assert_eq!(kind("src/empty"), EntryKind::Dir);
    assert_eq!(kind("src/sub/rel-link"), EntryKind::Symlink);
    let hard = index.entry(b"src/sub/text.txt").map(|e| e.kind);
    let other = index.entry(b"src/hard.txt").map(|e| e.kind);
    assert_eq!([hard, other].iter().filter(|k| **k == Some(EntryKind::HardLink)).count(), 1);
    let e = index.entry(b"src/long-target-link").unwrap();
    assert_eq!(e.link.as_deref(), Some("x".repeat(150).as_bytes()));
    let long = format!("src/sub/deeper/{}", "l".repeat(120));
    assert_eq!(index.entry(long.as_bytes()).unwrap().size, 10);
    let back = Index::from_bytes(&index.to_bytes()).unwrap();
    assert_eq!(back, index);
}

#[test]
fn random_reads_equal_slices_plain_and_encrypted() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    rich_tree(&src);
    let e = enc(b"pw", 4096);
    let secret = Secret::new(b"pw");
    for (encryption, compression) in [None, Some(&e)].into_iter().flat_map(|e| Compression::ALL.map(|c| (e, c))) {
        let (data, index) = pack(&src, encryption, &PackOptions { compression, ..small_span() });
        let dec = Decoder::new(&index, &data, Some(secret.keys())).unwrap();
        for (path, seed) in [("src/sub/big.bin", 7u64), ("src/hard.txt", 8), ("src/small.txt", 9)] {
            let original = fs::read(src.join(path.strip_prefix("src/").unwrap())).unwrap();
            let entry = index.entry(path.as_bytes()).unwrap();
            let mut x = seed;
            for _ in 0..20 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                let a = (x >> 33) % (original.len() as u64 + 1);
                let len = (x >> 13) % 300_000;
                let got = dec.read(entry, a, len).unwrap();
                let end = (a + len).min(original.len() as u64);
                assert_eq!(got, &original[a as usize..end as usize], "{path} [{a}, +{len})");
            }
        }
    }
}

/// Counts the bytes a reader fetches.
struct Counting<'a>(&'a [u8], std::sync::atomic::AtomicU64);
impl bakthat::archive::read::RangeRead for Counting<'_> {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }
    fn read_range(&self, start: u64, len: u64) -> std::io::Result<Vec<u8>> {
        let v = self.0.read_range(start, len)?;
        self.1.fetch_add(v.len() as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(v)
    }
}

#[test]
fn a_small_read_fetches_at_most_two_spans() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    rich_tree(&src);
    let e = enc(b"pw", 65536);
    let secret = Secret::new(b"pw");
    let (data, index) = pack(&src, Some(&e), &PackOptions::default());
    let counting = Counting(&data, 0.into());
    let dec = Decoder::new(&index, &counting, Some(secret.keys())).unwrap();
    let entry = index.entry(b"src/small.txt").unwrap();
    assert_eq!(dec.read(entry, 0, 4096).unwrap(), b"hello world\n");
    let fetched = counting.1.load(std::sync::atomic::Ordering::Relaxed);
    assert!(fetched <= 2 * (512 << 10) + 2 * 65600, "fetched {fetched} bytes of {}", data.len());
    assert!(fetched < data.len() as u64 / 2);
}

#[test]
fn encrypted_round_trip_and_wrong_password() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    rich_tree(&src);
    let e = enc("pässwörd".as_bytes(), 65536);
    let (data, _) = pack(&src, Some(&e), &PackOptions::default());
    let key = "src.20260101000000.tgz.enc";
    let out = t.path().join("out");
    fs::create_dir(&out).unwrap();
    restore(&data, key, Some(&Secret::new("pässwörd".as_bytes())), &out).unwrap();
    assert_eq!(snapshot(&out.join("src")), snapshot(&src));

    let other = t.path().join("other");
    fs::create_dir(&other).unwrap();
    let err = restore(&data, key, Some(&Secret::new(b"wrong")), &other).unwrap_err();
    assert!(err.is_wrong_password(), "{err}");
    assert!(matches!(restore(&data, key, None, &other), Err(ArchiveError::PasswordNeeded)));
    assert_eq!(fs::read_dir(&other).unwrap().count(), 0);
}

/// Every single-byte flip, truncation and chunk swap of an encrypted archive is an integrity (or wrong password)
/// error and leaves nothing restored.
#[test]
fn tampering_is_always_detected() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f"), bytes(3, 700, false)).unwrap();
    let e = enc(b"pw", 256);
    let secret = Secret::new(b"pw");
    for compression in Compression::ALL {
        let (data, _) = pack(&src, Some(&e), &PackOptions { compression, ..PackOptions::default() });
        let key = format!("src.20260101000000{}.enc", compression.suffix());
        tampered_copies_are_refused(&data, &key, &secret, &t.path().join(compression.as_str()));
    }
}

/// Every flipped byte, every truncation, a chunk swap and an extension of an encrypted archive: an integrity error,
/// and nothing written.
fn tampered_copies_are_refused(data: &[u8], key: &str, secret: &Secret, dest: &Path) {
    let dest = dest.to_path_buf();
    fs::create_dir(&dest).unwrap();
    let check = |bad: &[u8], what: &str| {
        let err = restore(bad, key, Some(secret), &dest).expect_err(what);
        assert!(err.is_integrity() || err.is_wrong_password(), "{what}: {err}");
        assert_eq!(fs::read_dir(&dest).unwrap().count(), 0, "{what} left files");
    };
    for i in 0..data.len() {
        let mut bad = data.to_vec();
        bad[i] ^= 0x01;
        check(&bad, &format!("flip at {i}"));
    }
    for len in 0..data.len() {
        if len < 8 {
            continue; // too short to carry the magic: not recognisable as an archive at all
        }
        check(&data[..len], &format!("truncated to {len}"));
    }
    let full = 256 + 64;
    let (h, c0, c1) = (90, 90 + full, 90 + 2 * full);
    let mut swapped = data[..h].to_vec();
    swapped.extend_from_slice(&data[c0..c1]);
    swapped.extend_from_slice(&data[h..c0]);
    swapped.extend_from_slice(&data[c1..]);
    check(&swapped, "chunk swap");
    let mut extended = data.to_vec();
    extended.extend_from_slice(&data[h..c0]);
    check(&extended, "extension");
}

#[test]
fn single_file_backup_and_raw_payloads() {
    let t = tempfile::tempdir().unwrap();
    let f = t.path().join("notes.txt");
    fs::write(&f, b"just one file\n").unwrap();
    let (data, index) = pack(&f, None, &PackOptions::default());
    assert_eq!(index.entries.len(), 1);
    assert_eq!(index.entries[0].path, b"notes.txt");
    let out = t.path().join("out");
    fs::create_dir(&out).unwrap();
    restore(&data, "notes.txt.20260101000000.tgz", None, &out).unwrap();
    assert_eq!(fs::read(out.join("notes.txt")).unwrap(), b"just one file\n");

    let e = enc(b"pw", 64);
    let (n, raw) = archive::write_raw(&b"raw payload"[..], Some(&e), Vec::new()).unwrap();
    assert_eq!(n, raw.len() as u64);
    let (mut r, found) =
        archive::decode(&raw[..], Hints::from_name("x.20260101000000.enc", true), Some(&Secret::new(b"pw"))).unwrap();
    assert_eq!(found, archive::Found::V1);
    let mut s = String::new();
    std::io::Read::read_to_string(&mut r, &mut s).unwrap();
    assert_eq!(s, "raw payload");
}

#[test]
fn legacy_archives_restore_and_index_on_full_read() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("old");
    rich_tree(&src);
    // bakthat 0.6 wrote one gzip stream (level 9) of a tar, then beefish Blowfish-CBC.
    let tgz = t.path().join("old.tgz");
    run(Command::new("tar").arg("czf").arg(&tgz).arg("-C").arg(t.path()).arg("old"));
    let plain = fs::read(&tgz).unwrap();
    let mut enc_bytes = Vec::new();
    bakthat::archive::legacy::blowfish_encrypt(&plain[..], &mut enc_bytes, b"abc").unwrap();
    let key = "old.20130101000000.tgz.enc";
    let out = t.path().join("out");
    fs::create_dir(&out).unwrap();
    restore(&enc_bytes, key, Some(&Secret::new(b"abc")), &out).unwrap();
    assert_eq!(snapshot(&out.join("old")), snapshot(&src));
    let out2 = t.path().join("out2");
    fs::create_dir(&out2).unwrap();
    let err = restore(&enc_bytes, key, Some(&Secret::new(b"abd")), &out2).unwrap_err();
    assert!(err.is_wrong_password(), "{err}");
    assert_eq!(fs::read_dir(&out2).unwrap().count(), 0);
    let idx = archive::verify_archive(&enc_bytes[..], Hints::from_name(key, true), Some(&Secret::new(b"abc"))).unwrap();
    assert!(idx.entry(b"old/sub/big.bin").is_some());
    // A plain legacy .tgz restores too.
    let out3 = t.path().join("out3");
    fs::create_dir(&out3).unwrap();
    restore(&plain, "old.20130101000000.tgz", None, &out3).unwrap();
    assert_eq!(snapshot(&out3.join("old")), snapshot(&src));
}

#[test]
fn verify_rebuilds_the_same_entries() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    rich_tree(&src);
    let e = enc(b"pw", 65536);
    for compression in Compression::ALL {
        let (data, index) = pack(&src, Some(&e), &PackOptions { compression, ..small_span() });
        let key = format!("src.1{}.enc", compression.suffix());
        let rebuilt =
            archive::verify_archive(&data[..], Hints::from_name(&key, true), Some(&Secret::new(b"pw"))).unwrap();
        assert_eq!(rebuilt.entries, index.entries);
        assert_eq!(rebuilt.tar_len, index.tar_len);
    }
}

fn tree_strategy() -> impl Strategy<Value = Vec<(String, u8, usize)>> {
    proptest::collection::vec(("[a-zA-Z0-9 é_-]{1,12}", 0u8..4, 0usize..70_000), 1..12)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn random_trees_round_trip(entries in tree_strategy(), pw in proptest::option::of("[ -~é]{1,20}"), span in 4096usize..40_000, zstd in any::<bool>()) {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("tree");
        fs::create_dir(&src).unwrap();
        for (i, (name, kind, size)) in entries.iter().enumerate() {
            let p = src.join(format!("{name}{i}"));
            match kind {
                0 => fs::write(&p, bytes(i as u64, *size, i % 2 == 0)).unwrap(),
                1 => { fs::create_dir(&p).unwrap(); fs::write(p.join("inner"), bytes(i as u64, size / 3, true)).unwrap(); }
                2 => std::os::unix::fs::symlink(format!("../target{i}"), &p).unwrap(),
                _ => fs::write(&p, b"").unwrap(),
            }
        }
        let e = pw.as_ref().map(|p| enc(p.as_bytes(), 4096));
        let compression = if zstd { Compression::Zstd } else { Compression::Gzip };
        let opts = PackOptions { span, compression, ..PackOptions::default() };
        let (data, index) = pack(&src, e.as_ref(), &opts);
        let secret = pw.as_ref().map(|p| Secret::new(p.as_bytes()));
        let key = format!("tree.1{}{}", compression.suffix(), if pw.is_some() { ".enc" } else { "" });
        let out = t.path().join("out");
        fs::create_dir(&out).unwrap();
        restore(&data, &key, secret.as_ref(), &out).unwrap();
        prop_assert_eq!(snapshot(&out.join("tree")), snapshot(&src));
        let dec = Decoder::new(&index, &data, secret.as_ref().map(|s| s.keys())).unwrap();
        for e in index.entries.iter().filter(|e| e.kind == EntryKind::File) {
            let rel = std::str::from_utf8(&e.path).unwrap().strip_prefix("tree/").unwrap();
            prop_assert_eq!(dec.read(e, 0, e.size).unwrap(), fs::read(src.join(rel)).unwrap());
        }
    }
}

#[test]
fn wrong_password_is_reported_before_data_for_v1() {
    let e = enc(b"right", 1024);
    let (_, data) = archive::write_raw(&bytes(1, 10_000, false)[..], Some(&e), Vec::new()).unwrap();
    let err =
        archive::decode(&data[..], Hints::from_name("x.tgz.enc", true), Some(&Secret::new(b"wrong"))).err().unwrap();
    assert!(matches!(err, ArchiveError::Crypto(CryptoError::WrongPassword)), "{err}");
}

/// Issue 15: the tar reader took EOF on an entry boundary for the end of the archive, so a payload cut where a
/// member ends (members end on entries) restored "successfully" without its last files, and verified. Now every
/// restore path refuses it in one line, with nothing under a final name: plain, encrypted (a valid encryption of
/// the cut payload, so the tar check is what catches it) and zstd.
#[test]
fn an_archive_cut_at_a_member_boundary_is_refused_by_restore_and_verify() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir(&src).unwrap();
    // Sizes that put every file's header on a member boundary (members hold 64 KiB of tar each; the directory's
    // header and each file's take 512 bytes): f0's header at 512, f1's at 64 KiB, f2's at 128 KiB…
    fs::write(src.join("f0"), bytes(0, (64 << 10) - 1024, false)).unwrap();
    for i in 1..6u8 {
        fs::write(src.join(format!("f{i}")), bytes(i.into(), (64 << 10) - 512, false)).unwrap();
    }
    let e = enc(b"pw", 4096);
    let secret = Secret::new(b"pw");
    for (compression, encrypted) in [(Compression::Gzip, false), (Compression::Gzip, true), (Compression::Zstd, false)]
    {
        let (data, index) = pack(&src, None, &PackOptions { compression, ..small_span() });
        // A member boundary that is also an entry's header, before the last file.
        let headers: Vec<u64> = index.entries.iter().map(|e| e.header_offset).collect();
        let last = index.entries.last().unwrap().header_offset;
        let mut cut = index.members.iter().filter(|m| m.tar_offset > 0 && m.tar_offset <= last);
        let cut = cut.rfind(|m| headers.contains(&m.tar_offset)).expect("a member starting on an entry");
        let mut payload = data[..cut.comp_offset as usize].to_vec();
        let mut key = format!("src.20260101000000{}", compression.suffix());
        if encrypted {
            payload = archive::crypto::encrypt_bytes(&e.master, &payload);
            key.push_str(".enc");
        }
        let what = format!("{compression:?}, encrypted: {encrypted}");
        let dest = t.path().join(format!("out-{}-{encrypted}", compression.as_str()));
        fs::create_dir(&dest).unwrap();
        let err = restore(&payload, &key, Some(&secret), &dest).expect_err(&what);
        assert!(err.to_string().contains("truncated"), "{what}: {err}");
        assert_eq!(fs::read_dir(&dest).unwrap().count(), 0, "{what}: nothing restored");
        let err = archive::verify_archive(&payload[..], Hints::from_name(&key, false), Some(&secret)).expect_err(&what);
        assert!(err.to_string().contains("truncated"), "{what}: {err}");
        // The whole archive still restores.
        restore(&data, &format!("src.20260101000000{}", compression.suffix()), None, &dest).unwrap();
    }
}
