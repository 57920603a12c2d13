//! `restore` of an incremental backup: the complete tree at that time, built from the chain's snapshots, with each
//! file's bytes read from the archive that holds them (the last one of the chain that stored it), fetching only the
//! members those files are in. The tree is written as one tar stream into the same safe, atomic extraction as every
//! restore ([`crate::archive::extract`]).
//!
//! Not here: which backup is whose parent, reading snapshots (`super::incremental`).

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::browse::under;
use super::incremental::chain_tree;
use super::restore::{RestoreOptions, RestoreOutcome};
use super::{Ctx, OpsError};
use crate::archive::extract::{self, ExtractOptions};
use crate::archive::index::{Entry, EntryKind, Index};
use crate::archive::read::{Decoder, ReadError};
use crate::archive::{ArchiveError, ChannelReader, Secret};
use crate::model::BackupRecord;

/// Members fetched with one ranged read at most (a run of needed members is cut into reads of this many).
const MEMBERS_PER_READ: usize = 16;

/// Restores `record`, an incremental backup (or a chain's full), into `dest`.
pub(super) fn restore_chain(
    ctx: &Ctx,
    record: BackupRecord,
    dest: &Path,
    opts: &RestoreOptions,
) -> Result<RestoreOutcome, OpsError> {
    let secret = opts.password.as_deref();
    let tree = chain_tree(ctx, &record, secret)?;
    let wanted = |p: &[u8]| {
        opts.paths.is_empty()
            || opts.paths.iter().any(|q| {
                let q = q.trim_matches('/').as_bytes();
                under(p, q) || under(q, p)
            })
    };
    for q in &opts.paths {
        let q = q.trim_matches('/').as_bytes();
        if !tree.index.entries.iter().any(|e| under(&e.path, q)) {
            let path = String::from_utf8_lossy(q).into_owned();
            return Err(OpsError::NotInBackup { path, stored: record.stored_filename.to_string() });
        }
    }
    let at_path: HashMap<&[u8], usize> =
        tree.index.entries.iter().enumerate().map(|(i, e)| (e.path.as_slice(), i)).collect();
    // What to write, in order; a hard link whose first path is not restored (--path) becomes a copy of its bytes.
    let mut items: Vec<Item<'_>> = Vec::new();
    let mut written_paths: std::collections::HashSet<&[u8]> = std::collections::HashSet::new();
    for (i, e) in tree.index.entries.iter().enumerate() {
        if !wanted(&e.path) {
            continue;
        }
        let item = match e.kind {
            EntryKind::HardLink => {
                let target = e.link.as_deref().unwrap_or_default();
                match at_path.get(target) {
                    Some(_) if written_paths.contains(target) => Item::Link(e, target),
                    Some(&t) => Item::File(e, tree.holders[t].as_ref().map(|(at, h)| (*at, h.data_offset, h.size))),
                    None => return Err(corrupt(&record, &e.path, "its hard link target is not in the tree")),
                }
            }
            EntryKind::File => Item::File(e, tree.holders[i].as_ref().map(|(at, h)| (*at, h.data_offset, h.size))),
            _ => Item::Other(e),
        };
        if let Item::File(_, None) = item {
            return Err(corrupt(&record, &e.path, "no archive holds it"));
        }
        written_paths.insert(&e.path);
        items.push(item);
    }
    // The archives that hold the bytes of a restored file; only those are opened and read.
    let mut members: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for item in &items {
        if let Item::File(_, Some((at, offset, len))) = item {
            members.entry(*at).or_default().extend(tree.indexes[at].members_covering(*offset, offset + len));
        }
    }
    let mut stores = Vec::new();
    let mut pending = Vec::new();
    for &at in members.keys() {
        let member = &tree.chain[at];
        let backend = ctx.stores().open_record(member)?;
        if backend.head(member.stored_filename.as_str())?.is_none() {
            return Err(OpsError::MissingArchive {
                stored: record.stored_filename.to_string(),
                missing: member.stored_filename.to_string(),
            });
        }
        match super::ensure_readable(ctx, member, backend.as_ref()) {
            Ok(()) => {}
            Err(OpsError::Pending { stored, .. }) => pending.push(stored),
            Err(e) => return Err(e),
        }
        stores.push((at, backend));
    }
    if !pending.is_empty() {
        return Err(OpsError::ChainPending { stored: pending.join(", ") });
    }
    let indexes = &tree.indexes;
    let sources: Vec<(usize, super::range::ObjectRange<'_>)> = stores
        .iter()
        .map(|(at, b)| {
            let index = &indexes[at];
            let member = &tree.chain[*at];
            let len = if index.stored_len != 0 { index.stored_len } else { member.size };
            (*at, super::range::ObjectRange::new(b.as_ref(), member.stored_filename.as_str(), len))
        })
        .collect();
    let mut fetchers: HashMap<usize, Fetcher<'_>> = HashMap::new();
    for (at, src) in &sources {
        let index = &indexes[at];
        let decoder = Decoder::new(index, src, secret.map(Secret::keys)).map_err(read_error)?;
        let mut wanted = members.remove(at).unwrap_or_default();
        wanted.sort_unstable();
        wanted.dedup();
        fetchers.insert(*at, Fetcher { decoder, index, wanted, cache: BTreeMap::new() });
    }

    let ex = ExtractOptions { overwrite: opts.force, preserve_owner: false };
    let (tx, rx) = std::sync::mpsc::sync_channel::<io::Result<Vec<u8>>>(8);
    let (written, extracted) = std::thread::scope(|scope| {
        let extracting = scope.spawn(move || extract::extract(ChannelReader::new(rx), dest, &ex));
        let mut pipe = Pipe { tx: Some(tx), buf: Vec::with_capacity(PIPE_BLOCK) };
        let written = write_tree(&mut pipe, &items, &mut fetchers);
        drop(pipe);
        let extracted = extracting.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        (written, extracted)
    });
    for (_, src) in &sources {
        if let Some(e) = src.take_error() {
            return Err(e.into());
        }
    }
    match (written, &extracted) {
        // The extractor stopped first (its error is the cause): the writer only saw the pipe close.
        (Err(OpsError::Io { source, .. }), Err(_)) if source.kind() == io::ErrorKind::BrokenPipe => {}
        (w, _) => w?,
    }
    let summary = extracted.map_err(|e| OpsError::Archive(ArchiveError::from(e)))?;
    for (path, why) in &summary.skipped {
        ctx.reporter.warn(&format!("{}: {why}", path.display()));
    }
    let written = summary.top_level.iter().map(|p| dest.join(p)).collect();
    let incomplete = items
        .iter()
        .filter_map(|i| match i {
            Item::File(e, _) if e.damaged => crate::model::relative_path(&e.path).ok().flatten(),
            _ => None,
        })
        .collect();
    Ok(RestoreOutcome { record, written, entries: summary.entries, bytes: summary.bytes, incomplete })
}

/// One entry of the restored tree.
enum Item<'t> {
    /// A file, and where its bytes are: (chain position, tar offset of the data, length).
    File(&'t Entry, Option<(usize, u64, u64)>),
    /// A hard link to a path written earlier.
    Link(&'t Entry, &'t [u8]),
    /// A directory or symlink, written from the entry alone.
    Other(&'t Entry),
}

fn corrupt(record: &BackupRecord, path: &[u8], why: &str) -> OpsError {
    OpsError::Archive(ArchiveError::Corrupt(format!(
        "the snapshot of {} lists {}, but {why}",
        record.stored_filename,
        String::from_utf8_lossy(path)
    )))
}

fn read_error(e: ReadError) -> OpsError {
    match e {
        ReadError::PasswordNeeded => OpsError::Archive(ArchiveError::PasswordNeeded),
        e => OpsError::Io { context: "reading the archive".into(), source: io::Error::other(crate::error_chain(&e)) },
    }
}

/// Bytes sent to the extractor at a time.
const PIPE_BLOCK: usize = 1 << 20;

/// The writing end of the stream to the extractor. A failed tree is cut off with an error (never with an
/// end-of-archive, which would let the extractor commit part of a tree).
struct Pipe {
    tx: Option<std::sync::mpsc::SyncSender<io::Result<Vec<u8>>>>,
    buf: Vec<u8>,
}

impl Pipe {
    fn send(&mut self) -> io::Result<()> {
        let block = std::mem::replace(&mut self.buf, Vec::with_capacity(PIPE_BLOCK));
        let tx = self.tx.as_ref().ok_or_else(|| io::Error::other("the restore failed"))?;
        tx.send(Ok(block)).map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the extraction stopped"))
    }

    /// Ends the stream with an error: the extractor fails, and later writes (the tar builder's end blocks) too.
    fn fail(&mut self, why: &OpsError) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Err(io::Error::other(crate::error_chain(why))));
        }
    }
}

impl Write for Pipe {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.tx.is_none() {
            return Err(io::Error::other("the restore failed"));
        }
        self.buf.extend_from_slice(data);
        if self.buf.len() >= PIPE_BLOCK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            self.send()
        }
    }
}

/// Writes the tree as a tar stream: directories and symlinks from the snapshot, files with their bytes from the
/// archive that holds them, hard links (same inode at backup time) as links to the first path of their inode. On
/// an error the stream is cut off with it ([`Pipe::fail`]).
fn write_tree(out: &mut Pipe, items: &[Item<'_>], fetchers: &mut HashMap<usize, Fetcher<'_>>) -> Result<(), OpsError> {
    let mut tar = tar::Builder::new(out);
    let res = write_entries(&mut tar, items, fetchers)
        .and_then(|()| tar.finish().and_then(|()| tar.get_mut().flush()).map_err(io_err));
    if let Err(e) = &res {
        tar.get_mut().fail(e);
    }
    res
}

fn io_err(e: io::Error) -> OpsError {
    OpsError::Io { context: "restoring the chain's tree".into(), source: e }
}

fn write_entries(
    tar: &mut tar::Builder<&mut Pipe>,
    items: &[Item<'_>],
    fetchers: &mut HashMap<usize, Fetcher<'_>>,
) -> Result<(), OpsError> {
    for item in items {
        let e = match item {
            Item::File(e, _) | Item::Link(e, _) | Item::Other(e) => *e,
        };
        let mut h = tar::Header::new_gnu();
        h.set_mode(e.mode & 0o7777);
        h.set_uid(e.uid);
        h.set_gid(e.gid);
        h.set_mtime(e.mtime.max(0) as u64);
        h.set_size(0);
        let name = Path::new(OsStr::from_bytes(&e.path));
        match item {
            Item::Other(_) if e.kind == EntryKind::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                tar.append_data(&mut h, name, io::empty()).map_err(io_err)?;
            }
            Item::Other(_) => {
                h.set_entry_type(tar::EntryType::Symlink);
                let target = Path::new(OsStr::from_bytes(e.link.as_deref().unwrap_or_default()));
                tar.append_link(&mut h, name, target).map_err(io_err)?;
            }
            Item::Link(_, target) => {
                h.set_entry_type(tar::EntryType::Link);
                tar.append_link(&mut h, name, Path::new(OsStr::from_bytes(target))).map_err(io_err)?;
            }
            Item::File(_, at) => {
                let (at, offset, len) = at.expect("every file's bytes were located");
                let fetcher = fetchers.get_mut(&at).expect("every holder has a fetcher");
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(len);
                let mut body = Body { fetcher, pos: offset, end: offset + len, error: None };
                let res = tar.append_data(&mut h, name, &mut body);
                if let Some(e) = body.error {
                    return Err(read_error(e));
                }
                res.map_err(io_err)?;
            }
        }
    }
    Ok(())
}

/// Reads one archive forwards: inflated members of the needed ones, fetched in runs.
struct Fetcher<'a> {
    decoder: Decoder<'a>,
    index: &'a Index,
    /// Member numbers any file of the tree needs, sorted.
    wanted: Vec<usize>,
    cache: BTreeMap<usize, Vec<u8>>,
}

impl Fetcher<'_> {
    /// The inflated member `m`, fetching it (and the next needed ones of its run) when not cached.
    fn member(&mut self, m: usize) -> Result<&[u8], ReadError> {
        if !self.cache.contains_key(&m) {
            // Reads go forwards: what lies before `m` is done with.
            self.cache = self.cache.split_off(&m);
            let pos = self.wanted.partition_point(|&w| w < m);
            let mut end = m + 1;
            while end - m < MEMBERS_PER_READ && self.wanted.get(pos + (end - m)) == Some(&end) {
                end += 1;
            }
            for (i, part) in self.decoder.members(m..end)?.into_iter().enumerate() {
                self.cache.insert(m + i, part);
            }
        }
        Ok(&self.cache[&m])
    }
}

/// A file's bytes `[pos, end)` of the tar stream of one archive, as a reader.
struct Body<'f, 'a> {
    fetcher: &'f mut Fetcher<'a>,
    pos: u64,
    end: u64,
    error: Option<ReadError>,
}

impl Read for Body<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.end || buf.is_empty() {
            return Ok(0);
        }
        let m = self.fetcher.index.members_covering(self.pos, self.pos + 1).start;
        let start = self.fetcher.index.members[m].tar_offset;
        let part = match self.fetcher.member(m) {
            Ok(p) => p,
            Err(e) => {
                let text = e.to_string();
                self.error = Some(e);
                return Err(io::Error::other(text));
            }
        };
        let from = (self.pos - start) as usize;
        let n = buf.len().min((self.end - self.pos) as usize).min(part.len().saturating_sub(from));
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "archive is shorter than its index says"));
        }
        buf[..n].copy_from_slice(&part[from..from + n]);
        self.pos += n as u64;
        Ok(n)
    }
}
