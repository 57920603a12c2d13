//! Writing an archive: walk a file or directory, build the tar stream on one thread, cut it into fixed spans,
//! compress the spans as independent members ([`super::codec`]: gzip members, or zstd frames and a seek table) on
//! all cores, and record the entry index on the way.
//!
//! Memory is bounded by a few spans per core, whatever the input size. The output is a plain gzip or zstd stream;
//! encryption
//! is layered on top by the caller (see [`super::write_archive`]). Excludes come in as a filter; this module does
//! not read exclude files.

use std::collections::HashMap;
use std::fs::{self, File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

use rayon::prelude::*;
use thiserror::Error;

use super::codec::{self, Compression};
use super::incremental::{self, Dumped, Node, Tracker};
use super::index::{Entry, EntryKind, Index, Member};
use super::members::{self, MemberLens};

/// Decides whether a path below the source is included (`true`) or excluded; `bool` is whether it is a directory.
pub type Filter = Arc<dyn Fn(&Path, bool) -> bool + Send + Sync>;
/// Called with the number of source bytes just read.
pub type Progress = Arc<dyn Fn(u64) + Send + Sync>;

/// Tar bytes per member by default (see the README's performance section for how it was chosen).
pub const DEFAULT_SPAN: usize = 512 << 10;

/// How to pack.
#[derive(Clone)]
pub struct PackOptions {
    pub span: usize,
    /// How members are compressed.
    pub compression: Compression,
    /// The compression's level; `None` for its default ([`codec::default_level`]).
    pub level: Option<i32>,
    /// Worker threads for compression (0 = all cores).
    pub threads: usize,
    pub filter: Option<Filter>,
    pub progress: Option<Progress>,
    /// Directories on another file system than the source are stored as empty directories, not descended into
    /// (`-x`, as restic, borg and GNU tar do).
    pub one_file_system: bool,
    /// Directories stored as empty directories, never descended into, whatever `one_file_system` says: bakthat's
    /// own mounts (reading a backup through its own mount stores it twice, or fails on every cold file).
    pub stop_at: Vec<PathBuf>,
    /// A backup of a chain (see [`super::incremental`]): directories become GNU dumpdirs, and only what the
    /// tracker says changed is stored.
    pub changes: Option<Arc<Tracker>>,
}

impl Default for PackOptions {
    fn default() -> Self {
        PackOptions {
            span: DEFAULT_SPAN,
            compression: Compression::Gzip,
            level: None,
            threads: 0,
            filter: None,
            progress: None,
            one_file_system: false,
            stop_at: Vec::new(),
            changes: None,
        }
    }
}

/// Something skipped or damaged while packing; the backup goes on, and the caller reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackWarning {
    pub path: PathBuf,
    pub message: String,
}

/// What [`pack`] produced.
#[derive(Debug, Clone)]
pub struct PackReport {
    /// The entry index, with the member table (`stored_len`/`crypto_header` are left for the caller).
    pub index: Index,
    pub warnings: Vec<PackWarning>,
    /// Directories stored empty, not descended into, and why (another file system, a bakthat mount). Not warnings:
    /// the backup asked for it.
    pub not_descended: Vec<PackWarning>,
    /// Regular files packed, and their bytes.
    pub files: u64,
    pub bytes: u64,
}

/// Why packing failed.
#[derive(Debug, Error)]
pub enum PackError {
    #[error("cannot back up {path}: {source}")]
    Source {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing the archive")]
    Output(#[source] io::Error),
}

/// Opens a regular file for reading (a seam for tests, which inject read faults).
type Open = fn(&Path) -> io::Result<Box<dyn Read>>;

fn open_file(path: &Path) -> io::Result<Box<dyn Read>> {
    Ok(Box::new(File::open(path)?))
}

/// Packs `source` (a file or directory) as `arcname` into `out` as a sequence of members (and, for zstd, the seek
/// table after them).
pub fn pack<W: Write>(source: &Path, arcname: &str, opts: &PackOptions, out: &mut W) -> Result<PackReport, PackError> {
    pack_with(source, arcname, opts, out, open_file)
}

fn pack_with<W: Write>(
    source: &Path,
    arcname: &str,
    opts: &PackOptions,
    out: &mut W,
    open: Open,
) -> Result<PackReport, PackError> {
    let meta = fs::symlink_metadata(source).map_err(|e| PackError::Source { path: source.into(), source: e })?;
    let threads = if opts.threads == 0 { rayon::current_num_threads() } else { opts.threads };
    let batch = (threads * 2).max(2);
    let span = opts.span.clamp(4096, members::MAX_MEMBER_LEN);
    let (tx, rx) = sync_channel::<Vec<u8>>(batch);

    std::thread::scope(|scope| {
        let producer = scope.spawn(move || {
            let sink = SpanWriter { tx, buf: Vec::with_capacity(span), span, pos: 0 };
            let mut w = TarWalker::new(sink, opts, open);
            w.add_root(source, arcname, &meta)?;
            w.finish()
        });
        // Three stages, so that writing (and encrypting) one batch overlaps compressing the next: tar → compress
        // (all cores) → write (here). One compressed batch waits at most.
        let (ctx, crx) = sync_channel::<Vec<(u64, Vec<u8>)>>(1);
        let (compression, level) = (opts.compression, opts.level.unwrap_or(codec::default_level(opts.compression)));
        scope.spawn(move || compress_batches(rx, ctx, compression, level, batch));
        let written = write_members(crx, compression, out);
        let produced = producer.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        // An output error makes the producer fail with a closed channel: report the output error, it is the cause.
        let members = written?;
        let (mut report, tar_len) = produced?;
        report.index.members = members;
        report.index.span = span as u64;
        report.index.tar_len = tar_len;
        report.index.seekable = true;
        Ok(report)
    })
}

/// Compresses spans in batches of `batch` on the rayon pool and passes each batch on as (span length, member).
/// Ends when the tar side is done or the writer has stopped.
fn compress_batches(
    rx: Receiver<Vec<u8>>,
    tx: SyncSender<Vec<(u64, Vec<u8>)>>,
    compression: Compression,
    level: i32,
    batch: usize,
) {
    let mut spans = Vec::with_capacity(batch);
    loop {
        spans.clear();
        match rx.recv() {
            Ok(s) => spans.push(s),
            Err(_) => return,
        }
        while spans.len() < batch {
            match rx.recv() {
                Ok(s) => spans.push(s),
                Err(_) => break,
            }
        }
        let compressed: Vec<(u64, Vec<u8>)> =
            spans.par_iter().map(|s| (s.len() as u64, codec::compress(compression, s, level))).collect();
        if tx.send(compressed).is_err() {
            return;
        }
    }
}

/// Writes compressed batches in order, then the compression's trailer, and builds the member table.
fn write_members<W: Write>(
    rx: Receiver<Vec<(u64, Vec<u8>)>>,
    compression: Compression,
    out: &mut W,
) -> Result<Vec<Member>, PackError> {
    let mut table = Vec::new();
    let (mut tar_offset, mut comp_offset) = (0u64, 0u64);
    for batch in rx {
        for (tar_len, member) in batch {
            out.write_all(&member).map_err(PackError::Output)?;
            table.push(Member { tar_offset, tar_len, comp_offset, comp_len: member.len() as u64 });
            tar_offset += tar_len;
            comp_offset += member.len() as u64;
        }
    }
    let lens: Vec<MemberLens> =
        table.iter().map(|m| MemberLens { clen: m.comp_len as u32, ulen: m.tar_len as u32 }).collect();
    out.write_all(&codec::trailer(compression, &lens)).map_err(PackError::Output)?;
    Ok(table)
}

/// Cuts the tar stream into spans and hands them to the compressors.
struct SpanWriter {
    tx: SyncSender<Vec<u8>>,
    buf: Vec<u8>,
    span: usize,
    pos: u64,
}

impl SpanWriter {
    fn send(&mut self) -> io::Result<()> {
        let full = std::mem::replace(&mut self.buf, Vec::with_capacity(self.span));
        self.tx.send(full).map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "archive output stopped"))
    }
}

impl Write for SpanWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(self.span - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        self.pos += n as u64;
        if self.buf.len() == self.span {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct TarWalker<'o> {
    tar: tar::Builder<SpanWriter>,
    opts: &'o PackOptions,
    report: PackReport,
    /// (dev, ino) of files with several links -> their archive path.
    links: HashMap<(u64, u64), Vec<u8>>,
    root: PathBuf,
    /// The source's device (for `one_file_system`).
    root_dev: u64,
    open: Open,
}

impl<'o> TarWalker<'o> {
    fn new(sink: SpanWriter, opts: &'o PackOptions, open: Open) -> Self {
        let mut tar = tar::Builder::new(sink);
        tar.follow_symlinks(false);
        TarWalker {
            tar,
            opts,
            report: PackReport {
                index: Index::default(),
                warnings: Vec::new(),
                not_descended: Vec::new(),
                files: 0,
                bytes: 0,
            },
            links: HashMap::new(),
            root: PathBuf::new(),
            root_dev: 0,
            open,
        }
    }

    fn pos(&self) -> u64 {
        self.tar.get_ref().pos
    }

    fn warn(&mut self, path: &Path, message: impl Into<String>) {
        let message = message.into();
        tracing::warn!("{}: {message}", path.display());
        self.report.warnings.push(PackWarning { path: path.to_path_buf(), message });
    }

    fn add_root(&mut self, source: &Path, arcname: &str, meta: &Metadata) -> Result<(), PackError> {
        self.root = source.to_path_buf();
        self.root_dev = meta.dev();
        let src_err = |e: io::Error| PackError::Source { path: source.into(), source: e };
        if meta.is_dir() {
            // Fail early (not as a warning) when the top directory itself cannot be listed.
            fs::read_dir(source).map_err(src_err)?;
        } else if meta.is_file() {
            File::open(source).map_err(src_err)?;
        }
        self.add(source, arcname.as_bytes().to_vec(), meta)
    }

    fn add(&mut self, path: &Path, name: Vec<u8>, meta: &Metadata) -> Result<(), PackError> {
        let ft = meta.file_type();
        let header_offset = self.pos();
        let mut header = tar::Header::new_gnu();
        header.set_metadata_in_mode(meta, tar::HeaderMode::Complete);
        let mut entry = Entry {
            path: name.clone(),
            kind: EntryKind::Other,
            size: 0,
            mode: meta.mode(),
            uid: meta.uid() as u64,
            gid: meta.gid() as u64,
            mtime: meta.mtime(),
            link: None,
            header_offset,
            data_offset: 0,
            damaged: false,
        };
        let out = |e| PackError::Output(e);
        if ft.is_dir() {
            entry.kind = EntryKind::Dir;
            let children = match self.stop_reason(path, meta) {
                Some(why) => {
                    tracing::info!("{}: stored empty, not descended into: {why}", path.display());
                    self.report.not_descended.push(PackWarning { path: path.to_path_buf(), message: why.into() });
                    Vec::new()
                }
                None => self.children(path, &name),
            };
            let mut dname = name.clone();
            dname.push(b'/');
            let Some(tracker) = self.opts.changes.clone() else {
                header.set_size(0);
                self.tar.append_data(&mut header, os(&dname), io::empty()).map_err(out)?;
                self.push(entry, 0);
                for (child, cname, cmeta) in children {
                    self.add(&child, cname, &cmeta)?;
                }
                return Ok(());
            };
            // A chain's archive: a dumpdir listing every child, then the children that changed.
            tracker.record(&name, Node::of(meta, None));
            let decided: Vec<(PathBuf, Vec<u8>, Metadata, Dumped)> = children
                .into_iter()
                .map(|(child, cname, cmeta)| {
                    let what = if cmeta.is_dir() {
                        Dumped::Dir
                    } else {
                        let link = cmeta
                            .file_type()
                            .is_symlink()
                            .then(|| fs::read_link(&child).ok().map(|t| t.as_os_str().as_bytes().to_vec()))
                            .flatten();
                        match tracker.record(&cname, Node::of(&cmeta, link)) {
                            true => Dumped::Stored,
                            false => Dumped::Unchanged,
                        }
                    };
                    (child, cname, cmeta, what)
                })
                .collect();
            let skip = name.len() + 1;
            let mut listed: Vec<(&[u8], Dumped)> = decided.iter().map(|(_, n, _, w)| (&n[skip..], *w)).collect();
            let dump = incremental::dumpdir(&mut listed);
            header.set_entry_type(incremental::dumpdir_type());
            header.set_size(dump.len() as u64);
            self.tar.append_data(&mut header, os(&dname), dump.as_slice()).map_err(out)?;
            self.push(entry, dump.len() as u64);
            for (child, cname, cmeta, what) in decided {
                if what != Dumped::Unchanged {
                    self.add(&child, cname, &cmeta)?;
                }
            }
        } else if ft.is_file() {
            if meta.nlink() > 1 {
                if let Some(first) = self.links.get(&(meta.dev(), meta.ino())).cloned() {
                    header.set_entry_type(tar::EntryType::Link);
                    header.set_size(0);
                    self.tar.append_link(&mut header, os(&name), os(&first)).map_err(out)?;
                    entry.kind = EntryKind::HardLink;
                    entry.link = Some(first);
                    self.push(entry, 0);
                    return Ok(());
                }
            }
            let file = match (self.open)(path) {
                Ok(f) => f,
                Err(e) => {
                    self.warn(path, format!("skipped, cannot be read: {e}"));
                    self.forget(&name);
                    return Ok(());
                }
            };
            let size = meta.len();
            let mut reader =
                ExactReader { file, left: size, failed: None, short: false, progress: self.opts.progress.clone() };
            self.tar.append_data(&mut header, os(&name), &mut reader).map_err(out)?;
            // The zeros are marked in the index, so restore and the mount never pass them off as the file's bytes.
            entry.damaged = reader.failed.is_some() || reader.short;
            if entry.damaged {
                // Its stat may not change again: without this, the next backup of a chain would think the zeros
                // stored here are its bytes and never read it again.
                self.forget(&name);
            }
            if let Some(e) = reader.failed {
                self.warn(path, format!("read failed part way ({e}); the rest of the file is stored as zeros"));
            } else if reader.short {
                self.warn(path, "file shrank while it was read; the missing end is stored as zeros");
            } else if fs::metadata(path).map(|m| m.len() != size).unwrap_or(false) {
                self.warn(path, "file changed size while it was read; the first bytes are stored");
            }
            entry.kind = EntryKind::File;
            entry.size = size;
            if meta.nlink() > 1 {
                self.links.insert((meta.dev(), meta.ino()), name);
            }
            self.report.files += 1;
            self.report.bytes += size;
            let len = entry.size;
            self.push(entry, len);
        } else if ft.is_symlink() {
            let target = match fs::read_link(path) {
                Ok(t) => t,
                Err(e) => {
                    self.warn(path, format!("skipped, symlink cannot be read: {e}"));
                    self.forget(&name);
                    return Ok(());
                }
            };
            header.set_size(0);
            self.tar.append_link(&mut header, os(&name), &target).map_err(out)?;
            entry.kind = EntryKind::Symlink;
            entry.link = Some(target.as_os_str().as_bytes().to_vec());
            self.push(entry, 0);
        } else {
            let what = if ft.is_socket() {
                "socket"
            } else if ft.is_fifo() {
                "fifo"
            } else if ft.is_block_device() || ft.is_char_device() {
                "device"
            } else {
                "special file"
            };
            self.warn(path, format!("skipped, a {what} is not backed up"));
            self.forget(&name);
        }
        Ok(())
    }

    /// Forgets an entry a chain's tracker recorded but that was not stored, so the next backup tries it again.
    fn forget(&self, name: &[u8]) {
        if let Some(t) = &self.opts.changes {
            t.forget(name);
        }
    }

    /// Why a directory below the source is not descended into, if it is not.
    fn stop_reason(&self, path: &Path, meta: &Metadata) -> Option<&'static str> {
        if path == self.root {
            None
        } else if self.opts.stop_at.iter().any(|p| p == path) {
            Some("a bakthat mount")
        } else if self.opts.one_file_system && meta.dev() != self.root_dev {
            Some("another file system (--one-file-system)")
        } else {
            None
        }
    }

    /// Records an entry just written, whose data took `data_len` bytes (a file's size, a dumpdir's length).
    fn push(&mut self, mut entry: Entry, data_len: u64) {
        let end = self.pos();
        entry.data_offset = end - data_len.div_ceil(512) * 512;
        // The entry's own header block sits right before its data (long-name blocks, if any, before that).
        entry.header_offset = entry.data_offset - 512;
        self.report.index.entries.push(entry);
    }

    /// The children of `dir` the filter includes, sorted by name, with their archive names and metadata.
    fn children(&mut self, dir: &Path, name: &[u8]) -> Vec<(PathBuf, Vec<u8>, Metadata)> {
        let read = match fs::read_dir(dir) {
            Ok(r) => r,
            Err(e) => {
                self.warn(dir, format!("contents skipped, directory cannot be listed: {e}"));
                return Vec::new();
            }
        };
        let mut children: Vec<_> = read.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        children.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
        let mut out = Vec::with_capacity(children.len());
        for child in children {
            let meta = match fs::symlink_metadata(&child) {
                Ok(m) => m,
                Err(e) => {
                    self.warn(&child, format!("skipped: {e}"));
                    continue;
                }
            };
            if let Some(filter) = &self.opts.filter {
                if !filter(&child, meta.is_dir()) {
                    continue;
                }
            }
            if self.opts.changes.is_some() && !(meta.is_dir() || meta.is_file() || meta.file_type().is_symlink()) {
                // Not stored, so not listed in a dumpdir either (GNU tar would remove it on extraction anyway).
                self.warn(&child, "skipped, only files, directories and symlinks are backed up");
                continue;
            }
            let mut cname = name.to_vec();
            cname.push(b'/');
            cname.extend_from_slice(child.file_name().map(|n| n.as_bytes()).unwrap_or_default());
            out.push((child, cname, meta));
        }
        out
    }

    fn finish(mut self) -> Result<(PackReport, u64), PackError> {
        self.tar.finish().map_err(PackError::Output)?;
        let mut sink = self.tar.into_inner().map_err(PackError::Output)?;
        if !sink.buf.is_empty() {
            sink.send().map_err(PackError::Output)?;
        }
        let _ = &self.root;
        Ok((self.report, sink.pos))
    }
}

fn os(b: &[u8]) -> &Path {
    Path::new(std::ffi::OsStr::from_bytes(b))
}

/// Yields exactly `left` bytes of a file: zeros after a short read or an error, so the tar stays consistent.
struct ExactReader {
    file: Box<dyn Read>,
    left: u64,
    failed: Option<io::Error>,
    short: bool,
    progress: Option<Progress>,
}

impl Read for ExactReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let n = if self.failed.is_some() || self.short {
            0
        } else {
            loop {
                match self.file.read(&mut buf[..want]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        self.failed = Some(e);
                        break 0;
                    }
                }
            }
        };
        let n = if n == 0 {
            if self.failed.is_none() {
                self.short = true;
            }
            buf[..want].fill(0);
            want
        } else {
            if let Some(p) = &self.progress {
                p(n as u64);
            }
            n
        };
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Opens files as they are, except `bad.bin`, whose reads fail with EIO after its first 1000 bytes.
    fn faulty_open(path: &Path) -> io::Result<Box<dyn Read>> {
        struct FailAfter(File, u64);
        impl Read for FailAfter {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.1 == 0 {
                    return Err(io::Error::from_raw_os_error(libc::EIO));
                }
                let want = buf.len().min(self.1 as usize);
                let n = self.0.read(&mut buf[..want])?;
                self.1 -= n as u64;
                Ok(n)
            }
        }
        let f = File::open(path)?;
        Ok(if path.ends_with("bad.bin") { Box::new(FailAfter(f, 1000)) } else { Box::new(f) })
    }

    fn entries(report: &PackReport) -> Vec<(String, bool)> {
        report.index.entries.iter().map(|e| (String::from_utf8_lossy(&e.path).into_owned(), e.damaged)).collect()
    }

    /// A directory `src` in `t` holding `files`.
    fn source(t: &Path, files: &[(&str, &[u8])]) -> PathBuf {
        let src = t.join("src");
        fs::create_dir(&src).unwrap();
        for (name, data) in files {
            fs::write(src.join(name), data).unwrap();
        }
        src
    }

    /// Options for a backup of a chain whose parent's snapshot is `parent`, and the tracker that records this one.
    fn chain_options(parent: incremental::Snapshot) -> (Arc<Tracker>, PackOptions) {
        let tracker = Arc::new(Tracker::new(parent));
        (tracker.clone(), PackOptions { changes: Some(tracker), ..PackOptions::default() })
    }

    // Regression (issue 11, item 7): a file whose read failed part way was stored zero-padded with nothing in the
    // archive or its index saying so, and was restored later as if the zeros were its content.
    #[test]
    fn a_read_that_fails_part_way_marks_the_entry_damaged() {
        let t = tempfile::tempdir().unwrap();
        let src = source(t.path(), &[("bad.bin", &[7u8; 5000]), ("good.txt", b"fine")]);
        let mut out = Vec::new();
        let report = pack_with(&src, "src", &PackOptions::default(), &mut out, faulty_open).unwrap();
        assert_eq!(
            entries(&report),
            [("src".into(), false), ("src/bad.bin".into(), true), ("src/good.txt".into(), false)]
        );
        assert_eq!(report.warnings.len(), 1);
        assert!(report.warnings[0].message.contains("read failed part way"), "{:?}", report.warnings);
        let back = Index::from_bytes(&report.index.to_bytes()).unwrap();
        assert!(back.entries[1].damaged, "the mark survives the index's serialization");
    }

    /// In a chain, a file stored damaged is left out of the snapshot, so the next incremental reads it again
    /// instead of keeping the zeros (its size and times have not changed, so nothing else would).
    #[test]
    fn a_damaged_file_is_tried_again_by_the_next_backup_of_a_chain() {
        let t = tempfile::tempdir().unwrap();
        let src = source(t.path(), &[("bad.bin", &[7u8; 5000]), ("good.txt", b"fine")]);
        let (tracker, opts) = chain_options(incremental::Snapshot::default());
        let report = pack_with(&src, "src", &opts, &mut Vec::new(), faulty_open).unwrap();
        assert!(entries(&report).contains(&("src/bad.bin".into(), true)));
        let (snapshot, _) = tracker.finish();
        let known: Vec<&[u8]> = snapshot.nodes.keys().map(Vec::as_slice).collect();
        assert_eq!(known, [&b"src"[..], b"src/good.txt"]);
        // The next backup of the chain stores it again, and reads it whole this time.
        let (_, opts) = chain_options(snapshot);
        let report = pack(&src, "src", &opts, &mut Vec::new()).unwrap();
        let stored: Vec<(String, bool)> = entries(&report).into_iter().filter(|(p, _)| p != "src").collect();
        assert_eq!(stored, [("src/bad.bin".into(), false)]);
    }

    /// Opens files as they are, but first appends to `grows.txt`, as a program writing it during the backup would.
    fn growing_open(path: &Path) -> io::Result<Box<dyn Read>> {
        if path.ends_with("grows.txt") {
            fs::OpenOptions::new().append(true).open(path)?.write_all(b" and more")?;
        }
        Ok(Box::new(File::open(path)?))
    }

    /// A file that changes while a backup of a chain reads it: the backup stores the bytes it had when it was listed
    /// (with a warning), and the snapshot keeps the stat from before the read, so the next incremental sees the
    /// change and stores the file again.
    #[test]
    fn a_file_changed_during_a_backup_of_a_chain_is_stored_again_by_the_next() {
        let t = tempfile::tempdir().unwrap();
        let src = source(t.path(), &[("grows.txt", b"first"), ("still.txt", b"same")]);
        let (tracker, opts) = chain_options(incremental::Snapshot::default());
        let report = pack_with(&src, "src", &opts, &mut Vec::new(), growing_open).unwrap();
        assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
        assert!(report.warnings[0].message.contains("changed size while it was read"), "{:?}", report.warnings);
        let (snapshot, _) = tracker.finish();
        let (_, opts) = chain_options(snapshot);
        let mut out = Vec::new();
        let report = pack(&src, "src", &opts, &mut out).unwrap();
        let stored: Vec<String> = entries(&report).into_iter().map(|(p, _)| p).filter(|p| p != "src").collect();
        assert_eq!(stored, ["src/grows.txt"], "the unchanged file is not stored again");
        let mut tar = tar::Archive::new(flate2::read::MultiGzDecoder::new(out.as_slice()));
        let mut found = None;
        for e in tar.entries().unwrap() {
            let mut e = e.unwrap();
            if e.path().unwrap().ends_with("grows.txt") {
                let mut data = String::new();
                e.read_to_string(&mut data).unwrap();
                found = Some(data);
            }
        }
        assert_eq!(found.as_deref(), Some("first and more"));
    }

    #[test]
    fn stop_at_directories_are_stored_empty() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("home");
        fs::create_dir_all(src.join("backups/by-name")).unwrap();
        fs::write(src.join("backups/by-name/x"), b"through the mount").unwrap();
        fs::write(src.join("notes.txt"), b"mine").unwrap();
        let opts = PackOptions { stop_at: vec![src.join("backups")], ..PackOptions::default() };
        let report = pack(&src, "home", &opts, &mut Vec::new()).unwrap();
        let names: Vec<String> = entries(&report).into_iter().map(|(p, _)| p).collect();
        assert_eq!(names, ["home", "home/backups", "home/notes.txt"]);
        assert_eq!(report.not_descended.len(), 1);
        assert_eq!(report.not_descended[0].message, "a bakthat mount");
        assert!(report.warnings.is_empty(), "not descending is no warning: the backup exits 0");
        // The source itself is never skipped, even when it is listed.
        let opts = PackOptions { stop_at: vec![src.join("backups")], ..PackOptions::default() };
        let report = pack(&src.join("backups"), "backups", &opts, &mut Vec::new()).unwrap();
        assert_eq!(report.index.entries.len(), 3);
    }

    /// Mounts a tmpfs (as root) and unmounts it on drop.
    struct Tmpfs(PathBuf);

    impl Tmpfs {
        fn mount(at: &Path) -> Tmpfs {
            fs::create_dir_all(at).unwrap();
            let st = std::process::Command::new("mount").args(["-t", "tmpfs", "tmpfs"]).arg(at).status().unwrap();
            assert!(st.success(), "mounting a tmpfs needs root (the test suite runs as root, as for FUSE)");
            Tmpfs(at.to_path_buf())
        }
    }

    impl Drop for Tmpfs {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }

    #[test]
    fn one_file_system_stores_other_mounts_empty() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        let tmpfs = Tmpfs::mount(&src.join("mnt"));
        fs::write(tmpfs.0.join("elsewhere.txt"), b"other fs").unwrap();
        fs::write(src.join("here.txt"), b"this fs").unwrap();
        let all = pack(&src, "src", &PackOptions::default(), &mut Vec::new()).unwrap();
        assert_eq!(all.index.entries.len(), 4);
        let opts = PackOptions { one_file_system: true, ..PackOptions::default() };
        let report = pack(&src, "src", &opts, &mut Vec::new()).unwrap();
        let names: Vec<String> = entries(&report).into_iter().map(|(p, _)| p).collect();
        assert_eq!(names, ["src", "src/here.txt", "src/mnt"]);
        assert_eq!(report.not_descended[0].path, src.join("mnt"));
    }
}
