//! TLS material for tests: a self-signed certificate made with the `openssl` command (a missing one is a failure).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Writes a self-signed server certificate for 127.0.0.1 and localhost into `dir`: returns (cert.pem, key.pem).
pub fn self_signed_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "extendedKeyUsage=serverAuth", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("cannot run openssl ({e}); install openssl (Debian package openssl)"));
    assert!(status.success(), "openssl req failed");
    (cert, key)
}
