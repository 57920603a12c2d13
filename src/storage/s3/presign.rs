//! Presigned URLs of an object (SigV4, query-string auth, signed locally: no request is made): GET for `share`,
//! GET, PUT, DELETE or HEAD for KeyValue's `get_key_url(key, expires_in, method)` (0.6's boto `generate_url`).
//! Not here: checking that the object exists (the callers decide), other S3 operations.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use aws_sdk_s3::presigning::{PresignedRequest, PresigningConfig};

use super::{S3Store, MAX_PRESIGN};
use crate::storage::{check_object_key, StorageError};

/// The HTTP method a presigned URL is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresignMethod {
    /// Downloads the object.
    Get,
    /// Uploads (replaces) the object with the request's body.
    Put,
    /// Deletes the object.
    Delete,
    /// The object's headers (size, type, user metadata), without its body.
    Head,
}

impl PresignMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            PresignMethod::Get => "GET",
            PresignMethod::Put => "PUT",
            PresignMethod::Delete => "DELETE",
            PresignMethod::Head => "HEAD",
        }
    }
}

impl fmt::Display for PresignMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A method name that is not one of GET, PUT, DELETE, HEAD.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot presign a {0:?} URL; give GET, PUT, DELETE or HEAD")]
pub struct UnknownMethod(pub String);

impl FromStr for PresignMethod {
    type Err = UnknownMethod;

    /// `GET`, `PUT`, `DELETE` or `HEAD`, in any case (0.6 took boto's method strings).
    fn from_str(s: &str) -> Result<PresignMethod, UnknownMethod> {
        match s.to_ascii_uppercase().as_str() {
            "GET" => Ok(PresignMethod::Get),
            "PUT" => Ok(PresignMethod::Put),
            "DELETE" => Ok(PresignMethod::Delete),
            "HEAD" => Ok(PresignMethod::Head),
            _ => Err(UnknownMethod(s.to_string())),
        }
    }
}

impl S3Store {
    /// A presigned GET URL of `key`; see [`S3Store::presign`].
    pub fn presign_get(&self, key: &str, expires: Duration) -> Result<String, StorageError> {
        self.presign(PresignMethod::Get, key, expires)
    }

    /// A presigned (SigV4, query-string) URL for `method` on `key`, valid for `expires` (1 second to
    /// [`MAX_PRESIGN`]). A PUT URL signs no body checksum or content type: any body may be sent with it. Signing
    /// happens locally: the object is not checked.
    pub fn presign(&self, method: PresignMethod, key: &str, expires: Duration) -> Result<String, StorageError> {
        check_object_key(key)?;
        type Boxed = Box<dyn std::error::Error + Send + Sync>;
        let inner = &self.inner;
        let bad = |message: String, source: Option<Boxed>| StorageError::Backend {
            store: inner.describe.clone(),
            message,
            source,
        };
        if expires.is_zero() || expires > MAX_PRESIGN {
            return Err(bad(
                format!("a presigned URL is valid for 1 second to 7 days, not {} seconds", expires.as_secs()),
                None,
            ));
        }
        let config = PresigningConfig::expires_in(expires)
            .map_err(|e| bad("cannot build the presigning settings".into(), Some(Box::new(e))))?;
        let (client, bucket) = (&inner.client, &inner.bucket);
        let signed: Result<PresignedRequest, Boxed> = inner.rt.block_on(async {
            Ok(match method {
                PresignMethod::Get => client.get_object().bucket(bucket).key(key).presigned(config).await?,
                PresignMethod::Put => client.put_object().bucket(bucket).key(key).presigned(config).await?,
                PresignMethod::Delete => client.delete_object().bucket(bucket).key(key).presigned(config).await?,
                PresignMethod::Head => client.head_object().bucket(bucket).key(key).presigned(config).await?,
            })
        });
        let signed =
            signed.map_err(|e| bad(format!("cannot sign a {method} URL for {key}; check the credentials"), Some(e)))?;
        Ok(signed.uri().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_parse_in_any_case_and_others_are_refused() {
        assert_eq!("get".parse(), Ok(PresignMethod::Get));
        assert_eq!("Put".parse(), Ok(PresignMethod::Put));
        assert_eq!("DELETE".parse(), Ok(PresignMethod::Delete));
        assert_eq!("head".parse(), Ok(PresignMethod::Head));
        let err = "POST".parse::<PresignMethod>().unwrap_err();
        assert_eq!(err.to_string(), "cannot presign a \"POST\" URL; give GET, PUT, DELETE or HEAD");
        assert!("".parse::<PresignMethod>().is_err());
    }
}
