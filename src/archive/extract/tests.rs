use super::*;
use std::collections::BTreeMap;
use std::io::Cursor;
use std::os::unix::fs::FileTypeExt;

const T0: u64 = 1_600_000_000;

// ---- building archives ----

/// One raw ustar entry: a hand-written 512-byte header (any name, even hostile) followed by padded data.
fn raw_entry(name: &[u8], typeflag: u8, link: &[u8], data: &[u8]) -> Vec<u8> {
    assert!(name.len() <= 100 && link.len() <= 100);
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name);
    h[100..108].copy_from_slice(if typeflag == b'5' { b"0000755\0" } else { b"0000644\0" });
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
    h[136..148].copy_from_slice(format!("{T0:011o}\0").as_bytes());
    h[156] = typeflag;
    h[157..157 + link.len()].copy_from_slice(link);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    // The checksum is the sum of all header bytes with the checksum field itself read as eight spaces.
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut out = h.to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

fn raw_archive(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut out: Vec<u8> = entries.concat();
    out.extend_from_slice(&[0u8; 1024]);
    out
}

fn header(kind: EntryType, mode: u32, mtime: u64, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_mtime(mtime);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h
}

struct Tar(tar::Builder<Vec<u8>>);

impl Tar {
    fn new() -> Self {
        Tar(tar::Builder::new(Vec::new()))
    }
    fn file(mut self, path: &str, mode: u32, mtime: u64, data: &[u8]) -> Self {
        let mut h = header(EntryType::Regular, mode, mtime, data.len() as u64);
        self.0.append_data(&mut h, path, data).unwrap();
        self
    }
    fn dir(mut self, path: &str, mode: u32, mtime: u64) -> Self {
        let mut h = header(EntryType::Directory, mode, mtime, 0);
        self.0.append_data(&mut h, path, io::empty()).unwrap();
        self
    }
    fn link(mut self, kind: EntryType, path: &str, target: &str, mtime: u64) -> Self {
        let mut h = header(kind, 0o777, mtime, 0);
        self.0.append_link(&mut h, path, target).unwrap();
        self
    }
    fn special(mut self, kind: EntryType, path: &str) -> Self {
        let mut h = header(kind, 0o644, T0, 0);
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
        self.0.append_data(&mut h, path, io::empty()).unwrap();
        self
    }
    fn build(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

// ---- observing the file system ----

/// Every path under `root` (not following symlinks) with its type and content or target.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
        for child in fs::read_dir(dir).unwrap() {
            let path = child.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            if meta.file_type().is_symlink() {
                out.insert(rel, format!("symlink -> {}", fs::read_link(&path).unwrap().display()));
            } else if meta.is_dir() {
                out.insert(rel, format!("dir {:o}", meta.mode() & 0o7777));
                walk(root, &path, out);
            } else {
                let data = fs::read(&path).unwrap();
                out.insert(rel, format!("file {:o} {}", meta.mode() & 0o7777, String::from_utf8_lossy(&data)));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn staging_dirs(dest: &Path) -> Vec<PathBuf> {
    fs::read_dir(dest)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(STAGING_PREFIX))
        .collect()
}

fn mtime_of(meta: &fs::Metadata) -> u64 {
    meta.modified().unwrap().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs()
}

/// A scratch area with `dest/` (holding one file) and a sibling `outside/`.
struct Scene {
    root: tempfile::TempDir,
}

impl Scene {
    fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join("dest")).unwrap();
        fs::create_dir(root.path().join("outside")).unwrap();
        fs::write(root.path().join("dest/keep.txt"), b"keep").unwrap();
        Scene { root }
    }
    fn dest(&self) -> PathBuf {
        self.root.path().join("dest")
    }
    fn outside(&self) -> PathBuf {
        self.root.path().join("outside")
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

// ---- round trip ----

#[test]
fn round_trip_of_a_tree() {
    let scene = Scene::new();
    let dest = scene.dest();
    let big = pattern(1_300_000);
    let long_dir = format!("top/{}/{}", "d".repeat(60), "e".repeat(60));
    let long_file = format!("{long_dir}/{}.txt", "f".repeat(80));
    let archive = Tar::new()
        .dir("top", 0o750, T0 + 1)
        .file("top/empty", 0o644, T0 + 2, b"")
        .file("top/big.bin", 0o600, T0 + 3, &big)
        .file("top/run.sh", 0o755, T0 + 4, b"#!/bin/sh\n")
        .dir("top/ro", 0o555, T0 + 5)
        .file("top/ro/inner.txt", 0o444, T0 + 6, b"inner")
        .dir("top/emptydir", 0o700, T0 + 7)
        .file("top/implicit/deeper/file.txt", 0o644, T0 + 8, b"deep")
        .file("top/late/child.txt", 0o644, T0 + 9, b"child")
        .dir("top/late", 0o711, T0 + 10)
        .link(EntryType::Symlink, "top/rel-link", "implicit/deeper/file.txt", T0 + 11)
        .link(EntryType::Symlink, "top/abs-link", "/nonexistent/bakthat/target", T0 + 12)
        .link(EntryType::Link, "top/hard", "top/big.bin", T0)
        .file(&long_file, 0o640, T0 + 13, b"long")
        .file("second.txt", 0o644, T0 + 14, b"second")
        .build();

    let summary = extract(Cursor::new(archive), &dest, &ExtractOptions::default()).unwrap();

    assert_eq!(summary.top_level, vec![PathBuf::from("top"), PathBuf::from("second.txt")]);
    assert_eq!(summary.entries, 15);
    assert_eq!(summary.bytes, big.len() as u64 + 10 + 5 + 4 + 5 + 4 + 6);
    assert!(summary.skipped.is_empty());
    assert!(staging_dirs(&dest).is_empty());

    let check_file = |rel: &str, mode: u32, mtime: u64, data: &[u8]| {
        let path = dest.join(rel);
        let meta = fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_file(), "{rel}");
        assert_eq!(meta.mode() & 0o7777, mode, "{rel}");
        assert_eq!(mtime_of(&meta), mtime, "{rel}");
        assert_eq!(fs::read(&path).unwrap(), data, "{rel}");
    };
    check_file("top/empty", 0o644, T0 + 2, b"");
    check_file("top/big.bin", 0o600, T0 + 3, &big);
    check_file("top/run.sh", 0o755, T0 + 4, b"#!/bin/sh\n");
    check_file("top/ro/inner.txt", 0o444, T0 + 6, b"inner");
    check_file("top/implicit/deeper/file.txt", 0o644, T0 + 8, b"deep");
    check_file("top/late/child.txt", 0o644, T0 + 9, b"child");
    check_file(&long_file, 0o640, T0 + 13, b"long");
    check_file("second.txt", 0o644, T0 + 14, b"second");
    check_file("keep.txt", 0o644, mtime_of(&fs::metadata(dest.join("keep.txt")).unwrap()), b"keep");

    let check_dir = |rel: &str, mode: u32, mtime: u64| {
        let meta = fs::symlink_metadata(dest.join(rel)).unwrap();
        assert!(meta.file_type().is_dir(), "{rel}");
        assert_eq!(meta.mode() & 0o7777, mode, "{rel}");
        assert_eq!(mtime_of(&meta), mtime, "{rel}");
    };
    check_dir("top", 0o750, T0 + 1);
    check_dir("top/ro", 0o555, T0 + 5);
    check_dir("top/emptydir", 0o700, T0 + 7);
    check_dir("top/late", 0o711, T0 + 10);
    assert!(fs::read_dir(dest.join("top/emptydir")).unwrap().next().is_none());
    let implicit = fs::symlink_metadata(dest.join("top/implicit")).unwrap();
    assert!(implicit.is_dir());

    assert_eq!(fs::read_link(dest.join("top/rel-link")).unwrap(), Path::new("implicit/deeper/file.txt"));
    assert_eq!(fs::read_to_string(dest.join("top/rel-link")).unwrap(), "deep");
    assert_eq!(fs::read_link(dest.join("top/abs-link")).unwrap(), Path::new("/nonexistent/bakthat/target"));
    assert_eq!(mtime_of(&fs::symlink_metadata(dest.join("top/abs-link")).unwrap()), T0 + 12);

    let hard = fs::symlink_metadata(dest.join("top/hard")).unwrap();
    assert_eq!(hard.ino(), fs::symlink_metadata(dest.join("top/big.bin")).unwrap().ino());
    assert_eq!(hard.nlink(), 2);
}

#[test]
fn leading_dot_slash_and_the_root_entry() {
    let scene = Scene::new();
    let archive = raw_archive(&[
        raw_entry(b"./", b'5', b"", b""),
        raw_entry(b"./a/", b'5', b"", b""),
        raw_entry(b"./a/./b.txt", b'0', b"", b"b"),
        raw_entry(b"a//c.txt", b'0', b"", b"c"),
    ]);
    let summary = extract(Cursor::new(archive), &scene.dest(), &ExtractOptions::default()).unwrap();
    assert_eq!(summary.top_level, vec![PathBuf::from("a")]);
    assert_eq!(summary.entries, 3);
    assert_eq!(fs::read(scene.dest().join("a/b.txt")).unwrap(), b"b");
    assert_eq!(fs::read(scene.dest().join("a/c.txt")).unwrap(), b"c");
}

#[test]
fn pax_long_names_are_used() {
    let scene = Scene::new();
    let name = format!("p/{}/{}.txt", "x".repeat(120), "y".repeat(100));
    let mut builder = tar::Builder::new(Vec::new());
    let mut h = header(EntryType::Regular, 0o644, T0, 3);
    builder.append_pax_extensions([("path", name.as_bytes())]).unwrap();
    h.set_path("placeholder").unwrap();
    h.set_cksum();
    builder.append(&h, &b"pax"[..]).unwrap();
    let archive = builder.into_inner().unwrap();
    extract(Cursor::new(archive), &scene.dest(), &ExtractOptions::default()).unwrap();
    assert_eq!(fs::read(scene.dest().join(&name)).unwrap(), b"pax");
    assert!(!scene.dest().join("placeholder").exists());
}

fn pax_entry(name: &[u8]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut h = header(EntryType::Regular, 0o644, T0, 3);
    builder.append_pax_extensions([("path", name)]).unwrap();
    h.set_path("placeholder").unwrap();
    h.set_cksum();
    builder.append(&h, &b"pax"[..]).unwrap();
    builder.into_inner().unwrap()
}

// Regression (issue 11, item 1): names over NAME_MAX or PATH_MAX reached the filesystem and failed there as an
// I/O error ("File name too long") after part of the archive was written to staging; they are refused as
// unsafe entries, by the rule every restore path shares.
#[test]
fn over_long_names_are_refused_as_unsafe() {
    let scene = Scene::new();
    let msg = assert_refused(&scene, pax_entry(format!("d/{}", "x".repeat(256)).as_bytes()));
    assert!(msg.contains("longer than 255 bytes"), "{msg}");
    let deep = "d/".repeat(2048) + "f";
    let msg = assert_refused(&scene, pax_entry(deep.as_bytes()));
    assert!(msg.contains("longer than 4095 bytes"), "{msg}");
    // The limits themselves are fine.
    let at_limit = format!("{}/{}", "a".repeat(255), "b".repeat(255));
    extract(Cursor::new(pax_entry(at_limit.as_bytes())), &scene.dest(), &ExtractOptions::default()).unwrap();
    assert_eq!(fs::read(scene.dest().join(&at_limit)).unwrap(), b"pax");
}

// ---- hostile archives ----

/// Extracts `archive`, expects `Unsafe`, and checks that nothing changed anywhere in the scene.
fn assert_refused(scene: &Scene, archive: Vec<u8>) -> String {
    let before = snapshot(scene.root.path());
    let err = extract(Cursor::new(archive), &scene.dest(), &ExtractOptions::default()).unwrap_err();
    let ExtractError::Unsafe { reason, .. } = &err else { panic!("expected Unsafe, got {err:?}") };
    assert!(!reason.is_empty());
    assert_eq!(snapshot(scene.root.path()), before);
    assert!(staging_dirs(&scene.dest()).is_empty());
    err.to_string()
}

#[test]
fn hostile_corpus_is_refused_and_leaves_everything_unchanged() {
    let scene = Scene::new();
    let outside = scene.outside();
    let outside_abs = outside.as_os_str().as_bytes();
    let symlink_out = [outside_abs, b"/evil".as_slice()].concat();
    let good = raw_entry(b"good.txt", b'0', b"", b"good");
    let cases: Vec<(&str, Vec<Vec<u8>>)> = vec![
        ("dotdot", vec![good.clone(), raw_entry(b"../x", b'0', b"", b"x")]),
        ("absolute", vec![good.clone(), raw_entry(&symlink_out, b'0', b"", b"x")]),
        ("absolute etc", vec![raw_entry(b"/etc/bakthat-extract-test", b'0', b"", b"x")]),
        ("dotdot inside", vec![raw_entry(b"a/../../x", b'0', b"", b"x")]),
        ("dotdot dir", vec![raw_entry(b"a/../../d/", b'5', b"", b"")]),
        (
            "through absolute symlink",
            vec![raw_entry(b"link", b'2', outside_abs, b""), raw_entry(b"link/evil", b'0', b"", b"x")],
        ),
        (
            "through symlink deeper",
            vec![raw_entry(b"d/link", b'2', outside_abs, b""), raw_entry(b"d/link/sub/evil", b'0', b"", b"x")],
        ),
        ("through dotdot symlink", vec![raw_entry(b"link", b'2', b"..", b""), raw_entry(b"link/x", b'0', b"", b"x")]),
        (
            "dir through symlink",
            vec![raw_entry(b"link", b'2', outside_abs, b""), raw_entry(b"link/d/", b'5', b"", b"")],
        ),
        (
            "symlink through symlink",
            vec![raw_entry(b"link", b'2', b"..", b""), raw_entry(b"link/s", b'2', b"/etc/passwd", b"")],
        ),
        ("hard link outside", vec![good.clone(), raw_entry(b"hl", b'1', b"../../outside", b"")]),
        ("hard link absolute", vec![raw_entry(b"hl", b'1', b"/etc/passwd", b"")]),
        ("hard link to nothing", vec![good.clone(), raw_entry(b"hl", b'1', b"never-extracted", b"")]),
        ("hard link to a dir", vec![raw_entry(b"d/", b'5', b"", b""), raw_entry(b"hl", b'1', b"d", b"")]),
        ("hard link to a symlink", vec![raw_entry(b"s", b'2', b"/etc/passwd", b""), raw_entry(b"hl", b'1', b"s", b"")]),
        ("empty name", vec![raw_entry(b"", b'0', b"", b"x")]),
        ("dot file", vec![raw_entry(b".", b'0', b"", b"x")]),
        ("symlink without target", vec![raw_entry(b"s", b'2', b"", b"")]),
        ("file then dir of the same name", vec![raw_entry(b"f", b'0', b"", b"x"), raw_entry(b"f/", b'5', b"", b"")]),
        ("file through a file", vec![raw_entry(b"f", b'0', b"", b"x"), raw_entry(b"f/g", b'0', b"", b"x")]),
    ];
    for (label, entries) in cases {
        let message = assert_refused(&scene, raw_archive(&entries));
        assert!(message.starts_with("refusing unsafe archive entry "), "{label}: {message}");
    }
    assert!(fs::read_dir(&outside).unwrap().next().is_none());
}

#[test]
fn symlink_reason_names_the_symlink() {
    let scene = Scene::new();
    let archive = raw_archive(&[raw_entry(b"link", b'2', b"..", b""), raw_entry(b"link/x", b'0', b"", b"x")]);
    let message = assert_refused(&scene, archive);
    assert_eq!(message, "refusing unsafe archive entry link/x: path goes through a symlink");
}

#[test]
fn hard_link_reason() {
    let scene = Scene::new();
    let message = assert_refused(&scene, raw_archive(&[raw_entry(b"hl", b'1', b"../../outside", b"")]));
    assert_eq!(message, "refusing unsafe archive entry hl: hard link points outside the archive");
}

#[test]
fn control_characters_in_names_are_escaped_in_messages() {
    let scene = Scene::new();
    let message = assert_refused(&scene, raw_archive(&[raw_entry(b"\x1b[2J/../x", b'0', b"", b"x")]));
    assert!(!message.contains('\x1b'), "{message:?}");
    assert!(message.contains("\\u{1b}[2J"), "{message:?}");
}

#[test]
fn normalize_rules() {
    assert_eq!(normalize(b"a/b").unwrap(), Some(PathBuf::from("a/b")));
    assert_eq!(normalize(b"./a/b/").unwrap(), Some(PathBuf::from("a/b")));
    assert_eq!(normalize(b"a/./b").unwrap(), Some(PathBuf::from("a/b")));
    assert_eq!(normalize(b"./").unwrap(), None);
    assert_eq!(normalize(b".").unwrap(), None);
    assert_eq!(normalize(b"..a/b..").unwrap(), Some(PathBuf::from("..a/b..")));
    assert_eq!(normalize(b""), Err("empty name"));
    assert_eq!(normalize(b"a\0b"), Err("name contains a NUL byte"));
    assert_eq!(normalize(b"/a"), Err("absolute path"));
    assert_eq!(normalize(b"a/.."), Err("path contains a .. component"));
    assert_eq!(normalize(b"./../a"), Err("path contains a .. component"));
}

#[test]
fn later_entry_replaces_an_earlier_symlink_without_following_it() {
    let scene = Scene::new();
    let target = scene.outside().join("victim");
    fs::write(&target, b"victim").unwrap();
    let archive = raw_archive(&[
        raw_entry(b"name", b'2', target.as_os_str().as_bytes(), b""),
        raw_entry(b"name", b'0', b"", b"new"),
    ]);
    extract(Cursor::new(archive), &scene.dest(), &ExtractOptions::default()).unwrap();
    assert_eq!(fs::read(&target).unwrap(), b"victim");
    let meta = fs::symlink_metadata(scene.dest().join("name")).unwrap();
    assert!(meta.file_type().is_file());
    assert_eq!(fs::read(scene.dest().join("name")).unwrap(), b"new");
}

#[test]
fn owners_and_setuid_only_as_root_with_preserve_owner() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let build = || {
        let mut builder = tar::Builder::new(Vec::new());
        let mut h = header(EntryType::Regular, 0o4755, T0, 1);
        h.set_uid(1234);
        h.set_gid(5678);
        builder.append_data(&mut h, "suid", &b"x"[..]).unwrap();
        let mut h = header(EntryType::Directory, 0o2775, T0, 0);
        h.set_uid(1234);
        h.set_gid(5678);
        builder.append_data(&mut h, "sgid-dir", io::empty()).unwrap();
        builder.into_inner().unwrap()
    };
    for preserve_owner in [false, true] {
        let scene = Scene::new();
        let opts = ExtractOptions { preserve_owner, ..Default::default() };
        extract(Cursor::new(build()), &scene.dest(), &opts).unwrap();
        let file = fs::symlink_metadata(scene.dest().join("suid")).unwrap();
        let dir = fs::symlink_metadata(scene.dest().join("sgid-dir")).unwrap();
        if preserve_owner && root {
            assert_eq!((file.uid(), file.gid(), file.mode() & 0o7777), (1234, 5678, 0o4755));
            assert_eq!((dir.uid(), dir.gid(), dir.mode() & 0o7777), (1234, 5678, 0o2775));
        } else {
            // SAFETY: geteuid has no preconditions.
            let me = unsafe { libc::geteuid() };
            assert_eq!((file.uid(), file.mode() & 0o7777), (me, 0o755));
            assert_eq!((dir.uid(), dir.mode() & 0o7777), (me, 0o775));
        }
    }
}

// ---- special files ----

#[test]
fn devices_and_fifos_are_skipped() {
    let scene = Scene::new();
    let archive = Tar::new()
        .special(EntryType::Fifo, "dev/fifo")
        .special(EntryType::Char, "dev/null")
        .special(EntryType::Block, "dev/sda")
        .file("dev/ok", 0o644, T0, b"ok")
        .build();
    let summary = extract(Cursor::new(archive), &scene.dest(), &ExtractOptions::default()).unwrap();
    let skipped: Vec<&Path> = summary.skipped.iter().map(|(p, _)| p.as_path()).collect();
    assert_eq!(skipped, [Path::new("dev/fifo"), Path::new("dev/null"), Path::new("dev/sda")]);
    assert!(summary.skipped.iter().all(|(_, reason)| !reason.is_empty()));
    assert_eq!(summary.entries, 1);
    for name in ["fifo", "null", "sda"] {
        assert!(fs::symlink_metadata(scene.dest().join("dev").join(name)).is_err(), "{name}");
    }
    let listing: Vec<_> = fs::read_dir(scene.dest().join("dev")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(listing, ["ok"]);
    let ok = fs::symlink_metadata(scene.dest().join("dev/ok")).unwrap();
    assert!(!ok.file_type().is_fifo() && !ok.file_type().is_char_device());
}

// ---- existing destinations ----

/// Counts the bytes read through it.
struct Counting<R> {
    inner: R,
    read: std::rc::Rc<std::cell::Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.set(self.read.get() + n as u64);
        Ok(n)
    }
}

#[test]
fn existing_name_fails_fast_without_overwrite() {
    let scene = Scene::new();
    let dest = scene.dest();
    fs::create_dir(dest.join("a")).unwrap();
    fs::write(dest.join("a/old.txt"), b"old").unwrap();
    let archive = Tar::new().file("fresh.txt", 0o644, T0, b"fresh").file("a/big", 0o644, T0, &pattern(8 << 20)).build();
    let total = archive.len() as u64;
    let before = snapshot(scene.root.path());
    let read = std::rc::Rc::new(std::cell::Cell::new(0));
    let reader = Counting { inner: Cursor::new(archive), read: read.clone() };

    let err = extract(reader, &dest, &ExtractOptions::default()).unwrap_err();

    match &err {
        ExtractError::Exists { path } => assert_eq!(path, &dest.join("a")),
        other => panic!("expected Exists, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        format!(
            "{} already exists; pass --force to overwrite it, or restore to another directory with --to",
            dest.join("a").display()
        )
    );
    assert!(read.get() < 1 << 20, "read {} of {total} bytes before failing", read.get());
    assert_eq!(snapshot(scene.root.path()), before);
}

#[test]
fn existing_symlink_counts_as_existing() {
    let scene = Scene::new();
    std::os::unix::fs::symlink("/nonexistent", scene.dest().join("a")).unwrap();
    let before = snapshot(scene.root.path());
    let archive = Tar::new().file("a", 0o644, T0, b"x").build();
    let err = extract(Cursor::new(archive), &scene.dest(), &ExtractOptions::default()).unwrap_err();
    assert!(matches!(err, ExtractError::Exists { .. }), "{err:?}");
    assert_eq!(snapshot(scene.root.path()), before);
}

#[test]
fn overwrite_merges_directories_and_replaces_the_rest() {
    let scene = Scene::new();
    let dest = scene.dest();
    fs::create_dir_all(dest.join("a/x/inner")).unwrap();
    fs::write(dest.join("a/x/inner/f"), b"old dir content").unwrap();
    fs::write(dest.join("a/old.txt"), b"untouched").unwrap();
    fs::write(dest.join("a/same.txt"), b"old same").unwrap();
    fs::write(dest.join("a/y"), b"old file where a dir comes").unwrap();
    fs::create_dir(dest.join("a/sub")).unwrap();
    fs::write(dest.join("a/sub/kept"), b"kept").unwrap();
    let victim = scene.outside().join("victim");
    fs::write(&victim, b"victim").unwrap();
    std::os::unix::fs::symlink(&victim, dest.join("f")).unwrap();
    std::os::unix::fs::symlink(scene.outside(), dest.join("d")).unwrap();

    let archive = Tar::new()
        .dir("a", 0o700, T0 + 1)
        .file("a/same.txt", 0o600, T0 + 2, b"new same")
        .file("a/x", 0o644, T0 + 3, b"file where a dir was")
        .file("a/y/child", 0o644, T0 + 4, b"child")
        .file("a/sub/new", 0o644, T0 + 5, b"new")
        .file("f", 0o644, T0 + 6, b"file over symlink")
        .file("d/inside", 0o644, T0 + 7, b"not through the old symlink")
        .build();
    let opts = ExtractOptions { overwrite: true, ..Default::default() };
    let summary = extract(Cursor::new(archive), &dest, &opts).unwrap();
    assert_eq!(summary.top_level, [PathBuf::from("a"), PathBuf::from("f"), PathBuf::from("d")]);

    let expected: BTreeMap<PathBuf, String> = [
        ("keep.txt", "file 644 keep"),
        ("a", "dir 700"),
        ("a/old.txt", "file 644 untouched"),
        ("a/same.txt", "file 600 new same"),
        ("a/x", "file 644 file where a dir was"),
        ("a/y", "dir 755"),
        ("a/y/child", "file 644 child"),
        ("a/sub", "dir 755"),
        ("a/sub/kept", "file 644 kept"),
        ("a/sub/new", "file 644 new"),
        ("f", "file 644 file over symlink"),
        ("d", "dir 755"),
        ("d/inside", "file 644 not through the old symlink"),
    ]
    .into_iter()
    .map(|(p, d)| (PathBuf::from(p), d.to_string()))
    .collect();
    assert_eq!(snapshot(&dest), expected);
    assert_eq!(mtime_of(&fs::metadata(dest.join("a")).unwrap()), T0 + 1);
    assert_eq!(fs::read(&victim).unwrap(), b"victim");
    assert_eq!(fs::read_dir(scene.outside()).unwrap().count(), 1);
}

// ---- failing streams ----

/// Returns an error once `limit` bytes have been read.
struct FailAfter<R> {
    inner: R,
    left: usize,
}

impl<R: Read> Read for FailAfter<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Err(io::Error::other("integrity check failed"));
        }
        let max = buf.len().min(self.left);
        let n = self.inner.read(&mut buf[..max])?;
        self.left -= n;
        Ok(n)
    }
}

fn two_files() -> Vec<u8> {
    Tar::new().file("small.txt", 0o644, T0, b"small").file("big/data.bin", 0o644, T0, &pattern(1 << 20)).build()
}

#[test]
fn reader_error_halfway_is_an_archive_error_and_leaves_nothing() {
    let scene = Scene::new();
    let before = snapshot(scene.root.path());
    let reader = FailAfter { inner: Cursor::new(two_files()), left: 300_000 };
    let err = extract(reader, &scene.dest(), &ExtractOptions::default()).unwrap_err();
    let ExtractError::Archive(source) = &err else { panic!("expected Archive, got {err:?}") };
    assert_eq!(source.to_string(), "integrity check failed");
    assert_eq!(err.to_string(), "reading the archive: integrity check failed");
    assert!(std::error::Error::source(&err).is_some());
    assert_eq!(snapshot(scene.root.path()), before);
}

#[test]
fn truncated_stream_is_an_archive_error() {
    let scene = Scene::new();
    let before = snapshot(scene.root.path());
    let mut archive = two_files();
    archive.truncate(400_000);
    let err = extract(Cursor::new(archive), &scene.dest(), &ExtractOptions::default()).unwrap_err();
    assert!(matches!(err, ExtractError::Archive(_)), "{err:?}");
    assert!(err.to_string().contains("big/data.bin"), "{err}");
    assert_eq!(snapshot(scene.root.path()), before);
}

/// Small files are created by writer threads while the stream is read on: hard links to a file just handed over,
/// a name given twice (the later wins), a directory entry after its files, and hundreds of files in a few
/// directories all come out exactly as a one-thread extraction would leave them.
#[test]
fn files_handed_to_the_writers_come_out_exactly() {
    let scene = Scene::new();
    let mut tar = Tar::new();
    let mut want: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut file_bytes = 0;
    for i in 0..600 {
        let path = format!("t/d{}/f{i}", i % 7);
        let data = pattern(i * 37 % 5000);
        file_bytes += data.len() as u64;
        tar = tar.file(&path, 0o640, T0 + i as u64, &data);
        want.insert(path.clone(), data.clone());
        if i % 50 == 0 {
            let link = format!("t/links/l{i}");
            tar = tar.link(EntryType::Link, &link, &path, T0);
            want.insert(link, data);
        }
        if i % 97 == 0 {
            // The same name again: the later file replaces the earlier one.
            let again = b"again".repeat(i + 1);
            file_bytes += again.len() as u64;
            tar = tar.file(&path, 0o600, T0, &again);
            want.insert(path, again);
        }
    }
    tar = tar.dir("t/d3", 0o750, T0 - 1);
    let summary = extract(Cursor::new(tar.build()), &scene.dest(), &ExtractOptions::default()).unwrap();
    assert!(staging_dirs(&scene.dest()).is_empty());
    for (path, data) in &want {
        assert_eq!(&fs::read(scene.dest().join(path)).unwrap(), data, "{path}");
    }
    let f1 = fs::metadata(scene.dest().join("t/d1/f1")).unwrap();
    assert_eq!((f1.permissions().mode() & 0o7777, mtime_of(&f1)), (0o640, T0 + 1));
    let l = fs::metadata(scene.dest().join("t/links/l50")).unwrap();
    assert_eq!(l.ino(), fs::metadata(scene.dest().join("t/d1/f50")).unwrap().ino());
    let d3 = fs::metadata(scene.dest().join("t/d3")).unwrap();
    assert_eq!((d3.permissions().mode() & 0o7777, mtime_of(&d3)), (0o750, T0 - 1));
    assert_eq!(summary.bytes, file_bytes);
}

#[test]
fn corrupt_header_is_an_archive_error() {
    let scene = Scene::new();
    let before = snapshot(scene.root.path());
    let mut archive = two_files();
    archive[1024 + 10] ^= 0x55; // inside the second header's name: the checksum no longer matches
    let err = extract(Cursor::new(archive), &scene.dest(), &ExtractOptions::default()).unwrap_err();
    assert!(matches!(err, ExtractError::Archive(_)), "{err:?}");
    assert_eq!(snapshot(scene.root.path()), before);
}

#[test]
fn missing_destination_is_an_io_error() {
    let scene = Scene::new();
    let dest = scene.root.path().join("missing");
    let err = extract(Cursor::new(two_files()), &dest, &ExtractOptions::default()).unwrap_err();
    match err {
        ExtractError::Io { path, source } => {
            assert_eq!(path, dest);
            assert_eq!(source.kind(), io::ErrorKind::NotFound);
        }
        other => panic!("expected Io, got {other:?}"),
    }
}

// ---- property: whatever the archive, nothing outside dest changes, and a failure changes nothing ----

#[derive(Debug, Clone)]
enum Kind {
    File,
    Dir,
    Symlink(&'static str),
    HardLink(String),
}

fn arb_name() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    let part = prop_oneof![4 => Just("a"), 3 => Just("b"), 1 => Just(".."), 1 => Just("."), 1 => Just("")];
    (proptest::bool::weighted(0.1), proptest::collection::vec(part, 1..3))
        .prop_map(|(absolute, parts)| format!("{}{}", if absolute { "/" } else { "" }, parts.join("/")))
}

fn arb_entry() -> impl proptest::strategy::Strategy<Value = (String, Kind)> {
    use proptest::prelude::*;
    let kind = prop_oneof![
        3 => Just(Kind::File),
        1 => Just(Kind::Dir),
        3 => prop_oneof![Just(".."), Just("OUTSIDE"), Just("OUTSIDE"), Just("a"), Just("../..")].prop_map(Kind::Symlink),
        1 => arb_name().prop_map(Kind::HardLink),
    ];
    (arb_name(), kind)
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    #[test]
    fn nothing_escapes_dest(entries in proptest::collection::vec(arb_entry(), 1..8), overwrite: bool) {
        let scene = Scene::new();
        let outside = scene.outside();
        let raw: Vec<Vec<u8>> = entries
            .iter()
            .map(|(name, kind)| match kind {
                Kind::File => raw_entry(name.as_bytes(), b'0', b"", b"data"),
                Kind::Dir => raw_entry(name.as_bytes(), b'5', b"", b""),
                Kind::Symlink("OUTSIDE") => raw_entry(name.as_bytes(), b'2', outside.as_os_str().as_bytes(), b""),
                Kind::Symlink(target) => raw_entry(name.as_bytes(), b'2', target.as_bytes(), b""),
                Kind::HardLink(target) => raw_entry(name.as_bytes(), b'1', target.as_bytes(), b""),
            })
            .collect();
        let before = snapshot(scene.root.path());
        let before_outside = snapshot(&outside);
        let result = extract(Cursor::new(raw_archive(&raw)), &scene.dest(), &ExtractOptions { overwrite, ..Default::default() });
        proptest::prop_assert!(staging_dirs(&scene.dest()).is_empty());
        let after = snapshot(scene.root.path());
        let outside_dest = |s: &BTreeMap<PathBuf, String>| -> BTreeMap<PathBuf, String> {
            s.iter().filter(|(p, _)| !p.starts_with("dest")).map(|(p, d)| (p.clone(), d.clone())).collect()
        };
        proptest::prop_assert_eq!(outside_dest(&after), outside_dest(&before));
        proptest::prop_assert_eq!(snapshot(&outside), before_outside);
        match result {
            Ok(_) => proptest::prop_assert_eq!(after.get(Path::new("dest/keep.txt")).map(String::as_str), Some("file 644 keep")),
            Err(ExtractError::Unsafe { .. }) => proptest::prop_assert_eq!(after, before),
            Err(other) => proptest::prop_assert!(false, "unexpected error {other:?}"),
        }
    }
}
