//! Restore of a selected tree: the entries to write (one archive's index, or the tree a chain of incremental
//! backups replays to), each file's bytes read from the archive that holds them, fetching only the members those
//! files are in, streamed as one tar into the safe, atomic extraction of every restore
//! ([`crate::archive::extract`]), so memory stays bounded whatever is restored.
//!
//! Used by `restore --path` of one backup (`super::restore_paths`) and by every restore of a chain
//! (`super::chain_restore`). Not here: which archives make a chain, opening stores, cold storage.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::browse::under;
use super::range::ObjectRange;
use super::OpsError;
use crate::archive::extract::{self, ExtractOptions, ExtractSummary};
use crate::archive::index::{Entry, EntryKind, Index};
use crate::archive::read::{Decoder, ReadError};
use crate::archive::{ArchiveError, ChannelReader};

/// Members fetched with one ranged read at most (a run of needed members is cut into reads of this many).
const MEMBERS_PER_READ: usize = 16;

/// Where a file's bytes are: (source number, tar offset of the data, length).
pub(super) type Holder = (usize, u64, u64);

/// One entry of the restored tree.
pub(super) enum Item<'t> {
    /// A file, and where its bytes are.
    File(&'t Entry, Holder),
    /// A hard link to a path written earlier.
    Link(&'t Entry, &'t [u8]),
    /// A directory or symlink, written from the entry alone.
    Other(&'t Entry),
}

/// What to write for a selection, in order, and the entries that cannot be restored (devices, FIFOs).
pub(super) struct Selection<'t> {
    pub items: Vec<Item<'t>>,
    pub skipped: Vec<&'t Entry>,
}

/// Whether the entry at `p` is restored for `paths` (everything when empty): it is at or under one of them, or a
/// parent directory of one (for its mode and times).
pub(super) fn wanted(paths: &[String], p: &[u8]) -> bool {
    paths.is_empty()
        || paths.iter().any(|q| {
            let q = q.trim_matches('/').as_bytes();
            under(p, q) || under(q, p)
        })
}

/// A path asked for that no entry is at or under is [`OpsError::NotInBackup`].
pub(super) fn check_paths(entries: &[Entry], paths: &[String], stored: &str) -> Result<(), OpsError> {
    for q in paths {
        let q = q.trim_matches('/').as_bytes();
        if !entries.iter().any(|e| under(&e.path, q)) {
            let path = String::from_utf8_lossy(q).into_owned();
            return Err(OpsError::NotInBackup { path, stored: stored.to_string() });
        }
    }
    Ok(())
}

/// The items to write for `entries` (in tar order) selected by `paths`: files with where their bytes are
/// (`holder(i)` for entry `i`), hard links to a path written earlier as links, and a hard link whose first path is
/// not restored as a file with that path's bytes (the next links to it then point at this one). `corrupt` makes
/// the error for an entry the tree lists inconsistently (a file no archive holds, a link to nothing).
pub(super) fn select<'t>(
    entries: &'t [Entry],
    paths: &[String],
    holder: impl Fn(usize) -> Option<Holder>,
    corrupt: impl Fn(&[u8], &str) -> OpsError,
) -> Result<Selection<'t>, OpsError> {
    let at_path: HashMap<&[u8], usize> = entries.iter().enumerate().map(|(i, e)| (e.path.as_slice(), i)).collect();
    // For a hard link's first path that is not restored: the restored path that took its place.
    let mut stand_in: HashMap<&[u8], &[u8]> = HashMap::new();
    let mut written: std::collections::HashSet<&[u8]> = std::collections::HashSet::new();
    let mut sel = Selection { items: Vec::new(), skipped: Vec::new() };
    for (i, e) in entries.iter().enumerate() {
        if !wanted(paths, &e.path) {
            continue;
        }
        let item = match e.kind {
            EntryKind::HardLink => {
                let target = e.link.as_deref().unwrap_or_default();
                let Some(&t) = at_path.get(target) else {
                    return Err(corrupt(&e.path, "its hard link target is not in the tree"));
                };
                if written.contains(target) {
                    Item::Link(e, target)
                } else if let Some(first) = stand_in.get(target) {
                    Item::Link(e, first)
                } else {
                    stand_in.insert(target, &e.path);
                    Item::File(e, holder(t).ok_or_else(|| corrupt(&e.path, "no archive holds it"))?)
                }
            }
            EntryKind::File => Item::File(e, holder(i).ok_or_else(|| corrupt(&e.path, "no archive holds it"))?),
            EntryKind::Dir | EntryKind::Symlink => Item::Other(e),
            EntryKind::Other => {
                sel.skipped.push(e);
                continue;
            }
        };
        written.insert(&e.path);
        sel.items.push(item);
    }
    Ok(sel)
}

/// The members of each source that the files of `items` are in (source number to member numbers).
pub(super) fn members_needed<'i>(
    items: &[Item<'_>],
    index_of: impl Fn(usize) -> &'i Index,
) -> BTreeMap<usize, Vec<usize>> {
    let mut members: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for item in items {
        if let Item::File(_, (at, offset, len)) = item {
            members.entry(*at).or_default().extend(index_of(*at).members_covering(*offset, offset + len));
        }
    }
    members
}

/// Writes `items` as one tar stream into an extraction of `dest` on another thread, reading file bytes through
/// `fetchers` (by source number). An error of a source (`sources`, checked first), of the writer or of the
/// extractor fails the restore with nothing under a final name.
pub(super) fn extract_items(
    items: &[Item<'_>],
    fetchers: &mut HashMap<usize, Fetcher<'_>>,
    sources: &[&ObjectRange<'_>],
    dest: &Path,
    overwrite: bool,
) -> Result<ExtractSummary, OpsError> {
    let ex = ExtractOptions { overwrite, preserve_owner: false };
    let (tx, rx) = std::sync::mpsc::sync_channel::<io::Result<Vec<u8>>>(8);
    let (written, extracted) = std::thread::scope(|scope| {
        let extracting = scope.spawn(move || extract::extract(ChannelReader::new(rx), dest, &ex));
        let mut pipe = Pipe { tx: Some(tx), buf: Vec::with_capacity(PIPE_BLOCK) };
        let written = write_tree(&mut pipe, items, fetchers);
        drop(pipe);
        let extracted = extracting.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        (written, extracted)
    });
    for src in sources {
        if let Some(e) = src.take_error() {
            return Err(e.into());
        }
    }
    match (written, &extracted) {
        // The extractor stopped first (its error is the cause): the writer only saw the pipe close.
        (Err(OpsError::Io { source, .. }), Err(_)) if source.kind() == io::ErrorKind::BrokenPipe => {}
        (w, _) => w?,
    }
    extracted.map_err(|e| OpsError::Archive(ArchiveError::from(e)))
}

pub(super) fn read_error(e: ReadError) -> OpsError {
    match e {
        ReadError::PasswordNeeded => OpsError::Archive(ArchiveError::PasswordNeeded),
        e => OpsError::Io { context: "reading the archive".into(), source: io::Error::other(crate::error_chain(&e)) },
    }
}

/// Bytes sent to the extractor at a time.
const PIPE_BLOCK: usize = 1 << 20;

/// The writing end of the stream to the extractor. A failed tree is cut off with an error (never with an
/// end-of-archive, which would let the extractor commit part of a tree).
pub(super) struct Pipe {
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
    OpsError::Io { context: "restoring the selected tree".into(), source: e }
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
            Item::File(_, (at, offset, len)) => {
                let (at, offset, len) = (*at, *offset, *len);
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
pub(super) struct Fetcher<'a> {
    decoder: Decoder<'a>,
    index: &'a Index,
    /// Member numbers any file of the tree needs, sorted.
    wanted: Vec<usize>,
    cache: BTreeMap<usize, Vec<u8>>,
}

impl<'a> Fetcher<'a> {
    /// A reader of `index`'s archive through `decoder` that will be asked for the members in `wanted`.
    pub(super) fn new(decoder: Decoder<'a>, index: &'a Index, mut wanted: Vec<usize>) -> Fetcher<'a> {
        wanted.sort_unstable();
        wanted.dedup();
        Fetcher { decoder, index, wanted, cache: BTreeMap::new() }
    }

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
