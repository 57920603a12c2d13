//! Uploads: a spool per segment, one `PUT` for small objects, a Static Large Object (segments uploaded by a
//! background thread, then the manifest) for large ones. See the parent module's doc.

use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use reqwest::blocking::Body;
use reqwest::header::HeaderMap;

use super::{header_str, random_hex, Inner, Segment, SPILL};
use crate::storage::{ObjectInfo, StorageError, Upload};

/// Bytes of one segment: in memory up to [`SPILL`], then in an anonymous temporary file.
#[derive(Default)]
pub(super) struct Spool {
    pub(super) mem: Vec<u8>,
    pub(super) file: Option<BufWriter<File>>,
    pub(super) len: u64,
}

impl Spool {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        if self.file.is_none() && self.mem.len() + buf.len() > SPILL {
            let mut f = BufWriter::with_capacity(256 << 10, tempfile::tempfile()?);
            f.write_all(&self.mem)?;
            self.mem = Vec::new();
            self.file = Some(f);
        }
        match &mut self.file {
            Some(f) => f.write_all(buf)?,
            None => self.mem.extend_from_slice(buf),
        }
        self.len += buf.len() as u64;
        Ok(())
    }

    /// Finishes writing; the result can be read any number of times.
    fn seal(self) -> io::Result<Sealed> {
        match self.file {
            None => Ok(Sealed::Mem(self.mem)),
            Some(f) => Ok(Sealed::File(f.into_inner().map_err(|e| e.into_error())?, self.len)),
        }
    }
}

/// A finished segment, replayable for retries.
pub(super) enum Sealed {
    Mem(Vec<u8>),
    File(File, u64),
}

impl Sealed {
    pub(super) fn len(&self) -> u64 {
        match self {
            Sealed::Mem(v) => v.len() as u64,
            Sealed::File(_, len) => *len,
        }
    }

    /// A request body reading the whole segment from its start.
    pub(super) fn body(&self) -> io::Result<Body> {
        match self {
            Sealed::Mem(v) => Ok(Body::from(v.clone())),
            Sealed::File(f, len) => {
                let mut f = f.try_clone()?;
                f.seek(SeekFrom::Start(0))?;
                Ok(Body::sized(f, *len))
            }
        }
    }
}

/// What the segment thread hands back: the segments it uploaded, in order, and why it stopped early if it did.
pub(super) struct Uploaded {
    pub(super) segments: Vec<Segment>,
    pub(super) error: Option<StorageError>,
}

pub(super) struct Uploader {
    pub(super) tx: Option<SyncSender<Sealed>>,
    pub(super) handle: Option<JoinHandle<Uploaded>>,
}

/// An object being written; see the module doc for how.
pub(super) struct SwiftUpload {
    pub(super) inner: Arc<Inner>,
    pub(super) key: String,
    pub(super) headers: HeaderMap,
    pub(super) current: Spool,
    pub(super) total: u64,
    pub(super) uploader: Option<Uploader>,
    /// Segments and nested manifests known to be uploaded (deleted again if the upload is not committed).
    pub(super) segments: Vec<Segment>,
    pub(super) committed: bool,
}

impl SwiftUpload {
    fn err(&self, e: io::Error) -> StorageError {
        StorageError::io(self.inner.store(), &self.key, e)
    }

    /// Hands the full current segment to the segment thread, starting it first if needed.
    fn hand_off(&mut self) -> Result<(), StorageError> {
        if self.uploader.is_none() {
            self.inner.ensure_segments_container()?;
            let id = format!("{}-{}", chrono::Utc::now().timestamp(), random_hex());
            let prefix = format!("{}/slo/{id}/", self.key);
            let (tx, rx) = sync_channel::<Sealed>(0);
            let inner = self.inner.clone();
            let handle = std::thread::Builder::new()
                .name("swift-segments".into())
                .spawn(move || upload_segments(&inner, &prefix, rx))
                .map_err(|e| self.err(e))?;
            self.uploader = Some(Uploader { tx: Some(tx), handle: Some(handle) });
        }
        let spool = std::mem::take(&mut self.current);
        let sealed = spool.seal().map_err(|e| self.err(e))?;
        let sent = self.uploader.as_ref().and_then(|u| u.tx.as_ref()).is_some_and(|tx| tx.send(sealed).is_ok());
        if sent {
            return Ok(());
        }
        // The thread stopped: it has an error to tell.
        let done = self.finish_uploader();
        Err(done
            .unwrap_or_else(|| self.inner.backend_err(format!("uploading {}: the segment upload stopped", self.key))))
    }

    /// Waits for the segment thread; records its segments; returns its error, if any.
    fn finish_uploader(&mut self) -> Option<StorageError> {
        let u = self.uploader.as_mut()?;
        u.tx = None;
        let handle = u.handle.take()?;
        match handle.join() {
            Ok(done) => {
                self.segments.extend(done.segments);
                done.error
            }
            Err(_) => Some(self.inner.backend_err(format!("uploading {}: the segment thread panicked", self.key))),
        }
    }

    fn commit_segments(&mut self) -> Result<ObjectInfo, StorageError> {
        if self.current.len > 0 {
            self.hand_off()?;
        }
        if let Some(e) = self.finish_uploader() {
            return Err(e);
        }
        let inner = self.inner.clone();
        let per = inner.settings.manifest_segments;
        let mut level: Vec<Segment> = self.segments.clone();
        let group_prefix = level
            .first()
            .and_then(|s| s.path.rsplit_once('/'))
            .map(|(dir, _)| dir.split_once('/').map_or(dir, |(_, d)| d).to_string())
            .unwrap_or_default();
        // Too many segments for one manifest: manifests of manifests, in the segments container.
        let mut depth = 0;
        while level.len() > per {
            depth += 1;
            let mut upper = Vec::new();
            for (i, chunk) in level.chunks(per).enumerate() {
                let name = format!("{group_prefix}/manifest-{depth}-{i:06}");
                let resp = inner.put_manifest(&inner.segments_container, &name, chunk, &HeaderMap::new())?;
                let etag = header_str(resp.headers(), "Etag").unwrap_or_default().trim_matches('"').to_string();
                let seg = Segment {
                    path: format!("{}/{name}", inner.segments_container),
                    etag,
                    size: chunk.iter().map(|s| s.size).sum(),
                };
                self.segments.push(seg.clone());
                upper.push(seg);
            }
            level = upper;
        }
        let resp = inner.put_manifest(&inner.settings.container, &self.key, &level, &self.headers)?;
        self.committed = true;
        let mut info = inner.info_from_headers(&self.key, resp.headers());
        info.size = self.total;
        Ok(info)
    }
}

fn upload_segments(inner: &Inner, prefix: &str, rx: Receiver<Sealed>) -> Uploaded {
    let mut done = Uploaded { segments: Vec::new(), error: None };
    for (n, sealed) in rx.iter().enumerate() {
        match inner.put_segment(&format!("{prefix}{:08}", n + 1), &sealed) {
            Ok(seg) => done.segments.push(seg),
            Err(e) => {
                done.error = Some(e);
                break;
            }
        }
    }
    done
}

impl Write for SwiftUpload {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let limit = self.inner.settings.segment_size;
        if self.current.len >= limit {
            self.hand_off().map_err(io::Error::other)?;
        }
        let n = buf.len().min((limit - self.current.len) as usize);
        self.current.write_all(&buf[..n])?;
        self.total += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Upload for SwiftUpload {
    fn commit(mut self: Box<Self>) -> Result<ObjectInfo, StorageError> {
        if self.uploader.is_some() {
            return self.commit_segments();
        }
        let sealed = std::mem::take(&mut self.current).seal().map_err(|e| self.err(e))?;
        let inner = self.inner.clone();
        let path = inner.object_path(&inner.settings.container, &self.key);
        let what = format!("uploading {}", self.key);
        let resp = inner.put(&what, &path, &sealed, &self.headers)?;
        if !resp.status().is_success() {
            return Err(inner.status_err(resp, &what));
        }
        self.committed = true;
        let mut info = inner.info_from_headers(&self.key, resp.headers());
        info.size = self.total;
        Ok(info)
    }
}

impl Drop for SwiftUpload {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        let _ = self.finish_uploader();
        if !self.segments.is_empty() {
            self.inner.delete_segments_quietly(&self.segments);
        }
    }
}
