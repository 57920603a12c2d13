//! GNU tar's incremental format as bakthat writes it, and the snapshot that finds what changed between backups.
//!
//! A backup of a chain (a full under an `incremental:` policy, or an incremental) is an ordinary bakthat archive
//! (independent gzip members, entry index) in which every directory is a GNU *dumpdir* entry (typeflag `D`): its
//! data lists the directory's contents at backup time, one `Y<name>\0` (stored in this archive), `N<name>\0`
//! (unchanged: its bytes are in an earlier archive of the chain) or `D<name>\0` (a subdirectory) per child, sorted
//! by name, then a final `\0`. GNU tar extracting with `--listed-incremental=/dev/null` (`-G`) removes from each
//! directory what its dumpdir does not list, so extracting the full and then each incremental in order gives the
//! tree of the last one. An incremental stores only the non-directories that changed (and every directory).
//!
//! A [`Snapshot`] is what GNU tar keeps in its `.snar` file: per archive path, what change detection compares (type,
//! size, mtime and ctime with nanoseconds, device, inode, link count, mode, owner, link target). Each backup of a
//! chain stores the [`Delta`] from its parent's snapshot (a full: from the empty one) as a `.snap` sidecar, so a
//! chain continues on any host that can read the store, and an unchanged tree adds a few bytes.
//!
//! Not here: which backup is the parent, where sidecars are kept (`ops::incremental`); the walk itself
//! ([`super::pack`] asks a [`Tracker`] what to store).

use std::collections::BTreeMap;
use std::fs::Metadata;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;

use super::index::{put, put_bytes, unzigzag, zigzag, Cursor, IndexError};
use crate::lock;

/// Magic and version of a serialized [`Delta`]. Version 2 starts its body with the stored name of the backup it
/// belongs to; version 1 (the first, without it) is still read.
pub const SNAPSHOT_MAGIC: &[u8; 8] = b"BKTSNP\x00\x02";

/// The largest `.snap` read (as stored, after decryption): a delta of a million paths is a few tens of MB.
pub const MAX_SNAPSHOT_LEN: u64 = 64 << 20;
/// The most a `.snap` may inflate to, per stored byte (real deltas inflate a few times; more is a gzip bomb), and
/// in all.
const MAX_INFLATE_RATIO: u64 = 64;
const MAX_SNAPSHOT_BODY: u64 = 1 << 30;

/// Whether a tar entry type is GNU's dumpdir (`D`).
pub fn is_dumpdir(t: tar::EntryType) -> bool {
    t.as_byte() == b'D'
}

/// The dumpdir entry type.
pub fn dumpdir_type() -> tar::EntryType {
    tar::EntryType::new(b'D')
}

/// What a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum NodeKind {
    File,
    Dir,
    Symlink,
    /// A socket, fifo or device: never stored, never listed in a dumpdir.
    Other,
}

impl NodeKind {
    fn code(self) -> u64 {
        match self {
            NodeKind::File => 0,
            NodeKind::Dir => 1,
            NodeKind::Symlink => 2,
            NodeKind::Other => 3,
        }
    }

    fn from_code(c: u64) -> Result<Self, IndexError> {
        Ok(match c {
            0 => NodeKind::File,
            1 => NodeKind::Dir,
            2 => NodeKind::Symlink,
            3 => NodeKind::Other,
            _ => return Err(IndexError::Corrupt("unknown snapshot node kind")),
        })
    }
}

/// One path as change detection sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: NodeKind,
    /// Permission bits (`0o7777`).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub size: u64,
    pub mtime: i64,
    pub mtime_ns: u32,
    pub ctime: i64,
    pub ctime_ns: u32,
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
    /// A symlink's target.
    pub link: Option<Vec<u8>>,
}

impl Node {
    /// The node of `meta` (from `lstat`), with a symlink's target.
    pub fn of(meta: &Metadata, link: Option<Vec<u8>>) -> Node {
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            NodeKind::Dir
        } else if ft.is_file() {
            NodeKind::File
        } else if ft.is_symlink() {
            NodeKind::Symlink
        } else {
            NodeKind::Other
        };
        Node {
            kind,
            mode: meta.mode() & 0o7777,
            uid: u64::from(meta.uid()),
            gid: u64::from(meta.gid()),
            size: if kind == NodeKind::File { meta.len() } else { 0 },
            mtime: meta.mtime(),
            mtime_ns: meta.mtime_nsec().clamp(0, 999_999_999) as u32,
            ctime: meta.ctime(),
            ctime_ns: meta.ctime_nsec().clamp(0, 999_999_999) as u32,
            dev: meta.dev(),
            ino: meta.ino(),
            nlink: meta.nlink(),
            link: if kind == NodeKind::Symlink { link } else { None },
        }
    }
}

/// Every path of one backup (archive paths: the first component is the backup's basename).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub nodes: BTreeMap<Vec<u8>, Node>,
}

/// What changed from one snapshot to the next: new or changed paths, and removed ones. Both sorted by path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delta {
    pub upserts: Vec<(Vec<u8>, Node)>,
    pub removed: Vec<Vec<u8>>,
}

impl Snapshot {
    /// The delta that turns `self` into `new`.
    pub fn diff(&self, new: &Snapshot) -> Delta {
        let upserts = new
            .nodes
            .iter()
            .filter(|(p, n)| self.nodes.get(*p) != Some(*n))
            .map(|(p, n)| (p.clone(), n.clone()))
            .collect();
        let removed = self.nodes.keys().filter(|p| !new.nodes.contains_key(*p)).cloned().collect();
        Delta { upserts, removed }
    }

    /// Applies a delta, calling `touched` with each upserted path.
    pub fn apply(&mut self, delta: &Delta, mut touched: impl FnMut(&[u8])) {
        for p in &delta.removed {
            self.nodes.remove(p);
        }
        for (p, n) in &delta.upserts {
            touched(p);
            self.nodes.insert(p.clone(), n.clone());
        }
    }
}

impl Delta {
    /// Serializes the delta: [`SNAPSHOT_MAGIC`], then a gzip stream of varints (paths share prefixes with the
    /// previous one, as in the entry index).
    pub fn to_bytes(&self, owner: &str) -> Vec<u8> {
        let mut body = Vec::with_capacity(64 + self.upserts.len() * 40);
        put_bytes(&mut body, owner.as_bytes());
        put(&mut body, self.upserts.len() as u64);
        let mut prev: &[u8] = &[];
        for (p, n) in &self.upserts {
            put_path(&mut body, prev, p);
            put(&mut body, n.kind.code());
            for v in [u64::from(n.mode), n.uid, n.gid, n.size, zigzag(n.mtime), u64::from(n.mtime_ns)] {
                put(&mut body, v);
            }
            for v in [zigzag(n.ctime), u64::from(n.ctime_ns), n.dev, n.ino, n.nlink] {
                put(&mut body, v);
            }
            if n.kind == NodeKind::Symlink {
                put_bytes(&mut body, n.link.as_deref().unwrap_or_default());
            }
            prev = p;
        }
        put(&mut body, self.removed.len() as u64);
        prev = &[];
        for p in &self.removed {
            put_path(&mut body, prev, p);
            prev = p;
        }
        let mut out = SNAPSHOT_MAGIC.to_vec();
        let mut gz = flate2::write::GzEncoder::new(&mut out, flate2::Compression::new(6));
        gz.write_all(&body).expect("writing to a Vec cannot fail");
        gz.finish().expect("writing to a Vec cannot fail");
        out
    }

    /// [`Delta::from_bytes`] of the `.snap` of backup `owner`: one that says it belongs to another backup (copied
    /// or swapped in the store) is refused.
    pub fn from_bytes_of(bytes: &[u8], owner: &str) -> Result<Delta, IndexError> {
        let (delta, of) = Delta::parse(bytes)?;
        match of {
            Some(of) if of != owner.as_bytes() => Err(IndexError::Corrupt("the snapshot belongs to another backup")),
            _ => Ok(delta),
        }
    }

    /// Parses and checks a serialized delta (it comes from a store): at most [`MAX_SNAPSHOT_LEN`] bytes, inflating
    /// to a bounded size, every path a normal relative path, paths strictly increasing, modes and nanoseconds in
    /// range, a target for symlinks only.
    pub fn from_bytes(bytes: &[u8]) -> Result<Delta, IndexError> {
        Delta::parse(bytes).map(|(d, _)| d)
    }

    /// The delta and the backup it says it belongs to (version 2).
    fn parse(bytes: &[u8]) -> Result<(Delta, Option<Vec<u8>>), IndexError> {
        if bytes.len() as u64 > MAX_SNAPSHOT_LEN {
            return Err(IndexError::Corrupt("the snapshot is larger than 64 MiB"));
        }
        if bytes.len() < 8 || bytes[..7] != SNAPSHOT_MAGIC[..7] {
            return Err(IndexError::Corrupt("not a snapshot (bad magic)"));
        }
        let version = bytes[7];
        if !(1..=SNAPSHOT_MAGIC[7]).contains(&version) {
            return Err(IndexError::Version(version));
        }
        let limit = (bytes.len() as u64 * MAX_INFLATE_RATIO + (1 << 20)).min(MAX_SNAPSHOT_BODY);
        let mut body = Vec::new();
        flate2::read::GzDecoder::new(&bytes[8..])
            .take(limit + 1)
            .read_to_end(&mut body)
            .map_err(|_| IndexError::Corrupt("snapshot does not inflate (truncated or damaged)"))?;
        if body.len() as u64 > limit {
            return Err(IndexError::Corrupt("the snapshot inflates far past its size (a gzip bomb)"));
        }
        let mut c = Cursor { buf: &body, pos: 0 };
        let owner = if version >= 2 { Some(c.bytes()?.to_vec()) } else { None };
        let mut delta = Delta::default();
        let n = c.count()?;
        let mut prev = Vec::new();
        for _ in 0..n {
            let path = get_path(&mut c, &prev)?;
            let kind = NodeKind::from_code(c.get()?)?;
            let mode = c.get()?;
            if mode > 0o7777 {
                return Err(IndexError::Corrupt("snapshot mode out of range"));
            }
            let (uid, gid, size) = (c.get()?, c.get()?, c.get()?);
            let (mtime, mtime_ns) = (unzigzag(c.get()?), nanos(c.get()?)?);
            let (ctime, ctime_ns) = (unzigzag(c.get()?), nanos(c.get()?)?);
            let (dev, ino, nlink) = (c.get()?, c.get()?, c.get()?);
            let link = if kind == NodeKind::Symlink { Some(c.bytes()?.to_vec()) } else { None };
            let node = Node {
                kind,
                mode: mode as u32,
                uid,
                gid,
                size,
                mtime,
                mtime_ns,
                ctime,
                ctime_ns,
                dev,
                ino,
                nlink,
                link,
            };
            prev.clone_from(&path);
            delta.upserts.push((path, node));
        }
        let n = c.count()?;
        prev.clear();
        for _ in 0..n {
            let path = get_path(&mut c, &prev)?;
            prev.clone_from(&path);
            delta.removed.push(path);
        }
        if c.pos != body.len() {
            return Err(IndexError::Corrupt("trailing bytes in the snapshot"));
        }
        Ok((delta, owner))
    }
}

fn put_path(out: &mut Vec<u8>, prev: &[u8], p: &[u8]) {
    let shared = prev.iter().zip(p).take_while(|(a, b)| a == b).count();
    put(out, shared as u64);
    put_bytes(out, &p[shared..]);
}

fn get_path(c: &mut Cursor<'_>, prev: &[u8]) -> Result<Vec<u8>, IndexError> {
    let shared = c.get()? as usize;
    if shared > prev.len() {
        return Err(IndexError::Corrupt("snapshot path prefix longer than the previous path"));
    }
    let mut path = prev[..shared].to_vec();
    path.extend_from_slice(c.bytes()?);
    match crate::model::relative_path(&path) {
        Ok(Some(p)) if p.as_os_str().as_bytes() == path.as_slice() => {}
        _ => return Err(IndexError::Corrupt("snapshot path is not a plain relative path")),
    }
    if !prev.is_empty() && path.as_slice() <= prev {
        return Err(IndexError::Corrupt("snapshot paths out of order"));
    }
    Ok(path)
}

fn nanos(v: u64) -> Result<u32, IndexError> {
    if v < 1_000_000_000 {
        Ok(v as u32)
    } else {
        Err(IndexError::Corrupt("snapshot nanoseconds out of range"))
    }
}

/// One child in a dumpdir: stored here (`Y`), unchanged (`N`) or a directory (`D`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dumped {
    Stored,
    Unchanged,
    Dir,
}

/// The data of a dumpdir entry: each child as a control letter, its name and a NUL, sorted by name; then a NUL.
pub fn dumpdir(children: &mut [(&[u8], Dumped)]) -> Vec<u8> {
    children.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = Vec::with_capacity(children.iter().map(|c| c.0.len() + 2).sum::<usize>() + 1);
    for (name, what) in children.iter() {
        out.push(match what {
            Dumped::Stored => b'Y',
            Dumped::Unchanged => b'N',
            Dumped::Dir => b'D',
        });
        out.extend_from_slice(name);
        out.push(0);
    }
    out.push(0);
    out
}

/// Parses a dumpdir's data into (control letter, name) pairs.
pub fn parse_dumpdir(data: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    for item in data.split(|&b| b == 0) {
        if let Some((&code, name)) = item.split_first() {
            out.push((code, name));
        }
    }
    out
}

/// Decides, during a walk, which paths an archive of a chain stores, and records the snapshot of this backup.
/// Shared by the walk's thread and the caller (hence the lock).
pub struct Tracker {
    parent: Snapshot,
    seen: std::sync::Mutex<Snapshot>,
}

impl Tracker {
    /// A tracker against the parent's snapshot (the empty one for a full backup).
    pub fn new(parent: Snapshot) -> Tracker {
        Tracker { parent, seen: std::sync::Mutex::new(Snapshot::default()) }
    }

    /// Records `path` as `node`; returns whether it changed since the parent (a directory is always recorded and
    /// always listed, its contents decided one by one).
    pub fn record(&self, path: &[u8], node: Node) -> bool {
        let changed = self.parent.nodes.get(path) != Some(&node);
        lock(&self.seen).nodes.insert(path.to_vec(), node);
        changed
    }

    /// Forgets a path that could not be stored after all (unreadable): the next backup tries it again.
    pub fn forget(&self, path: &[u8]) {
        lock(&self.seen).nodes.remove(path);
    }

    /// This backup's snapshot and its delta from the parent's.
    pub fn finish(&self) -> (Snapshot, Delta) {
        let seen = std::mem::take(&mut *lock(&self.seen));
        let delta = self.parent.diff(&seen);
        (seen, delta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn node(size: u64, link: Option<&[u8]>) -> Node {
        Node {
            kind: if link.is_some() { NodeKind::Symlink } else { NodeKind::File },
            mode: 0o644,
            uid: 1,
            gid: 2,
            size,
            mtime: -5,
            mtime_ns: 999_999_999,
            ctime: 1_700_000_000,
            ctime_ns: 7,
            dev: 3,
            ino: u64::MAX,
            nlink: 2,
            link: link.map(<[u8]>::to_vec),
        }
    }

    proptest! {
        #[test]
        fn deltas_round_trip_and_rebuild_the_snapshot(
            old in proptest::collection::btree_map("[a-c]{1,3}(/[a-cé]{1,3}){0,2}", 0u64..4, 0..20),
            new in proptest::collection::btree_map("[a-c]{1,3}(/[a-cé]{1,3}){0,2}", 0u64..4, 0..20),
        ) {
            let snap = |m: &BTreeMap<String, u64>| Snapshot {
                nodes: m.iter().map(|(p, s)| (p.as_bytes().to_vec(), node(*s, (*s == 3).then_some(b"t".as_slice())))).collect(),
            };
            let (a, b) = (snap(&old), snap(&new));
            let delta = a.diff(&b);
            let back = Delta::from_bytes(&delta.to_bytes("x")).unwrap();
            prop_assert_eq!(&back, &delta);
            let mut rebuilt = a.clone();
            rebuilt.apply(&back, |_| {});
            prop_assert_eq!(rebuilt, b);
        }
    }

    #[test]
    fn hostile_snapshots_are_refused() {
        for bad in [&b"a/../b"[..], b"/abs", b"a//b", b"a/./b", b""] {
            let d = Delta { upserts: vec![(bad.to_vec(), node(1, None))], removed: vec![] };
            assert!(Delta::from_bytes(&d.to_bytes("x")).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let unordered = Delta { upserts: vec![], removed: vec![b"b".to_vec(), b"a".to_vec()] };
        assert!(Delta::from_bytes(&unordered.to_bytes("x")).is_err());
        let mut flipped = Delta { upserts: vec![(b"a".to_vec(), node(1, None))], removed: vec![] }.to_bytes("x");
        let last = flipped.len() - 9;
        flipped[last] ^= 0x40;
        assert!(Delta::from_bytes(&flipped).is_err());
        assert!(Delta::from_bytes(b"BKTIDX\x00\x01").is_err());
    }

    #[test]
    fn dumpdirs_are_sorted_and_parse_back() {
        let mut kids = [(&b"zeta"[..], Dumped::Unchanged), (b"alpha", Dumped::Stored), (b"dir", Dumped::Dir)];
        let data = dumpdir(&mut kids);
        assert_eq!(data, b"Yalpha\0Ddir\0Nzeta\0\0");
        assert_eq!(parse_dumpdir(&data), [(b'Y', &b"alpha"[..]), (b'D', b"dir"), (b'N', b"zeta")]);
        assert_eq!(dumpdir(&mut []), b"\0");
    }
}
