//! The S3 store: one object per key at the root of a bucket, on AWS or an S3-compatible service (`endpoint_url`,
//! path-style addressing: MinIO, moto, Ceph...).
//!
//! Uploads stream: [`S3Store::create`] buffers one part (8 MiB by default), uploads parts in parallel with at most
//! a few in flight, and completes the multipart upload on commit; an object smaller than one part is sent with a
//! single PutObject. Downloads stream through a bounded channel and resume after a broken connection. Objects in the
//! archive classes (GLACIER, DEEP_ARCHIVE) report [`Retrieval`] states from the `x-amz-restore` header and are
//! restored with RestoreObject.
//!
//! Beyond the [`Backend`] trait: presigned URLs ([`S3Store::presign`], in `presign.rs`: GET for `share`, any of GET,
//! PUT, DELETE and HEAD for KeyValue URLs) and whole small objects with their user metadata
//! ([`S3Store::get_with_metadata`], for KeyValue).
//!
//! Not here: the KeyValue encoding itself ([`crate::kv`]), bucket policies or lifecycle rules.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketLocationConstraint, ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, CreateBucketConfiguration,
    GlacierJobParameters, RestoreRequest, StorageClass, Tier,
};
use aws_sdk_s3::Client;
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

use super::aws::{self, AwsAccess, AwsTuning, Class, Failure, StreamReader};
use super::retry::Retry;
use super::{check_object_key, Backend, ObjectInfo, PutOptions, Retrieval, StorageError, Upload};

/// The storage classes an upload may ask for.
pub const STORAGE_CLASSES: [&str; 8] = [
    "STANDARD",
    "REDUCED_REDUNDANCY",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER_IR",
    "GLACIER",
    "DEEP_ARCHIVE",
];

/// The classes whose objects must be restored before they can be read.
const ARCHIVE_CLASSES: [&str; 2] = ["GLACIER", "DEEP_ARCHIVE"];

/// S3 refuses parts smaller than this (except the last one).
const MIN_PART_SIZE: usize = 5 << 20;
/// S3 allows at most this many parts per upload.
const MAX_PARTS: u64 = 10_000;
/// Days a restored copy of an archived object stays readable.
const RESTORE_DAYS: i32 = 7;
mod presign;
pub use presign::{PresignMethod, UnknownMethod};

/// User metadata of an object: names without the `x-amz-meta-` prefix, lower case.
pub type UserMetadata = std::collections::HashMap<String, String>;

/// The longest validity of a presigned URL (a SigV4 limit).
pub const MAX_PRESIGN: Duration = Duration::from_secs(7 * 86400);

/// How to reach a bucket.
#[derive(Clone, Debug)]
pub struct S3Settings {
    /// The bucket (the profile's `s3_bucket`); objects live at its root, as in 0.6.
    pub bucket: String,
    /// The region, endpoint and credentials.
    pub access: AwsAccess,
    /// The profile's `s3_storage_class`, used when [`PutOptions::storage_class`] is `None`.
    pub storage_class: Option<String>,
    /// Bytes per uploaded part (at least 5 MiB); grows for very large objects to stay under 10,000 parts.
    pub part_size: usize,
    /// Parts uploaded at once; memory use is about `(max_in_flight + 1) * part_size`.
    pub max_in_flight: usize,
    /// [`Backend::cleanup`] aborts multipart uploads started longer ago than this.
    pub stale_upload_age: Duration,
    pub tuning: AwsTuning,
}

impl Default for S3Settings {
    fn default() -> Self {
        S3Settings {
            bucket: String::new(),
            access: AwsAccess::default(),
            storage_class: None,
            part_size: 8 << 20,
            max_in_flight: 4,
            stale_upload_age: Duration::from_secs(3600),
            tuning: AwsTuning::default(),
        }
    }
}

struct Inner {
    // Field order matters: the client goes before the runtime it runs on.
    client: Client,
    rt: Runtime,
    bucket: String,
    region: String,
    describe: String,
    storage_class: Option<StorageClass>,
    part_size: usize,
    max_in_flight: usize,
    stale_upload_age: Duration,
    attempts: u32,
    /// Retries of ranged reads whose body broke (the SDK retries the requests).
    retry: Retry,
    bucket_ready: AtomicBool,
}

/// A bucket. Cheap to clone; each store owns a small tokio runtime and blocks on it, so its methods must not be
/// called from inside an async runtime.
#[derive(Clone)]
pub struct S3Store {
    inner: Arc<Inner>,
}

/// Parses a storage class name (case-insensitive).
fn storage_class(name: &str, store: &str) -> Result<StorageClass, StorageError> {
    let upper = name.trim().to_ascii_uppercase();
    if STORAGE_CLASSES.contains(&upper.as_str()) {
        Ok(StorageClass::from(upper.as_str()))
    } else {
        Err(StorageError::Backend {
            store: store.to_string(),
            message: format!("unknown S3 storage class {name:?}; use one of {}", STORAGE_CLASSES.join(", ")),
            source: None,
        })
    }
}

/// The size of part number `index` (0-based) for uploads of unknown size: `base` for the first 2,000 parts, then
/// doubling every 2,000 parts, so 10,000 parts hold `62,000 * base` bytes (484 GiB with 8 MiB parts; a
/// known size raises the base instead, see [`base_part_size`]).
pub fn part_size_for(base: usize, index: u64) -> usize {
    base << (index / 2000).min(5)
}

/// The base part size for an upload: the configured one, or larger when a known size would need more than 9,000
/// parts (rounded up to a whole MiB).
pub fn base_part_size(configured: usize, size_hint: Option<u64>) -> usize {
    let configured = configured.max(MIN_PART_SIZE);
    match size_hint {
        Some(size) if size / configured as u64 > MAX_PARTS - 1000 => {
            let needed = size.div_ceil(MAX_PARTS - 1000).div_ceil(1 << 20) << 20;
            needed.max(configured as u64) as usize
        }
        _ => configured,
    }
}

/// What the `x-amz-restore` header of an archived object says.
pub fn restore_state(storage_class: Option<&str>, restore: Option<&str>) -> Retrieval {
    if !storage_class.is_some_and(|c| ARCHIVE_CLASSES.contains(&c)) {
        return Retrieval::Ready;
    }
    match restore {
        None => Retrieval::NotStarted,
        Some(h) if h.replace(' ', "").contains("ongoing-request=\"true\"") => {
            Retrieval::Pending { job_id: None, ready_at: None }
        }
        Some(_) => Retrieval::Ready,
    }
}

impl S3Store {
    /// Prepares a client for the bucket; no request is made until the first operation. A missing bucket is
    /// created by the first upload.
    pub fn new(settings: &S3Settings) -> Result<S3Store, StorageError> {
        let describe = settings.access.describe(format!("s3 bucket {}", settings.bucket));
        if settings.bucket.is_empty() {
            return Err(StorageError::Backend {
                store: describe,
                message: "no bucket configured; set s3_bucket in the profile".into(),
                source: None,
            });
        }
        let storage_class = settings.storage_class.as_deref().map(|c| storage_class(c, &describe)).transpose()?;
        let rt = aws::runtime("bakthat-s3", &settings.tuning, &describe)?;
        let sdk = aws::sdk_config(&rt, &settings.access, &settings.tuning);
        let region = sdk.region().map(|r| r.to_string()).unwrap_or_else(|| aws::DEFAULT_REGION.to_string());
        let path_style = settings.access.endpoint().is_some();
        let client = Client::from_conf(aws_sdk_s3::config::Builder::from(&sdk).force_path_style(path_style).build());
        Ok(S3Store {
            inner: Arc::new(Inner {
                client,
                rt,
                bucket: settings.bucket.clone(),
                region,
                describe,
                storage_class,
                part_size: settings.part_size.max(MIN_PART_SIZE),
                max_in_flight: settings.max_in_flight.max(1),
                stale_upload_age: settings.stale_upload_age,
                attempts: settings.tuning.max_attempts.max(1),
                retry: aws::body_retry(settings.tuning.max_attempts),
                bucket_ready: AtomicBool::new(false),
            }),
        })
    }

    /// The bucket's region as used for requests.
    pub fn region(&self) -> &str {
        &self.inner.region
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.inner.bucket
    }

    /// A whole (small) object and its user metadata (names without the `x-amz-meta-` prefix, lower case), or
    /// `None` if there is no such object.
    pub fn get_with_metadata(&self, key: &str) -> Result<Option<(Vec<u8>, UserMetadata)>, StorageError> {
        check_object_key(key)?;
        let inner = &self.inner;
        let res = inner.rt.block_on(async {
            let out = inner.client.get_object().bucket(&inner.bucket).key(key).send().await.map_err(Failure::of)?;
            let meta = out.metadata().cloned().unwrap_or_default();
            let data = out.body.collect().await.map_err(|e| Failure::io(io::Error::other(e)))?;
            Ok::<_, Failure>((data.to_vec(), meta))
        });
        match res {
            Ok((data, meta)) => Ok(Some((data, meta.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect()))),
            Err(f) if f.class == Class::NotFound => Ok(None),
            Err(f) => Err(inner.fail(f, "downloading", key)),
        }
    }
}

impl Inner {
    fn fail(&self, f: Failure, op: &str, key: &str) -> StorageError {
        if f.is("NoSuchBucket") {
            return StorageError::Backend {
                store: self.describe.clone(),
                message: format!(
                    "the bucket {} does not exist; check s3_bucket in the profile (a backup creates it)",
                    self.bucket
                ),
                source: Some(f.source),
            };
        }
        f.into_storage(&self.describe, op, key, self.attempts)
    }

    /// Creates the bucket if it is missing (once per store).
    fn ensure_bucket(&self) -> Result<(), StorageError> {
        if self.bucket_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let head = self.rt.block_on(self.client.head_bucket().bucket(&self.bucket).send());
        match head.map_err(Failure::of) {
            Ok(_) => {}
            Err(f) if f.class == Class::NotFound || f.is("NoSuchBucket") => {
                let mut req = self.client.create_bucket().bucket(&self.bucket);
                if self.region != aws::DEFAULT_REGION {
                    req = req.create_bucket_configuration(
                        CreateBucketConfiguration::builder()
                            .location_constraint(BucketLocationConstraint::from(self.region.as_str()))
                            .build(),
                    );
                }
                match self.rt.block_on(req.send()).map_err(Failure::of) {
                    Ok(_) => tracing::info!("created {}", self.describe),
                    Err(f) if f.is("BucketAlreadyOwnedByYou") => {}
                    Err(f) => return Err(self.fail(f, "creating bucket", &self.bucket)),
                }
            }
            Err(f) => return Err(self.fail(f, "checking bucket", &self.bucket)),
        }
        self.bucket_ready.store(true, Ordering::Release);
        Ok(())
    }

    fn class_for(&self, opts: &PutOptions) -> Result<Option<StorageClass>, StorageError> {
        match &opts.storage_class {
            Some(c) => storage_class(c, &self.describe).map(Some),
            None => Ok(self.storage_class.clone()),
        }
    }

    fn head_raw(
        &self,
        key: &str,
    ) -> Result<Option<aws_sdk_s3::operation::head_object::HeadObjectOutput>, StorageError> {
        match self.rt.block_on(self.client.head_object().bucket(&self.bucket).key(key).send()).map_err(Failure::of) {
            Ok(out) => Ok(Some(out)),
            Err(f) if f.class == Class::NotFound => Ok(None),
            Err(f) => Err(self.fail(f, "reading the metadata of", key)),
        }
    }
}

/// A streaming upload: a buffer of one part, parts in flight, and the multipart upload once one is needed.
struct S3Upload {
    inner: Arc<Inner>,
    key: String,
    class: Option<StorageClass>,
    metadata: Vec<(String, String)>,
    base_part: usize,
    buf: Vec<u8>,
    upload_id: Option<String>,
    parts_started: u64,
    in_flight: VecDeque<JoinHandle<Result<CompletedPart, Failure>>>,
    done: Vec<CompletedPart>,
    total: u64,
    failed: bool,
    finished: bool,
}

impl S3Upload {
    fn target(&self) -> usize {
        part_size_for(self.base_part, self.parts_started)
    }

    fn err(&mut self, e: StorageError) -> io::Error {
        self.failed = true;
        io::Error::other(e)
    }

    /// Starts the multipart upload if needed and sends the buffer as the next part.
    fn send_part(&mut self) -> Result<(), StorageError> {
        let inner = self.inner.clone();
        if self.upload_id.is_none() {
            let mut req = inner
                .client
                .create_multipart_upload()
                .bucket(&inner.bucket)
                .key(&self.key)
                .checksum_algorithm(ChecksumAlgorithm::Crc32)
                .set_storage_class(self.class.clone());
            for (k, v) in &self.metadata {
                req = req.metadata(k, v);
            }
            let out = inner
                .rt
                .block_on(req.send())
                .map_err(|e| inner.fail(Failure::of(e), "starting the upload of", &self.key))?;
            let id = out.upload_id().ok_or_else(|| StorageError::Backend {
                store: inner.describe.clone(),
                message: format!("the service gave no upload id for {}", self.key),
                source: None,
            })?;
            self.upload_id = Some(id.to_string());
        }
        while self.in_flight.len() >= inner.max_in_flight {
            self.wait_oldest()?;
        }
        self.parts_started += 1;
        let number = self.parts_started as i32;
        let next = self.target();
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(next));
        let req = inner
            .client
            .upload_part()
            .bucket(&inner.bucket)
            .key(&self.key)
            .upload_id(self.upload_id.clone().unwrap_or_default())
            .part_number(number)
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .body(ByteStream::from(data));
        self.in_flight.push_back(inner.rt.spawn(async move {
            let out = req.send().await.map_err(Failure::of)?;
            Ok(CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag().map(str::to_string))
                .set_checksum_crc32(out.checksum_crc32().map(str::to_string))
                .build())
        }));
        Ok(())
    }

    fn wait_oldest(&mut self) -> Result<(), StorageError> {
        let Some(handle) = self.in_flight.pop_front() else { return Ok(()) };
        let inner = self.inner.clone();
        match inner.rt.block_on(handle) {
            Ok(Ok(part)) => {
                self.done.push(part);
                Ok(())
            }
            Ok(Err(f)) => Err(inner.fail(f, "uploading a part of", &self.key)),
            Err(join) => Err(StorageError::Backend {
                store: inner.describe.clone(),
                message: format!("uploading a part of {} stopped", self.key),
                source: Some(Box::new(join)),
            }),
        }
    }
}

impl Write for S3Upload {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.failed || self.finished {
            return Err(io::Error::other(format!("the upload of {} has already failed or finished", self.key)));
        }
        let room = self.target() - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        self.total += n as u64;
        if self.buf.len() >= self.target() {
            if let Err(e) = self.send_part() {
                return Err(self.err(e));
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Upload for S3Upload {
    fn commit(mut self: Box<Self>) -> Result<ObjectInfo, StorageError> {
        let inner = self.inner.clone();
        if self.failed || self.finished {
            return Err(StorageError::Backend {
                store: inner.describe.clone(),
                message: format!("the upload of {} failed earlier; nothing was stored", self.key),
                source: None,
            });
        }
        if self.upload_id.is_none() {
            let mut req = inner
                .client
                .put_object()
                .bucket(&inner.bucket)
                .key(&self.key)
                .set_storage_class(self.class.clone())
                .body(ByteStream::from(std::mem::take(&mut self.buf)));
            for (k, v) in &self.metadata {
                req = req.metadata(k, v);
            }
            inner.rt.block_on(req.send()).map_err(|e| inner.fail(Failure::of(e), "uploading", &self.key))?;
        } else {
            if !self.buf.is_empty() {
                self.send_part()?;
            }
            while !self.in_flight.is_empty() {
                self.wait_oldest()?;
            }
            let mut parts = std::mem::take(&mut self.done);
            parts.sort_by_key(|p| p.part_number());
            let req = inner
                .client
                .complete_multipart_upload()
                .bucket(&inner.bucket)
                .key(&self.key)
                .upload_id(self.upload_id.clone().unwrap_or_default())
                .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build());
            inner
                .rt
                .block_on(req.send())
                .map_err(|e| inner.fail(Failure::of(e), "completing the upload of", &self.key))?;
        }
        self.finished = true;
        Ok(ObjectInfo {
            key: self.key.clone(),
            size: self.total,
            modified: Some(aws::now()),
            storage_class: self.class.as_ref().map(|c| c.as_str().to_string()),
        })
    }
}

impl Drop for S3Upload {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        for h in self.in_flight.drain(..) {
            h.abort();
        }
        if let Some(id) = self.upload_id.take() {
            let req =
                self.inner.client.abort_multipart_upload().bucket(&self.inner.bucket).key(&self.key).upload_id(id);
            if let Err(e) = self.inner.rt.block_on(req.send()) {
                tracing::warn!(
                    "could not abort the upload of {} in {}: {}; `bakthat backup` removes it later",
                    self.key,
                    self.inner.describe,
                    aws_sdk_s3::error::DisplayErrorContext(&e)
                );
            }
        }
    }
}

impl Backend for S3Store {
    fn kind(&self) -> &'static str {
        "s3"
    }

    fn describe(&self) -> String {
        self.inner.describe.clone()
    }

    fn create(&self, key: &str, opts: &PutOptions) -> Result<Box<dyn Upload>, StorageError> {
        check_object_key(key)?;
        let class = self.inner.class_for(opts)?;
        self.inner.ensure_bucket()?;
        let base_part = base_part_size(self.inner.part_size, opts.size_hint);
        Ok(Box::new(S3Upload {
            inner: self.inner.clone(),
            key: key.to_string(),
            class,
            metadata: opts.metadata.clone(),
            base_part,
            buf: Vec::with_capacity(base_part.min(opts.size_hint.unwrap_or(u64::MAX).max(1 << 16) as usize)),
            upload_id: None,
            parts_started: 0,
            in_flight: VecDeque::new(),
            done: Vec::new(),
            total: 0,
            failed: false,
            finished: false,
        }))
    }

    fn get(&self, key: &str) -> Result<Box<dyn Read + Send>, StorageError> {
        check_object_key(key)?;
        let inner = &self.inner;
        let out = match inner.rt.block_on(inner.client.get_object().bucket(&inner.bucket).key(key).send()) {
            Ok(out) => out,
            Err(e) => {
                let f = Failure::of(e);
                if f.is("InvalidObjectState") {
                    let state = self.retrieval_state(key).unwrap_or(Retrieval::NotStarted);
                    return Err(StorageError::NotRetrieved { key: key.to_string(), state });
                }
                return Err(inner.fail(f, "downloading", key));
            }
        };
        let expected = out.content_length().and_then(|n| u64::try_from(n).ok());
        let etag = out.e_tag().map(str::to_string);
        let (client, bucket, k) = (inner.client.clone(), inner.bucket.clone(), key.to_string());
        let reopen: aws::Reopen = Box::new(move |offset| {
            let req = client
                .get_object()
                .bucket(&bucket)
                .key(&k)
                .range(format!("bytes={offset}-"))
                .set_if_match(etag.clone());
            Box::pin(async move {
                let out = req.send().await.map_err(Failure::of)?;
                // A server that ignores Range sends the whole object again.
                let skip = if out.content_range().is_some() { 0 } else { offset };
                Ok((out.body, skip))
            })
        });
        Ok(Box::new(StreamReader::spawn(
            &inner.rt,
            Box::new(inner.clone()),
            out.body,
            expected,
            reopen,
            inner.attempts.max(3) * 2,
            format!("{} {key}", inner.describe),
        )))
    }

    fn get_range(&self, key: &str, start: u64, len: u64) -> Result<Vec<u8>, StorageError> {
        check_object_key(key)?;
        let inner = &self.inner;
        if len == 0 {
            return match inner.head_raw(key)? {
                Some(_) => Ok(Vec::new()),
                None => Err(StorageError::NotFound { store: inner.describe.clone(), key: key.to_string() }),
            };
        }
        let end = start.saturating_add(len) - 1;
        let res = inner.retry.run(|_| {
            let req = inner.client.get_object().bucket(&inner.bucket).key(key).range(format!("bytes={start}-{end}"));
            inner.rt.block_on(async {
                let out = req.send().await.map_err(Failure::of)?;
                let ranged = out.content_range().is_some();
                let data = out.body.collect().await.map_err(|e| Failure::io(io::Error::other(e)))?;
                Ok::<_, Failure>((ranged, data.to_vec()))
            })
        });
        match res {
            Ok((true, data)) => Ok(data),
            Ok((false, data)) => {
                // The server ignored Range and sent the whole object.
                let s = (start.min(data.len() as u64)) as usize;
                let e = (start.saturating_add(len).min(data.len() as u64)) as usize;
                Ok(data[s..e].to_vec())
            }
            Err(f) if f.is("InvalidRange") => Ok(Vec::new()),
            Err(f) if f.is("InvalidObjectState") => {
                let state = self.retrieval_state(key).unwrap_or(Retrieval::NotStarted);
                Err(StorageError::NotRetrieved { key: key.to_string(), state })
            }
            Err(f) => Err(inner.fail(f, "downloading a range of", key)),
        }
    }

    fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StorageError> {
        check_object_key(key)?;
        Ok(self.inner.head_raw(key)?.map(|out| ObjectInfo {
            key: key.to_string(),
            size: out.content_length().and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
            modified: out.last_modified().map(|t| t.secs()),
            storage_class: Some(out.storage_class().map_or("STANDARD", |c| c.as_str()).to_string()),
        }))
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        self.list_after(prefix, "")
    }

    fn list_after(&self, prefix: &str, start_after: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        let inner = &self.inner;
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let req = inner
                .client
                .list_objects_v2()
                .bucket(&inner.bucket)
                .prefix(prefix)
                .set_start_after((!start_after.is_empty()).then(|| start_after.to_string()))
                .set_continuation_token(token.take());
            let page = inner.rt.block_on(req.send()).map_err(|e| inner.fail(Failure::of(e), "listing", prefix))?;
            for o in page.contents() {
                let Some(key) = o.key() else { continue };
                out.push(ObjectInfo {
                    key: key.to_string(),
                    size: o.size().and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                    modified: o.last_modified().map(|t| t.secs()),
                    storage_class: o.storage_class().map(|c| c.as_str().to_string()),
                });
            }
            match (page.is_truncated(), page.next_continuation_token()) {
                (Some(true), Some(t)) => token = Some(t.to_string()),
                _ => break,
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        check_object_key(key)?;
        let inner = &self.inner;
        match inner.rt.block_on(inner.client.delete_object().bucket(&inner.bucket).key(key).send()).map_err(Failure::of)
        {
            Ok(_) => Ok(()),
            Err(f) if f.class == Class::NotFound => Ok(()),
            Err(f) => Err(inner.fail(f, "deleting", key)),
        }
    }

    fn retrieval_state(&self, key: &str) -> Result<Retrieval, StorageError> {
        check_object_key(key)?;
        let inner = &self.inner;
        let out = inner
            .head_raw(key)?
            .ok_or_else(|| StorageError::NotFound { store: inner.describe.clone(), key: key.to_string() })?;
        Ok(restore_state(out.storage_class().map(|c| c.as_str()), out.restore()))
    }

    fn start_retrieval(&self, key: &str) -> Result<Retrieval, StorageError> {
        let state = self.retrieval_state(key)?;
        if state != Retrieval::NotStarted {
            return Ok(state);
        }
        let inner = &self.inner;
        let params =
            GlacierJobParameters::builder().tier(Tier::Standard).build().map_err(|e| StorageError::Backend {
                store: inner.describe.clone(),
                message: "cannot build a restore request".into(),
                source: Some(Box::new(e)),
            })?;
        let req = inner
            .client
            .restore_object()
            .bucket(&inner.bucket)
            .key(key)
            .restore_request(RestoreRequest::builder().days(RESTORE_DAYS).glacier_job_parameters(params).build());
        match inner.rt.block_on(req.send()).map_err(Failure::of) {
            Ok(_) => {}
            Err(f) if f.is("RestoreAlreadyInProgress") => {
                return Ok(Retrieval::Pending { job_id: None, ready_at: None })
            }
            Err(f) => return Err(inner.fail(f, "asking to restore", key)),
        }
        self.retrieval_state(key)
    }

    fn cleanup(&self) -> Result<u64, StorageError> {
        let inner = &self.inner;
        let cutoff = aws::now() - inner.stale_upload_age.as_secs() as i64;
        let mut stale = Vec::new();
        let (mut key_marker, mut id_marker): (Option<String>, Option<String>) = (None, None);
        loop {
            let req = inner
                .client
                .list_multipart_uploads()
                .bucket(&inner.bucket)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take());
            let page = match inner.rt.block_on(req.send()).map_err(Failure::of) {
                Ok(p) => p,
                Err(f) if f.is("NoSuchBucket") => return Ok(0),
                Err(f) => return Err(inner.fail(f, "listing unfinished uploads in", &inner.bucket)),
            };
            for u in page.uploads() {
                let old = u.initiated().is_some_and(|t| t.secs() <= cutoff);
                if let (true, Some(key), Some(id)) = (old, u.key(), u.upload_id()) {
                    stale.push((key.to_string(), id.to_string()));
                }
            }
            if page.is_truncated() != Some(true) {
                break;
            }
            key_marker = page.next_key_marker().map(str::to_string);
            id_marker = page.next_upload_id_marker().map(str::to_string);
            if key_marker.is_none() && id_marker.is_none() {
                break;
            }
        }
        let mut removed = 0;
        for (key, id) in stale {
            let req = inner.client.abort_multipart_upload().bucket(&inner.bucket).key(&key).upload_id(id);
            match inner.rt.block_on(req.send()).map_err(Failure::of) {
                Ok(_) => removed += 1,
                Err(f) if f.class == Class::NotFound => {}
                Err(f) => return Err(inner.fail(f, "aborting an unfinished upload of", &key)),
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_sizes_grow_to_stay_under_the_part_limit() {
        let base = 8 << 20;
        assert_eq!(part_size_for(base, 0), base);
        assert_eq!(part_size_for(base, 1999), base);
        assert_eq!(part_size_for(base, 2000), 2 * base);
        assert_eq!(part_size_for(base, 9999), 16 * base);
        let capacity: u64 = (0..MAX_PARTS).map(|i| part_size_for(base, i) as u64).sum();
        assert_eq!(capacity, 62_000 * base as u64);
        assert_eq!(base_part_size(1, None), MIN_PART_SIZE);
        assert_eq!(base_part_size(base, Some(1 << 30)), base);
        let big = 200u64 << 30;
        let p = base_part_size(base, Some(big)) as u64;
        assert!(p % (1 << 20) == 0 && big.div_ceil(p) <= 9_000, "{p}");
    }

    #[test]
    fn restore_header_gives_the_retrieval_state() {
        assert_eq!(restore_state(None, None), Retrieval::Ready);
        assert_eq!(restore_state(Some("STANDARD_IA"), None), Retrieval::Ready);
        assert_eq!(restore_state(Some("GLACIER_IR"), None), Retrieval::Ready);
        assert_eq!(restore_state(Some("GLACIER"), None), Retrieval::NotStarted);
        assert_eq!(
            restore_state(Some("DEEP_ARCHIVE"), Some("ongoing-request=\"true\"")),
            Retrieval::Pending { job_id: None, ready_at: None }
        );
        let done = "ongoing-request=\"false\", expiry-date=\"Fri, 21 Dec 2012 00:00:00 GMT\"";
        assert_eq!(restore_state(Some("GLACIER"), Some(done)), Retrieval::Ready);
    }

    #[test]
    fn storage_classes_are_checked() {
        assert_eq!(storage_class("standard_ia", "s").unwrap(), StorageClass::StandardIa);
        assert_eq!(storage_class("REDUCED_REDUNDANCY", "s").unwrap(), StorageClass::ReducedRedundancy);
        let e = storage_class("COLD", "s3 bucket b").unwrap_err().to_string();
        assert!(e.contains("unknown S3 storage class") && e.contains("DEEP_ARCHIVE"), "{e}");
    }
}
