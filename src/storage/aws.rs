//! Plumbing shared by the AWS stores (S3 and Glacier): the tokio runtime each store owns, where and as whom to connect
//! ([`AwsAccess`]) and the SDK configuration built from it (credentials, region, endpoint, retries, timeouts), the
//! classification of SDK errors into [`StorageError`]s, and a blocking reader fed by a download task that resumes
//! after a broken connection.
//!
//! This module is not a store; it knows nothing about buckets, vaults or keys beyond the text of messages.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::io::{self, Read};
use std::pin::Pin;
use std::time::Duration;

use aws_config::meta::region::RegionProviderChain;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

use super::retry::{Retry, Transient};
use super::StorageError;

/// The region used when neither the profile, the environment nor `~/.aws/config` names one.
pub const DEFAULT_REGION: &str = "us-east-1";

/// Retry and timeout settings of an AWS store. The defaults suit real AWS; tests shorten them.
#[derive(Debug, Clone)]
pub struct AwsTuning {
    /// Attempts per request, the first included (the SDK's standard retry strategy).
    pub max_attempts: u32,
    /// First retry delay; later ones grow exponentially (with jitter) up to `max_backoff`.
    pub initial_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// Time allowed to open a connection.
    pub connect_timeout: Duration,
    /// Time allowed between bytes of a response.
    pub read_timeout: Duration,
    /// Tokio worker threads of the store's runtime.
    pub worker_threads: usize,
}

impl Default for AwsTuning {
    fn default() -> Self {
        AwsTuning {
            max_attempts: 5,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(20),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            worker_threads: 2,
        }
    }
}

/// Where and as whom to reach AWS or a compatible service: the part of the settings the S3 and Glacier stores share
/// (the profile's `region_name`, `endpoint_url`, `access_key` and `secret_key`). Its `Debug` shows `Some("***")` for a
/// secret key that is set.
#[derive(Clone, Default)]
pub struct AwsAccess {
    /// The region; when `None`, the AWS environment's or `us-east-1`.
    pub region: Option<String>,
    /// An S3- or Glacier-compatible endpoint (MinIO, moto...); S3 requests to it use path-style addressing.
    pub endpoint_url: Option<String>,
    /// Static credentials; when either is `None`, the standard AWS chain (environment, `~/.aws`, `AWS_PROFILE`).
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
}

impl AwsAccess {
    /// The endpoint URL when one is set and not empty.
    pub fn endpoint(&self) -> Option<&str> {
        self.endpoint_url.as_deref().filter(|u| !u.is_empty())
    }

    /// `place` (e.g. `s3 bucket NAME`), followed by ` at URL` when an endpoint is set: how errors name the store.
    pub(crate) fn describe(&self, place: String) -> String {
        match self.endpoint() {
            Some(url) => format!("{place} at {url}"),
            None => place,
        }
    }
}

impl fmt::Debug for AwsAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsAccess")
            .field("region", &self.region)
            .field("endpoint_url", &self.endpoint_url)
            .field("access_key", &self.access_key)
            .field("secret_key", &self.secret_key.as_ref().map(|_| "***"))
            .finish()
    }
}

/// A multi-thread runtime for one store.
pub(crate) fn runtime(name: &str, tuning: &AwsTuning, store: &str) -> Result<Runtime, StorageError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(tuning.worker_threads.max(1))
        .thread_name(name)
        .enable_all()
        .build()
        .map_err(|e| StorageError::Backend {
            store: store.to_string(),
            message: "cannot start the network runtime".into(),
            source: Some(Box::new(e)),
        })
}

/// Loads the SDK configuration: the profile's keys if both are set, else the standard AWS chain (environment,
/// `~/.aws/credentials`, `AWS_PROFILE`, instance roles); the profile's region, else the environment's or
/// `~/.aws/config`'s, else [`DEFAULT_REGION`].
pub(crate) fn sdk_config(rt: &Runtime, access: &AwsAccess, tuning: &AwsTuning) -> SdkConfig {
    let region = RegionProviderChain::first_try(
        access.region.as_deref().filter(|r| !r.is_empty()).map(|r| Region::new(r.to_string())),
    )
    .or_else(aws_config::environment::EnvironmentVariableRegionProvider::new())
    .or_else(aws_config::profile::ProfileFileRegionProvider::new())
    .or_else(Region::from_static(DEFAULT_REGION));
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(region)
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(tuning.max_attempts.max(1))
                .with_initial_backoff(tuning.initial_backoff)
                .with_max_backoff(tuning.max_backoff),
        )
        .timeout_config(
            TimeoutConfig::builder().connect_timeout(tuning.connect_timeout).read_timeout(tuning.read_timeout).build(),
        );
    if let (Some(ak), Some(sk)) = (access.access_key.as_deref(), access.secret_key.as_deref()) {
        if !ak.is_empty() && !sk.is_empty() {
            loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
                ak,
                sk,
                None,
                None,
                "bakthat profile",
            ));
        }
    }
    if let Some(url) = access.endpoint() {
        loader = loader.endpoint_url(url);
    }
    rt.block_on(loader.load())
}

/// How a failed request is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// The credentials were refused.
    Auth,
    /// The object (or job, or upload) does not exist.
    NotFound,
    /// Network trouble, timeouts, throttling and 5xx: the SDK retried until it ran out of attempts.
    Transient,
    /// Anything else the service said.
    Other,
}

/// Classifies a failure by HTTP status and service error code.
pub(crate) fn classify(status: Option<u16>, code: Option<&str>, transport: bool) -> Class {
    const AUTH: [&str; 7] = [
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AccessDenied",
        "AccessDeniedException",
        "ExpiredToken",
        "InvalidToken",
        "UnrecognizedClientException",
    ];
    const THROTTLE: [&str; 6] = [
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
        "RequestTimeoutException",
        "ServiceUnavailable",
    ];
    if transport {
        return Class::Transient;
    }
    match code {
        Some(c) if AUTH.contains(&c) => return Class::Auth,
        Some("NoSuchKey" | "NotFound" | "NoSuchUpload") => return Class::NotFound,
        Some(c) if THROTTLE.contains(&c) => return Class::Transient,
        _ => {}
    }
    match status {
        Some(403) if code.is_none() => Class::Auth,
        Some(404) if code.is_none() => Class::NotFound,
        Some(s) if s >= 500 || s == 429 => Class::Transient,
        _ => Class::Other,
    }
}

/// The innermost error of a chain, as its own one-line message.
fn root_cause(err: &(dyn StdError + 'static)) -> String {
    let mut innermost = err;
    while let Some(next) = innermost.source() {
        innermost = next;
    }
    innermost.to_string()
}

/// What went wrong with one SDK call, independent of the operation's types.
pub(crate) struct Failure {
    pub status: Option<u16>,
    pub code: Option<String>,
    pub class: Class,
    pub source: Box<dyn StdError + Send + Sync>,
}

impl Failure {
    /// Takes an SDK error apart.
    pub fn of<E>(err: SdkError<E, HttpResponse>) -> Failure
    where
        E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    {
        let status = err.raw_response().map(|r| r.status().as_u16());
        let transport =
            matches!(err, SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_));
        let code = err.code().map(str::to_string);
        let class = classify(status, code.as_deref(), transport);
        let source = if class == Class::Auth || (class != Class::Transient && code.is_some()) {
            // One line the user can act on, not the SDK's whole context (headers, raw body): the service's answer.
            let what = match (code.as_deref(), status) {
                (Some(c), Some(s)) => format!("{c} (HTTP {s})"),
                (Some(c), None) => c.to_string(),
                (None, Some(s)) => format!("HTTP {s}"),
                (None, None) => "refused".to_string(),
            };
            // The error's own message names the code and status of other failures already.
            match (err.message(), class) {
                (Some(m), Class::Auth) => format!("{what}: {m}").into(),
                (Some(m), _) => m.to_string().into(),
                (None, _) => what.into(),
            }
        } else if transport {
            // The root cause alone ("Connection refused (os error 111)"): the SDK's context repeats each layer and
            // ends in its Debug text (a 569-character line for a closed port).
            root_cause(&err).into()
        } else {
            aws_sdk_s3::error::DisplayErrorContext(&err).to_string().into()
        };
        Failure { status, code, class, source }
    }

    /// A failure from a broken download stream.
    pub fn io(e: io::Error) -> Failure {
        Failure { status: None, code: None, class: Class::Transient, source: Box::new(e) }
    }

    /// Whether the service answered with this error code.
    pub fn is(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }

    /// The error to report for `op` on `key` in `store`, after `attempts` attempts.
    pub fn into_storage(self, store: &str, op: &str, key: &str, attempts: u32) -> StorageError {
        let detail = match (&self.code, self.status) {
            (Some(c), Some(s)) => format!("{c} (HTTP {s})"),
            (Some(c), None) => c.clone(),
            (None, Some(s)) => format!("HTTP {s}"),
            (None, None) => "no answer".to_string(),
        };
        match self.class {
            Class::Auth => StorageError::Auth { store: store.to_string(), source: self.source },
            Class::NotFound => StorageError::NotFound { store: store.to_string(), key: key.to_string() },
            Class::Transient => StorageError::Backend {
                store: store.to_string(),
                message: format!(
                    "gave up on {op} {key} after {attempts} attempts ({detail}); check the network and the endpoint, \
                     then run the command again"
                ),
                source: Some(self.source),
            },
            Class::Other => StorageError::Backend {
                store: store.to_string(),
                message: format!("{op} {key} failed: {detail}"),
                source: Some(self.source),
            },
        }
    }
}

impl Transient for Failure {
    /// The SDK already retried the requests that got an answer; what is left to retry here is a body that broke
    /// after the headers, or a request that got no answer at all.
    fn is_transient(&self) -> bool {
        self.class == Class::Transient && self.status.is_none()
    }
}

/// The policy for what the SDK does not retry itself (bodies broken mid-way): `attempts` in all, waits from 200 ms
/// doubling up to 6.4 s.
pub(crate) fn body_retry(attempts: u32) -> Retry {
    Retry::new(attempts, Duration::from_millis(200), Duration::from_millis(6400))
}

/// A boxed future, for the reopen callback of [`StreamReader`].
pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Opens the object again from `offset`: returns the body and how many leading bytes of it to skip (a server that
/// ignores ranges sends the whole object, so the skip is `offset`).
pub(crate) type Reopen = Box<dyn Fn(u64) -> BoxFuture<Result<(ByteStream, u64), Failure>> + Send + Sync>;

enum Msg {
    Data(Vec<u8>),
    End,
    Failed(io::Error),
}

/// Frames buffered between the download task and the reader (the SDK yields frames of up to a few tens of KiB).
const CHANNEL_FRAMES: usize = 64;

/// A blocking reader of an object body, fed by a task on the store's runtime. When the connection breaks, the task
/// opens the object again from where it stopped (at most `max_resumes` times), so a large download survives a reset.
/// When `expected` is known, a short body is an error, never a silent truncation.
pub(crate) struct StreamReader {
    rx: mpsc::Receiver<Msg>,
    cur: Vec<u8>,
    pos: usize,
    done: bool,
    task: tokio::task::JoinHandle<()>,
    // Keeps the runtime alive while the reader exists.
    _keep: Box<dyn Send + Sync>,
}

impl StreamReader {
    /// Starts streaming `first` (the body of the first response) on `rt`.
    pub fn spawn(
        rt: &Runtime,
        keep: Box<dyn Send + Sync>,
        first: ByteStream,
        expected: Option<u64>,
        reopen: Reopen,
        max_resumes: u32,
        what: String,
    ) -> StreamReader {
        let (tx, rx) = mpsc::channel(CHANNEL_FRAMES);
        let task = rt.spawn(async move {
            let mut body = first;
            let mut skip = 0u64;
            let mut offset = 0u64;
            let mut resumes = 0u32;
            loop {
                match body.try_next().await {
                    Ok(Some(chunk)) => {
                        let mut chunk: Vec<u8> = chunk.into();
                        if skip > 0 {
                            let n = skip.min(chunk.len() as u64) as usize;
                            chunk.drain(..n);
                            skip -= n as u64;
                        }
                        if chunk.is_empty() {
                            continue;
                        }
                        offset += chunk.len() as u64;
                        if tx.send(Msg::Data(chunk)).await.is_err() {
                            return; // the reader is gone
                        }
                    }
                    Ok(None) => {
                        let short = expected.is_some_and(|e| offset < e);
                        if !short {
                            if expected.is_some_and(|e| offset > e) {
                                let e = io::Error::new(
                                    io::ErrorKind::InvalidData,
                                    format!("{what}: the server sent more bytes than the object has"),
                                );
                                let _ = tx.send(Msg::Failed(e)).await;
                            } else {
                                let _ = tx.send(Msg::End).await;
                            }
                            return;
                        }
                        // A body that ended early: resume like after a reset.
                        if let Err(e) = resume(&reopen, &mut body, &mut skip, offset, &mut resumes, max_resumes).await {
                            let _ = tx.send(Msg::Failed(stream_error(&what, offset, "the body ended early", e))).await;
                            return;
                        }
                    }
                    Err(err) => {
                        let reason = format!("the connection broke ({err})");
                        if let Err(e) = resume(&reopen, &mut body, &mut skip, offset, &mut resumes, max_resumes).await {
                            let _ = tx.send(Msg::Failed(stream_error(&what, offset, &reason, e))).await;
                            return;
                        }
                    }
                }
            }
        });
        StreamReader { rx, cur: Vec::new(), pos: 0, done: false, task, _keep: keep }
    }
}

async fn resume(
    reopen: &Reopen,
    body: &mut ByteStream,
    skip: &mut u64,
    offset: u64,
    resumes: &mut u32,
    max: u32,
) -> Result<(), Failure> {
    loop {
        if *resumes >= max {
            return Err(Failure::io(io::Error::other(format!("gave up after {max} resumed downloads"))));
        }
        *resumes += 1;
        tokio::time::sleep(body_retry(max).delay(*resumes)).await;
        match reopen(offset).await {
            Ok((b, s)) => {
                *body = b;
                *skip = s;
                return Ok(());
            }
            Err(f) if f.class == Class::Transient => continue,
            Err(f) => return Err(f),
        }
    }
}

fn stream_error(what: &str, offset: u64, reason: &str, f: Failure) -> io::Error {
    let kind = if f.class == Class::Transient { io::ErrorKind::ConnectionAborted } else { io::ErrorKind::Other };
    io::Error::new(kind, format!("{what}: download stopped at byte {offset}: {reason}; resuming failed: {}", f.source))
}

impl Read for StreamReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.pos >= self.cur.len() {
            if self.done {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Msg::Data(d)) => {
                    self.cur = d;
                    self.pos = 0;
                }
                Some(Msg::End) => {
                    self.done = true;
                    return Ok(0);
                }
                Some(Msg::Failed(e)) => {
                    self.done = true;
                    return Err(e);
                }
                None => {
                    self.done = true;
                    return Err(io::Error::other("the download task stopped unexpectedly"));
                }
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Drop for StreamReader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The current time in seconds since the epoch.
pub(crate) fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_secret_key() {
        let access = AwsAccess {
            access_key: Some("AKIDEXAMPLE".into()),
            secret_key: Some("hush-hush".into()),
            ..AwsAccess::default()
        };
        let shown = format!("{access:?}");
        assert!(shown.contains("AKIDEXAMPLE") && shown.contains("\"***\"") && !shown.contains("hush"), "{shown}");
    }

    #[test]
    fn an_empty_endpoint_is_no_endpoint() {
        let mut access = AwsAccess { endpoint_url: Some(String::new()), ..AwsAccess::default() };
        assert_eq!(access.endpoint(), None);
        assert_eq!(access.describe("s3 bucket b".into()), "s3 bucket b");
        access.endpoint_url = Some("http://127.0.0.1:9000".into());
        assert_eq!(access.describe("s3 bucket b".into()), "s3 bucket b at http://127.0.0.1:9000");
    }

    #[test]
    fn errors_are_classified_by_code_then_status() {
        assert_eq!(classify(Some(403), Some("SignatureDoesNotMatch"), false), Class::Auth);
        assert_eq!(classify(Some(403), Some("InvalidAccessKeyId"), false), Class::Auth);
        assert_eq!(classify(Some(403), None, false), Class::Auth);
        assert_eq!(classify(Some(403), Some("InvalidObjectState"), false), Class::Other);
        assert_eq!(classify(Some(404), Some("NoSuchKey"), false), Class::NotFound);
        assert_eq!(classify(Some(404), None, false), Class::NotFound);
        assert_eq!(classify(Some(404), Some("NoSuchBucket"), false), Class::Other);
        assert_eq!(classify(Some(503), Some("SlowDown"), false), Class::Transient);
        assert_eq!(classify(Some(500), Some("InternalError"), false), Class::Transient);
        assert_eq!(classify(None, None, true), Class::Transient);
        assert_eq!(classify(Some(400), Some("InvalidArgument"), false), Class::Other);
    }
}
