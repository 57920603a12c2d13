//! Downloads that resume with a `Range` request when the connection fails mid-way.

use std::io::{self, Read};
use std::sync::Arc;

use reqwest::blocking::Response;
use reqwest::header::ETAG;
use reqwest::StatusCode;

use super::{header_str, Inner};

/// An object's body that resumes with a `Range` request when the connection fails mid-way.
pub(super) struct ObjectReader {
    pub(super) inner: Arc<Inner>,
    pub(super) key: String,
    pub(super) resp: Option<Response>,
    pub(super) pos: u64,
    pub(super) size: Option<u64>,
    pub(super) etag: Option<String>,
    /// Failures since the last byte read.
    pub(super) failures: u32,
}

impl ObjectReader {
    fn reopen(&mut self) -> io::Result<()> {
        self.resp = None;
        self.inner.retry.pause(self.failures);
        let resp = self.inner.open(&self.key, self.pos).map_err(io::Error::other)?;
        let etag = header_str(resp.headers(), ETAG.as_str());
        if etag != self.etag {
            return Err(io::Error::other(format!(
                "{} changed on the server during the download (etag {:?}, then {:?})",
                self.key, self.etag, etag
            )));
        }
        if self.pos > 0 && resp.status() != StatusCode::PARTIAL_CONTENT {
            return Err(io::Error::other(format!("the server did not resume the download of {}", self.key)));
        }
        self.resp = Some(resp);
        Ok(())
    }
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() || self.size.is_some_and(|s| self.pos >= s) {
            return Ok(0);
        }
        loop {
            let result = match self.resp.as_mut() {
                Some(r) => r.read(buf),
                None => Err(io::Error::other("no response")),
            };
            let error = match result {
                Ok(0) if self.size.is_none_or(|s| self.pos >= s) => return Ok(0),
                Ok(0) => io::Error::new(io::ErrorKind::UnexpectedEof, "the connection closed early"),
                Ok(n) => {
                    self.pos += n as u64;
                    self.failures = 0;
                    return Ok(n);
                }
                Err(e) => e,
            };
            self.failures += 1;
            let attempts = self.inner.retry.attempts;
            if self.failures >= attempts {
                return Err(io::Error::new(
                    error.kind(),
                    format!("downloading {} failed {attempts} times at byte {}: {error}", self.key, self.pos),
                ));
            }
            tracing::debug!(
                "{}: download of {} broke at byte {}: {error}; resuming",
                self.inner.describe,
                self.key,
                self.pos
            );
            self.reopen()?;
        }
    }
}
