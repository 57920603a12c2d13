//! The Swift all-in-one that scripts/test.sh starts: its settings from `BAKTHAT_TEST_SWIFT_*`, for tests.

use bakthat::storage::swift::{AuthVersion, SwiftSettings};

/// `BAKTHAT_TEST_SWIFT_*`, or a failure that says how to get them (a missing server is a failure, never a skip).
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: the Swift tests need the Swift all-in-one. Run scripts/test.sh, or \
             `scripts/swift-aio.sh start && eval \"$(scripts/swift-aio.sh env)\"` before cargo test"
        )
    })
}

/// A container name no other test or run uses.
pub fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("bk-{}-{nanos}-{name}", std::process::id())
}

/// v1 settings for `container` on the all-in-one.
pub fn settings(container: &str) -> SwiftSettings {
    SwiftSettings {
        auth_url: env("BAKTHAT_TEST_SWIFT_AUTH"),
        auth_version: AuthVersion::V1,
        user: env("BAKTHAT_TEST_SWIFT_USER"),
        key: env("BAKTHAT_TEST_SWIFT_KEY"),
        container: container.to_string(),
        ..SwiftSettings::default()
    }
}

/// The endpoint of the all-in-one's s3api (an S3 server that checks signatures and expiry).
pub fn s3_endpoint() -> String {
    match std::env::var("BAKTHAT_TEST_SWIFT_S3_ENDPOINT") {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "BAKTHAT_TEST_SWIFT_S3_ENDPOINT is not set: run the tests with scripts/test.sh, or run \
             `scripts/swift-aio.sh start && eval \"$(scripts/swift-aio.sh env)\"` first"
        ),
    }
}
