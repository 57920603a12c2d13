//! TLS of the Swift store against `openssl s_server` with a self-signed certificate: verified by default (against
//! the system CA bundle, which `SSL_CERT_FILE` replaces), skipped only with `insecure`. Its own test binary because
//! it sets `SSL_CERT_FILE` for the process. Needs the `openssl` command; a missing one is a failure.

use crate::common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use bakthat::storage::swift::{AuthVersion, SwiftSettings, SwiftStore};
use bakthat::storage::StorageError;
use common::error_chain;

/// `openssl s_server -www` on 127.0.0.1:0 (it answers any GET with a status page); kills it on drop.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(cert: &Path, key: &Path) -> Server {
        let mut child = Command::new("openssl")
            .args(["s_server", "-accept", "127.0.0.1:0", "-www", "-cert"])
            .arg(cert)
            .arg("-key")
            .arg(key)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run openssl s_server ({e}); install openssl (Debian package openssl)"));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        // It prints "ACCEPT 127.0.0.1:PORT" once it listens; the rest of its output is drained.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("ACCEPT ") {
                    let _ = tx.send(addr.rsplit(':').next().unwrap_or("").parse::<u16>());
                }
            }
        });
        let port = match rx.recv_timeout(std::time::Duration::from_secs(30)) {
            Ok(Ok(port)) => port,
            other => {
                let _ = child.kill();
                panic!("openssl s_server did not say which port it listens on: {other:?}");
            }
        };
        Server { child, port }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn tls_is_verified_unless_insecure() {
    let t = tempfile::tempdir().unwrap();
    let (cert, key) = common::tls::self_signed_cert(t.path());
    let server = Server::start(&cert, &key);
    let settings = |insecure| SwiftSettings {
        auth_url: format!("https://127.0.0.1:{}/auth/v1.0", server.port),
        auth_version: AuthVersion::V1,
        user: "a:u".into(),
        key: "k".into(),
        container: "c".into(),
        insecure,
        ..SwiftSettings::default()
    };

    // Verified by default: a self-signed certificate is refused.
    let err = SwiftStore::new(&settings(false)).expect_err("self-signed certificate accepted");
    assert!(matches!(err, StorageError::Backend { .. }), "{err:?}");
    let text = error_chain(&err);
    assert!(text.contains("certificate") && text.contains("swift_insecure"), "{text}");

    // insecure: the handshake succeeds and the (non-Swift) server's answer is what fails.
    let err = SwiftStore::new(&settings(true)).expect_err("openssl is no Swift");
    assert!(error_chain(&err).contains("without X-Storage-Url"), "{}", error_chain(&err));

    // The CA bundle the system points at is honoured: trusting the certificate makes verification pass.
    // This changes the process's environment: nextest runs each test in a process of its own; plain `cargo test`
    // (scripts/test.sh without cargo-nextest) shares one with the other tests of this binary, none of which relies
    // on the system CA bundle.
    std::env::set_var("SSL_CERT_FILE", &cert);
    let err = SwiftStore::new(&settings(false)).expect_err("openssl is no Swift");
    assert!(error_chain(&err).contains("without X-Storage-Url"), "{}", error_chain(&err));
}
