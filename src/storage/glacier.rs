//! The Glacier vault store (the 2012 vault API bakthat 0.6 used): archives addressed by archive id, reads through
//! retrieval jobs that take hours.
//!
//! Glacier has no keys and no cheap listing, so a [`GlacierCatalog`] (the inventory, in bakthat) maps each key to
//! its archive id and remembers the retrieval job of each key. The archive description is the key, as in 0.6, so
//! the mapping can be rebuilt from a vault inventory.
//!
//! Uploads are buffered in a temporary file, never in memory; below [`GlacierSettings::single_upload_limit`] one
//! `UploadArchive` request sends them, above it a multipart upload with the SHA-256 tree hash of every part and of
//! the whole archive ([`TreeHasher`]). Reading an archive needs a completed `archive-retrieval` job:
//! [`Backend::retrieval_state`] and [`Backend::start_retrieval`] manage it, and [`Backend::get`] of an archive that
//! is not retrieved yet gives [`StorageError::NotRetrieved`]. Range reads ask for 1 MiB- or tree-hash-aligned ranges
//! of the job output ([`retrieval_range`]).
//!
//! Vault inventories (`inventory-retrieval` jobs, [`GlacierStore::vault_inventory`]) list what the vault really holds;
//! [`Backend::list`] still comes from the catalog.
//!
//! Not here: SNS notifications, provisioned capacity.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_glacier::primitives::ByteStream;
use aws_sdk_glacier::types::{JobParameters, StatusCode};
use aws_sdk_glacier::Client;
use sha2::{Digest, Sha256};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

use super::aws::{self, AwsAccess, AwsTuning, Class, Failure, StreamReader};
use super::retry::Retry;
use super::{check_key, Backend, ObjectInfo, PutOptions, Retrieval, StorageError, Upload};

/// One mebibyte: the leaf size of tree hashes and the alignment of ranged retrievals.
pub const MIB: u64 = 1 << 20;
/// The account id meaning "the credentials' account".
const ACCOUNT: &str = "-";

/// Errors of a catalog, passed through as the source of a [`StorageError`].
pub type CatalogError = Box<dyn std::error::Error + Send + Sync>;

/// An archive the catalog knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveEntry {
    pub archive_id: String,
    /// The archive's size when it is known (archives uploaded by bakthat 0.6 have none recorded).
    pub size: Option<u64>,
    /// When the archive was uploaded, seconds since the epoch.
    pub created: Option<i64>,
}

/// Whether a retrieval job's output can be downloaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Pending,
    Ready,
}

/// The archive-retrieval job of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrievalJob {
    pub job_id: String,
    pub state: JobState,
    /// When the job was started, seconds since the epoch.
    pub created_at: i64,
}

/// Where a Glacier store keeps what the vault cannot tell quickly: archive ids and retrieval jobs, by key.
pub trait GlacierCatalog: Send + Sync {
    /// The archive stored under `key`.
    fn archive(&self, key: &str) -> Result<Option<ArchiveEntry>, CatalogError>;
    /// Records the archive of `key`, replacing any previous one.
    fn put_archive(&self, key: &str, entry: &ArchiveEntry) -> Result<(), CatalogError>;
    /// Forgets the archive of `key`.
    fn remove_archive(&self, key: &str) -> Result<(), CatalogError>;
    /// Every (key, archive) whose key starts with `prefix`.
    fn archives(&self, prefix: &str) -> Result<Vec<(String, ArchiveEntry)>, CatalogError>;
    /// The retrieval job of `key`.
    fn job(&self, key: &str) -> Result<Option<RetrievalJob>, CatalogError>;
    /// Records the retrieval job of `key`, replacing any previous one.
    fn put_job(&self, key: &str, job: &RetrievalJob) -> Result<(), CatalogError>;
    /// Marks the job of `key` as ready (its output can be downloaded), at `now`.
    fn set_job_ready(&self, key: &str, now: i64) -> Result<(), CatalogError>;
    /// Forgets the job of `key` (expired, failed, or its archive is gone).
    fn delete_job(&self, key: &str) -> Result<(), CatalogError>;
}

/// How to reach a vault.
#[derive(Clone, Debug)]
pub struct GlacierSettings {
    /// The vault (the profile's `glacier_vault`).
    pub vault: String,
    /// The region, endpoint and credentials.
    pub access: AwsAccess,
    /// Archives up to this size are sent in one request; larger ones in a multipart upload.
    pub single_upload_limit: u64,
    /// Part size of multipart uploads: 1 MiB times a power of two (Glacier's rule).
    pub part_size: u64,
    /// Parts uploaded at once.
    pub max_in_flight: usize,
    /// Retrieval tier: `Expedited`, `Standard` or `Bulk`.
    pub tier: String,
    /// [`Backend::cleanup`] aborts multipart uploads started longer ago than this.
    pub stale_upload_age: Duration,
    pub tuning: AwsTuning,
}

impl Default for GlacierSettings {
    fn default() -> Self {
        GlacierSettings {
            vault: String::new(),
            access: AwsAccess::default(),
            single_upload_limit: 8 * MIB,
            part_size: 8 * MIB,
            max_in_flight: 4,
            tier: "Standard".into(),
            stale_upload_age: Duration::from_secs(24 * 3600),
            tuning: AwsTuning::default(),
        }
    }
}

mod treehash;

pub use treehash::{combine, hex, mib_aligned, retrieval_range, tree_aligned, tree_hash, TreeHasher};

/// When a retrieval of this tier is expected to finish (AWS's upper estimates).
fn estimate(tier: &str, created_at: i64) -> i64 {
    created_at
        + match tier {
            "Expedited" => 5 * 60,
            "Bulk" => 12 * 3600,
            _ => 5 * 3600,
        }
}

// ---- the store ----

struct Inner {
    client: Client,
    rt: Runtime,
    vault: String,
    describe: String,
    catalog: Arc<dyn GlacierCatalog>,
    single_upload_limit: u64,
    part_size: u64,
    max_in_flight: usize,
    tier: String,
    stale_upload_age: Duration,
    attempts: u32,
    /// Retries of ranged reads whose body broke (the SDK retries the requests).
    retry: Retry,
    vault_ready: AtomicBool,
}

/// A vault. Cheap to clone; owns a small tokio runtime and blocks on it, so its methods must not be called from
/// inside an async runtime.
#[derive(Clone)]
pub struct GlacierStore {
    inner: Arc<Inner>,
}

/// An archive as a vault inventory lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VaultArchive {
    #[serde(rename = "ArchiveId")]
    pub archive_id: String,
    /// The archive description: the stored filename for archives bakthat uploaded.
    #[serde(rename = "ArchiveDescription", default)]
    pub description: String,
    #[serde(rename = "Size", default)]
    pub size: u64,
    #[serde(rename = "CreationDate", default)]
    pub created: Option<String>,
    #[serde(rename = "SHA256TreeHash", default)]
    pub tree_hash: Option<String>,
}

/// The output of an `inventory-retrieval` job (Glacier's JSON format).
#[derive(Debug, Clone, serde::Deserialize)]
struct InventoryOutput {
    #[serde(rename = "ArchiveList", default)]
    archive_list: Vec<VaultArchive>,
}

/// Where a vault inventory stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VaultInventory {
    /// A new inventory-retrieval job was started (there was none, or the given one expired or failed).
    Started { job_id: String },
    /// The job runs; `ready_at` is an estimate (Glacier takes about four hours).
    Pending { job_id: String, ready_at: i64, created_at: Option<i64> },
    /// The job is done: the archives the vault held when the job ran.
    Ready { job_id: String, archives: Vec<VaultArchive> },
}

/// How long an inventory-retrieval job usually takes.
const INVENTORY_JOB_SECS: i64 = 4 * 3600;

impl GlacierStore {
    /// The vault's name.
    pub fn vault(&self) -> &str {
        &self.inner.vault
    }

    /// Checks the inventory-retrieval job `job_id` (when given) and downloads its output once it is done; starts a
    /// new job when there is none, or when Glacier no longer knows the given one (its output lasts 24 hours) or it
    /// failed.
    pub fn vault_inventory(&self, job_id: Option<&str>) -> Result<VaultInventory, StorageError> {
        let inner = &self.inner;
        let what = format!("the inventory of {}", inner.vault);
        if let Some(id) = job_id {
            let req = inner.client.describe_job().account_id(ACCOUNT).vault_name(&inner.vault).job_id(id);
            match inner.rt.block_on(req.send()).map_err(Failure::of) {
                Ok(out) => match out.status_code() {
                    Some(StatusCode::Succeeded) => {
                        let req = inner.client.get_job_output().account_id(ACCOUNT).vault_name(&inner.vault).job_id(id);
                        let body = inner.rt.block_on(async {
                            let out = req.send().await.map_err(Failure::of)?;
                            out.body.collect().await.map(|b| b.to_vec()).map_err(|e| Failure::io(io::Error::other(e)))
                        });
                        let body = body.map_err(|f| inner.fail(f, "downloading", &what))?;
                        let parsed: InventoryOutput =
                            serde_json::from_slice(&body).map_err(|e| StorageError::Backend {
                                store: inner.describe.clone(),
                                message: format!("{what} is not the JSON Glacier writes"),
                                source: Some(Box::new(e)),
                            })?;
                        return Ok(VaultInventory::Ready { job_id: id.to_string(), archives: parsed.archive_list });
                    }
                    Some(StatusCode::Failed) => {
                        tracing::info!(
                            "inventory job {id} failed ({}); starting another",
                            out.status_message().unwrap_or("")
                        );
                    }
                    _ => {
                        let created_at = out
                            .creation_date()
                            .and_then(|d| chrono::DateTime::parse_from_rfc3339(d).ok())
                            .map(|d| d.timestamp());
                        let ready_at = created_at.unwrap_or_else(aws::now) + INVENTORY_JOB_SECS;
                        return Ok(VaultInventory::Pending { job_id: id.to_string(), ready_at, created_at });
                    }
                },
                Err(f) if f.is("ResourceNotFoundException") || f.class == Class::NotFound => {
                    tracing::info!("inventory job {id} is unknown to Glacier (expired); starting another");
                }
                Err(f) => return Err(inner.fail(f, "checking the job of", &what)),
            }
        }
        let params = JobParameters::builder().r#type("inventory-retrieval").format("JSON").build();
        let req = inner.client.initiate_job().account_id(ACCOUNT).vault_name(&inner.vault).job_parameters(params);
        let out = inner.rt.block_on(req.send()).map_err(|e| inner.fail(Failure::of(e), "starting", &what))?;
        let job_id = out.job_id().unwrap_or_default().to_string();
        Ok(VaultInventory::Started { job_id })
    }

    /// Prepares a client for the vault; nothing is sent until the first operation. A missing vault is created by
    /// the first upload.
    pub fn new(settings: &GlacierSettings, catalog: Arc<dyn GlacierCatalog>) -> Result<GlacierStore, StorageError> {
        let describe = settings.access.describe(format!("glacier vault {}", settings.vault));
        let bad = |message: String| StorageError::Backend { store: describe.clone(), message, source: None };
        if settings.vault.is_empty() {
            return Err(bad("no vault configured; set glacier_vault in the profile".into()));
        }
        let parts = settings.part_size / MIB;
        if settings.part_size % MIB != 0 || !parts.is_power_of_two() || parts > 4096 {
            return Err(bad(format!("part size {} is not 1 MiB times a power of two", settings.part_size)));
        }
        if !["Expedited", "Standard", "Bulk"].contains(&settings.tier.as_str()) {
            return Err(bad(format!("unknown retrieval tier {:?}; use Expedited, Standard or Bulk", settings.tier)));
        }
        let rt = aws::runtime("bakthat-glacier", &settings.tuning, &describe)?;
        let sdk = aws::sdk_config(&rt, &settings.access, &settings.tuning);
        let client = Client::new(&sdk);
        Ok(GlacierStore {
            inner: Arc::new(Inner {
                client,
                rt,
                vault: settings.vault.clone(),
                describe,
                catalog,
                single_upload_limit: settings.single_upload_limit,
                part_size: settings.part_size,
                max_in_flight: settings.max_in_flight.max(1),
                tier: settings.tier.clone(),
                stale_upload_age: settings.stale_upload_age,
                attempts: settings.tuning.max_attempts.max(1),
                retry: aws::body_retry(settings.tuning.max_attempts),
                vault_ready: AtomicBool::new(false),
            }),
        })
    }
}

impl Inner {
    fn fail(&self, f: Failure, op: &str, key: &str) -> StorageError {
        f.into_storage(&self.describe, op, key, self.attempts)
    }

    fn catalog_err(&self, e: CatalogError) -> StorageError {
        StorageError::Backend {
            store: self.describe.clone(),
            message: "the inventory of archive ids failed".into(),
            source: Some(e),
        }
    }

    fn entry(&self, key: &str) -> Result<Option<ArchiveEntry>, StorageError> {
        self.catalog.archive(key).map_err(|e| self.catalog_err(e))
    }

    fn entry_or_missing(&self, key: &str) -> Result<ArchiveEntry, StorageError> {
        self.entry(key)?.ok_or_else(|| StorageError::NotFound { store: self.describe.clone(), key: key.to_string() })
    }

    fn ensure_vault(&self) -> Result<(), StorageError> {
        if self.vault_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        // CreateVault is idempotent on AWS, but moto replaces an existing vault with an empty one: ask first.
        let req = self.client.describe_vault().account_id(ACCOUNT).vault_name(&self.vault);
        match self.rt.block_on(req.send()).map_err(Failure::of) {
            Ok(_) => {
                self.vault_ready.store(true, Ordering::Release);
                return Ok(());
            }
            Err(f) if f.is("ResourceNotFoundException") || f.is("VaultNotFound") || f.class == Class::NotFound => {}
            Err(f) => return Err(self.fail(f, "checking vault", &self.vault)),
        }
        let req = self.client.create_vault().account_id(ACCOUNT).vault_name(&self.vault);
        self.rt.block_on(req.send()).map_err(|e| self.fail(Failure::of(e), "creating vault", &self.vault))?;
        self.vault_ready.store(true, Ordering::Release);
        Ok(())
    }

    /// The retrieval state of `key` after asking Glacier about its job; also the archive size the job reports.
    fn state(&self, key: &str, entry: &ArchiveEntry) -> Result<(Retrieval, Option<u64>), StorageError> {
        let Some(job) = self.catalog.job(key).map_err(|e| self.catalog_err(e))? else {
            return Ok((Retrieval::NotStarted, None));
        };
        let req = self.client.describe_job().account_id(ACCOUNT).vault_name(&self.vault).job_id(&job.job_id);
        let forget = |why: &str| -> Result<(Retrieval, Option<u64>), StorageError> {
            tracing::info!("retrieval job of {key} {why}; a new one will be started");
            self.catalog.delete_job(key).map_err(|e| self.catalog_err(e))?;
            Ok((Retrieval::NotStarted, None))
        };
        let out = match self.rt.block_on(req.send()).map_err(Failure::of) {
            Ok(out) => out,
            Err(f) if f.is("ResourceNotFoundException") || f.class == Class::NotFound => {
                return forget("is unknown to Glacier (expired)")
            }
            Err(f) => return Err(self.fail(f, "checking the retrieval job of", key)),
        };
        if out.archive_id().is_some_and(|id| id != entry.archive_id) {
            return forget("is for another archive");
        }
        let size = out.archive_size_in_bytes().and_then(|n| u64::try_from(n).ok());
        match out.status_code() {
            Some(StatusCode::Succeeded) => {
                if job.state != JobState::Ready {
                    self.catalog.set_job_ready(key, aws::now()).map_err(|e| self.catalog_err(e))?;
                }
                Ok((Retrieval::Ready, size))
            }
            Some(StatusCode::Failed) => forget(&format!("failed ({})", out.status_message().unwrap_or("no reason"))),
            _ => Ok((
                Retrieval::Pending {
                    job_id: Some(job.job_id.clone()),
                    ready_at: Some(estimate(out.tier().unwrap_or(&self.tier), job.created_at)),
                },
                size,
            )),
        }
    }

    /// The completed job of `key` and the archive size, or NotRetrieved.
    fn ready_job(&self, key: &str) -> Result<(ArchiveEntry, String, Option<u64>), StorageError> {
        let entry = self.entry_or_missing(key)?;
        let (state, job_size) = self.state(key, &entry)?;
        if state != Retrieval::Ready {
            return Err(StorageError::NotRetrieved { key: key.to_string(), state });
        }
        let job = self
            .catalog
            .job(key)
            .map_err(|e| self.catalog_err(e))?
            .ok_or_else(|| StorageError::NotRetrieved { key: key.to_string(), state: Retrieval::NotStarted })?;
        let size = entry.size.or(job_size);
        Ok((entry, job.job_id, size))
    }

    fn upload_single(&self, key: &str, data: Vec<u8>, hash: &[u8; 32]) -> Result<String, StorageError> {
        let plain = hex(&Sha256::digest(&data));
        let req = self
            .client
            .upload_archive()
            .account_id(ACCOUNT)
            .vault_name(&self.vault)
            .archive_description(key)
            .checksum(hex(hash))
            .body(ByteStream::from(data));
        let out = self.rt.block_on(req.send()).map_err(|e| self.fail(Failure::of(e), "uploading", key))?;
        if let Some(sum) = out.checksum() {
            // moto answers with the plain SHA-256 of the body; it proves the same thing for a single request.
            if !sum.eq_ignore_ascii_case(&hex(hash)) && !sum.eq_ignore_ascii_case(&plain) {
                return Err(StorageError::Backend {
                    store: self.describe.clone(),
                    message: format!("Glacier stored {key} with tree hash {sum}, expected {}", hex(hash)),
                    source: None,
                });
            }
        }
        out.archive_id().map(str::to_string).ok_or_else(|| StorageError::Backend {
            store: self.describe.clone(),
            message: format!("Glacier gave no archive id for {key}"),
            source: None,
        })
    }

    fn upload_multipart(&self, key: &str, file: &File, size: u64, leaves: &[[u8; 32]]) -> Result<String, StorageError> {
        let req = self
            .client
            .initiate_multipart_upload()
            .account_id(ACCOUNT)
            .vault_name(&self.vault)
            .archive_description(key)
            .part_size(self.part_size.to_string());
        let out = self.rt.block_on(req.send()).map_err(|e| self.fail(Failure::of(e), "starting the upload of", key))?;
        let upload_id = out.upload_id().unwrap_or_default().to_string();
        let res = self.send_parts(key, &upload_id, file, size, leaves);
        if res.is_err() {
            let req =
                self.client.abort_multipart_upload().account_id(ACCOUNT).vault_name(&self.vault).upload_id(&upload_id);
            let _ = self.rt.block_on(req.send());
        }
        res
    }

    fn send_parts(
        &self,
        key: &str,
        upload_id: &str,
        file: &File,
        size: u64,
        leaves: &[[u8; 32]],
    ) -> Result<String, StorageError> {
        let leaves_per_part = (self.part_size / MIB) as usize;
        let mut in_flight: VecDeque<JoinHandle<Result<(), Failure>>> = VecDeque::new();
        let wait = |h: JoinHandle<Result<(), Failure>>| -> Result<(), StorageError> {
            match self.rt.block_on(h) {
                Ok(Ok(())) => Ok(()),
                Ok(Err(f)) => Err(self.fail(f, "uploading a part of", key)),
                Err(join) => Err(StorageError::Backend {
                    store: self.describe.clone(),
                    message: format!("uploading a part of {key} stopped"),
                    source: Some(Box::new(join)),
                }),
            }
        };
        let mut offset = 0u64;
        let mut part = 0usize;
        while offset < size {
            let len = self.part_size.min(size - offset);
            let mut data = vec![0u8; len as usize];
            file.read_exact_at(&mut data, offset).map_err(|e| StorageError::io(self.describe.clone(), key, e))?;
            let first = part * leaves_per_part;
            let hash = combine(&leaves[first..(first + leaves_per_part).min(leaves.len())]);
            let req = self
                .client
                .upload_multipart_part()
                .account_id(ACCOUNT)
                .vault_name(&self.vault)
                .upload_id(upload_id)
                .range(format!("bytes {}-{}/*", offset, offset + len - 1))
                .checksum(hex(&hash))
                .body(ByteStream::from(data));
            while in_flight.len() >= self.max_in_flight {
                if let Some(h) = in_flight.pop_front() {
                    wait(h)?;
                }
            }
            in_flight.push_back(self.rt.spawn(async move { req.send().await.map(|_| ()).map_err(Failure::of) }));
            offset += len;
            part += 1;
        }
        while let Some(h) = in_flight.pop_front() {
            wait(h)?;
        }
        let req = self
            .client
            .complete_multipart_upload()
            .account_id(ACCOUNT)
            .vault_name(&self.vault)
            .upload_id(upload_id)
            .archive_size(size.to_string())
            .checksum(hex(&combine(leaves)));
        let out =
            self.rt.block_on(req.send()).map_err(|e| self.fail(Failure::of(e), "completing the upload of", key))?;
        out.archive_id().map(str::to_string).ok_or_else(|| StorageError::Backend {
            store: self.describe.clone(),
            message: format!("Glacier gave no archive id for {key}"),
            source: None,
        })
    }
}

/// An archive being written to a temporary file.
struct GlacierUpload {
    inner: Arc<Inner>,
    key: String,
    file: Option<File>,
    size: u64,
    hasher: TreeHasher,
}

impl Write for GlacierUpload {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let f = self.file.as_mut().ok_or_else(|| io::Error::other("upload already finished"))?;
        let n = f.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Upload for GlacierUpload {
    fn commit(mut self: Box<Self>) -> Result<ObjectInfo, StorageError> {
        let inner = self.inner.clone();
        let key = self.key.clone();
        let io_err = |e| StorageError::io(inner.describe.clone(), &key, e);
        let mut file = self.file.take().ok_or_else(|| io_err(io::Error::other("already committed")))?;
        let leaves = self.hasher.leaves();
        let archive_id = if self.size <= inner.single_upload_limit {
            let mut data = Vec::with_capacity(self.size as usize);
            file.seek(SeekFrom::Start(0)).and_then(|_| file.read_to_end(&mut data)).map_err(io_err)?;
            inner.upload_single(&key, data, &combine(&leaves))?
        } else {
            inner.upload_multipart(&key, &file, self.size, &leaves)?
        };
        let created = aws::now();
        let entry = ArchiveEntry { archive_id: archive_id.clone(), size: Some(self.size), created: Some(created) };
        if let Err(e) = inner.catalog.put_archive(&key, &entry) {
            let req =
                inner.client.delete_archive().account_id(ACCOUNT).vault_name(&inner.vault).archive_id(&archive_id);
            let _ = inner.rt.block_on(req.send());
            return Err(inner.catalog_err(e));
        }
        // A job of an earlier archive under this key is useless now.
        let _ = inner.catalog.delete_job(&key);
        Ok(ObjectInfo { key, size: self.size, modified: Some(created), storage_class: None })
    }
}

/// Reads the job output, checking the tree hash Glacier sent (when it sent one) at the end.
struct Verified {
    inner: StreamReader,
    expected: Option<String>,
    hasher: TreeHasher,
    what: String,
}

impl Read for Verified {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        if n == 0 && !buf.is_empty() {
            if let Some(expected) = self.expected.take() {
                let got = hex(&self.hasher.finish());
                if !got.eq_ignore_ascii_case(&expected) {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{}: tree hash {got} does not match Glacier's {expected}", self.what),
                    ));
                }
            }
        }
        Ok(n)
    }
}

impl Backend for GlacierStore {
    fn kind(&self) -> &'static str {
        "glacier"
    }

    fn describe(&self) -> String {
        self.inner.describe.clone()
    }

    fn create(&self, key: &str, _opts: &PutOptions) -> Result<Box<dyn Upload>, StorageError> {
        check_key(key)?;
        if !key.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(StorageError::BadKey { key: key.into(), reason: "Glacier descriptions are printable ASCII" });
        }
        self.inner.ensure_vault()?;
        let file = tempfile::tempfile().map_err(|e| StorageError::io(self.describe(), key, e))?;
        Ok(Box::new(GlacierUpload {
            inner: self.inner.clone(),
            key: key.to_string(),
            file: Some(file),
            size: 0,
            hasher: TreeHasher::new(),
        }))
    }

    fn get(&self, key: &str) -> Result<Box<dyn Read + Send>, StorageError> {
        check_key(key)?;
        let inner = &self.inner;
        let (_, job_id, size) = inner.ready_job(key)?;
        let req = inner.client.get_job_output().account_id(ACCOUNT).vault_name(&inner.vault).job_id(&job_id);
        let out = inner.rt.block_on(req.send()).map_err(|e| inner.fail(Failure::of(e), "downloading", key))?;
        let expected = out.checksum().map(str::to_string);
        let (client, vault) = (inner.client.clone(), inner.vault.clone());
        let end = size.map(|s| s.saturating_sub(1).to_string()).unwrap_or_default();
        let reopen: aws::Reopen = Box::new(move |offset| {
            let req = client
                .get_job_output()
                .account_id(ACCOUNT)
                .vault_name(&vault)
                .job_id(&job_id)
                .range(format!("bytes={offset}-{end}"));
            Box::pin(async move {
                let out = req.send().await.map_err(Failure::of)?;
                // moto ignores Range and sends the whole output.
                let skip = if out.content_range().is_some() { 0 } else { offset };
                Ok((out.body, skip))
            })
        });
        let what = format!("{} {key}", inner.describe);
        let reader = StreamReader::spawn(
            &inner.rt,
            Box::new(inner.clone()),
            out.body,
            size,
            reopen,
            inner.attempts.max(3) * 2,
            what.clone(),
        );
        Ok(Box::new(Verified { inner: reader, expected, hasher: TreeHasher::new(), what }))
    }

    fn get_range(&self, key: &str, start: u64, len: u64) -> Result<Vec<u8>, StorageError> {
        check_key(key)?;
        let inner = &self.inner;
        let (_, job_id, size) = inner.ready_job(key)?;
        let size = match size {
            Some(s) => s,
            None => {
                // Unknown size (an archive from 0.6 and a job that does not say): read the whole output.
                let mut all = Vec::new();
                self.get(key)?.read_to_end(&mut all).map_err(|e| StorageError::io(self.describe(), key, e))?;
                let s = start.min(all.len() as u64) as usize;
                let e = start.saturating_add(len).min(all.len() as u64) as usize;
                return Ok(all[s..e].to_vec());
            }
        };
        let end = start.saturating_add(len).min(size);
        if end <= start {
            return Ok(Vec::new());
        }
        let (a, b, aligned) = retrieval_range(start, len, size);
        let res = inner.retry.run(|_| {
            let req = inner
                .client
                .get_job_output()
                .account_id(ACCOUNT)
                .vault_name(&inner.vault)
                .job_id(&job_id)
                .range(format!("bytes={}-{}", a, b - 1));
            inner.rt.block_on(async {
                let out = req.send().await.map_err(Failure::of)?;
                let ranged = out.content_range().is_some();
                let checksum = out.checksum().map(str::to_string);
                let data = out.body.collect().await.map_err(|e| Failure::io(io::Error::other(e)))?;
                Ok::<_, Failure>((ranged, checksum, data.to_vec()))
            })
        });
        let (ranged, checksum, data) = res.map_err(|f| inner.fail(f, "downloading a range of", key))?;
        let base = if ranged { a } else { 0 };
        let want = if ranged { b - a } else { size };
        if data.len() as u64 != want {
            return Err(StorageError::Backend {
                store: inner.describe.clone(),
                message: format!("Glacier sent {} bytes of {key}, expected {want}", data.len()),
                source: None,
            });
        }
        if let (Some(sum), true) = (checksum, aligned || !ranged) {
            let got = hex(&tree_hash(&data));
            if !got.eq_ignore_ascii_case(&sum) {
                return Err(StorageError::Backend {
                    store: inner.describe.clone(),
                    message: format!("tree hash of a range of {key} is {got}, Glacier says {sum}"),
                    source: None,
                });
            }
        }
        Ok(data[(start - base) as usize..(end - base) as usize].to_vec())
    }

    fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StorageError> {
        check_key(key)?;
        Ok(self.inner.entry(key)?.map(|e| ObjectInfo {
            key: key.to_string(),
            size: e.size.unwrap_or(0),
            modified: e.created,
            storage_class: None,
        }))
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        let inner = &self.inner;
        let mut out: Vec<ObjectInfo> = inner
            .catalog
            .archives(prefix)
            .map_err(|e| inner.catalog_err(e))?
            .into_iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(key, e)| ObjectInfo { key, size: e.size.unwrap_or(0), modified: e.created, storage_class: None })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        check_key(key)?;
        let inner = &self.inner;
        let Some(entry) = inner.entry(key)? else { return Ok(()) };
        let req =
            inner.client.delete_archive().account_id(ACCOUNT).vault_name(&inner.vault).archive_id(&entry.archive_id);
        match inner.rt.block_on(req.send()).map_err(Failure::of) {
            Ok(_) => {}
            Err(f) if f.is("ResourceNotFoundException") || f.class == Class::NotFound => {}
            Err(f) => return Err(inner.fail(f, "deleting", key)),
        }
        inner.catalog.remove_archive(key).map_err(|e| inner.catalog_err(e))?;
        inner.catalog.delete_job(key).map_err(|e| inner.catalog_err(e))?;
        Ok(())
    }

    fn retrieval_state(&self, key: &str) -> Result<Retrieval, StorageError> {
        check_key(key)?;
        let entry = self.inner.entry_or_missing(key)?;
        Ok(self.inner.state(key, &entry)?.0)
    }

    fn start_retrieval(&self, key: &str) -> Result<Retrieval, StorageError> {
        check_key(key)?;
        let inner = &self.inner;
        let entry = inner.entry_or_missing(key)?;
        let (state, _) = inner.state(key, &entry)?;
        if state != Retrieval::NotStarted {
            return Ok(state);
        }
        let params = JobParameters::builder()
            .r#type("archive-retrieval")
            .archive_id(&entry.archive_id)
            .description(key)
            .tier(&inner.tier)
            .build();
        let req = inner.client.initiate_job().account_id(ACCOUNT).vault_name(&inner.vault).job_parameters(params);
        let out =
            inner.rt.block_on(req.send()).map_err(|e| inner.fail(Failure::of(e), "starting the retrieval of", key))?;
        let job_id = out.job_id().unwrap_or_default().to_string();
        let created_at = aws::now();
        let job = RetrievalJob { job_id: job_id.clone(), state: JobState::Pending, created_at };
        inner.catalog.put_job(key, &job).map_err(|e| inner.catalog_err(e))?;
        tracing::info!("started retrieval job {job_id} for {key}");
        Ok(Retrieval::Pending { job_id: Some(job_id), ready_at: Some(estimate(&inner.tier, created_at)) })
    }

    fn cleanup(&self) -> Result<u64, StorageError> {
        let inner = &self.inner;
        let cutoff = aws::now() - inner.stale_upload_age.as_secs() as i64;
        let mut stale = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let req = inner
                .client
                .list_multipart_uploads()
                .account_id(ACCOUNT)
                .vault_name(&inner.vault)
                .set_marker(marker.take());
            let page = match inner.rt.block_on(req.send()).map_err(Failure::of) {
                Ok(p) => p,
                // A vault that does not exist yet has no uploads; services without multipart support say 404.
                Err(f) if f.class == Class::NotFound || f.is("ResourceNotFoundException") || f.status == Some(404) => {
                    return Ok(0)
                }
                Err(f) => return Err(inner.fail(f, "listing unfinished uploads in", &inner.vault)),
            };
            for u in page.uploads_list() {
                let created =
                    u.creation_date().and_then(|d| chrono::DateTime::parse_from_rfc3339(d).ok()).map(|d| d.timestamp());
                if let (Some(t), Some(id)) = (created, u.multipart_upload_id()) {
                    if t <= cutoff {
                        stale.push(id.to_string());
                    }
                }
            }
            match page.marker() {
                Some(m) if !m.is_empty() => marker = Some(m.to_string()),
                _ => break,
            }
        }
        let mut removed = 0;
        for id in stale {
            let req = inner.client.abort_multipart_upload().account_id(ACCOUNT).vault_name(&inner.vault).upload_id(&id);
            match inner.rt.block_on(req.send()).map_err(Failure::of) {
                Ok(_) => removed += 1,
                Err(f) if f.is("ResourceNotFoundException") => {}
                Err(f) => return Err(inner.fail(f, "aborting an unfinished upload in", &inner.vault)),
            }
        }
        Ok(removed)
    }
}
