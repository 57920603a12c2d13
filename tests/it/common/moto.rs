//! The moto server (S3 and Glacier) that scripts/test.sh starts: its endpoint and store settings for tests.

use std::time::Duration;

use bakthat::storage::aws::{AwsAccess, AwsTuning};
use bakthat::storage::glacier::GlacierSettings;
use bakthat::storage::s3::S3Settings;

/// The environment variable holding moto's endpoint.
pub const ENDPOINT_ENV: &str = "BAKTHAT_TEST_S3_ENDPOINT";

/// moto's endpoint. A missing server is a failure, never a skip.
pub fn endpoint() -> String {
    match std::env::var(ENDPOINT_ENV) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{ENDPOINT_ENV} is not set: run the tests with scripts/test.sh (it starts moto), or run \
             `scripts/moto-server.sh start && eval \"$(scripts/moto-server.sh env)\"` first"
        ),
    }
}

/// A bucket or vault name no other test uses.
pub fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &id[..16])
}

/// Retries that give up quickly, for tests.
pub fn fast_tuning() -> AwsTuning {
    AwsTuning {
        max_attempts: 5,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(20),
        worker_threads: 2,
    }
}

/// How to reach moto at `endpoint` (it takes any credentials).
pub fn access(endpoint: &str) -> AwsAccess {
    AwsAccess {
        region: Some("us-east-1".into()),
        endpoint_url: Some(endpoint.to_string()),
        access_key: Some("test".into()),
        secret_key: Some("test".into()),
    }
}

/// Settings for a bucket on `endpoint`.
pub fn s3_settings(endpoint: &str, bucket: &str) -> S3Settings {
    S3Settings { bucket: bucket.to_string(), access: access(endpoint), tuning: fast_tuning(), ..S3Settings::default() }
}

/// Settings for a vault on `endpoint`.
pub fn glacier_settings(endpoint: &str, vault: &str) -> GlacierSettings {
    GlacierSettings {
        vault: vault.to_string(),
        access: access(endpoint),
        tuning: fast_tuning(),
        ..GlacierSettings::default()
    }
}

/// The YAML lines of a profile on moto for `bucket` (test credentials, us-east-1), to put under a profile name.
pub fn profile_yaml(bucket: &str) -> String {
    format!(
        "  access_key: test\n  secret_key: test\n  region_name: us-east-1\n  s3_bucket: {bucket}\n  endpoint_url: {}\n",
        endpoint()
    )
}
