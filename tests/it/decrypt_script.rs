//! Cross-checks `scripts/bakthat-decrypt` (Python, written from the format spec) against `EncryptWriter`.
//!
//! Needs python3 with the `cryptography` package (>= 44); `BAKTHAT_PYTHON` overrides the interpreter.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use bakthat::archive::crypto::{EncryptWriter, KdfParams, MasterKey, DEFAULT_CHUNK_SIZE, HEADER_LEN};

const CHEAP: KdfParams = KdfParams { m_cost_kib: 256, t_cost: 1, parallelism: 1 };
const PASSWORD: &str = "correct horse ✓ battery";

fn python() -> String {
    std::env::var("BAKTHAT_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/bakthat-decrypt")
}

/// Fails loudly if the interpreter or its `cryptography` package is missing.
fn require_python() {
    let out = Command::new(python())
        .args(["-c", "import cryptography.hazmat.primitives.kdf.argon2"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} ({e}); install python3 or set BAKTHAT_PYTHON", python()));
    assert!(
        out.status.success(),
        "{} cannot import cryptography's Argon2id: pip install \"cryptography>=44\" (or set BAKTHAT_PYTHON)\n{}",
        python(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs the script on a file (or on stdin when `stdin` is given) with the password in the environment.
fn run(file: &Path, password: &str, stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(python());
    cmd.arg(script()).env("BAKTHAT_PASSWORD", password).stdout(Stdio::piped()).stderr(Stdio::piped());
    match stdin {
        None => {
            cmd.arg(file).stdin(Stdio::null());
            cmd.output().expect("running the decrypt script")
        }
        Some(data) => {
            let mut child = cmd.arg("-").stdin(Stdio::piped()).spawn().expect("running the decrypt script");
            let mut input = child.stdin.take().expect("piped stdin");
            let data = data.to_vec();
            let writer = std::thread::spawn(move || input.write_all(&data));
            let out = child.wait_with_output().expect("waiting for the decrypt script");
            writer.join().expect("stdin writer").expect("writing stdin");
            out
        }
    }
}

fn random_bytes(len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    getrandom::getrandom(&mut data).expect("os randomness");
    data
}

fn encrypt(master: &MasterKey, data: &[u8], chunk_size: u32) -> Vec<u8> {
    let mut writer = EncryptWriter::new(Vec::new(), master, chunk_size).expect("writer");
    for piece in data.chunks(1000) {
        writer.write_all(piece).expect("write");
    }
    writer.finish().expect("finish")
}

fn stderr_line(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).trim().to_string()
}

#[test]
fn script_decrypts_what_the_writer_wrote() {
    require_python();
    let dir = tempfile::tempdir().expect("tempdir");
    let master = MasterKey::derive(PASSWORD.as_bytes(), MasterKey::random_salt(), CHEAP).expect("derive");
    let cases: &[(usize, u32)] = &[
        (0, 1024),
        (1, 16),
        (15, 16),
        (16 * 5, 16),
        (1024 * 3, 1024),
        (1024 * 3 + 1, 1024),
        (100_000, 4096),
        (2 * DEFAULT_CHUNK_SIZE as usize, DEFAULT_CHUNK_SIZE),
        (300_001, DEFAULT_CHUNK_SIZE),
    ];
    for &(len, chunk_size) in cases {
        let data = random_bytes(len);
        let ct = encrypt(&master, &data, chunk_size);
        let path = dir.path().join(format!("b{len}.tgz.enc"));
        std::fs::write(&path, &ct).expect("write archive");
        let out = run(&path, PASSWORD, None);
        assert!(out.status.success(), "len {len}, C {chunk_size}: {}", stderr_line(&out));
        assert!(out.stdout == data, "len {len}, C {chunk_size}: plaintext differs");
        let piped = run(&path, PASSWORD, Some(&ct));
        assert!(piped.status.success() && piped.stdout == data, "stdin, len {len}: {}", stderr_line(&piped));
    }
}

#[test]
fn script_rejects_wrong_password_and_damage() {
    require_python();
    let dir = tempfile::tempdir().expect("tempdir");
    let master = MasterKey::derive(PASSWORD.as_bytes(), MasterKey::random_salt(), CHEAP).expect("derive");
    let data = random_bytes(5000);
    let ct = encrypt(&master, &data, 1024);
    let path = dir.path().join("a.tgz.enc");
    std::fs::write(&path, &ct).expect("write archive");

    let out = run(&path, "wrong", None);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_line(&out));
    assert!(out.stdout.is_empty());
    assert!(stderr_line(&out).contains("wrong password"), "{}", stderr_line(&out));

    // A flipped byte in chunk 2: chunks 0 and 1 may be written, nothing of chunk 2 or later.
    let mut flipped = ct.clone();
    flipped[HEADER_LEN + 2 * 1088 + 100] ^= 0x01;
    std::fs::write(&path, &flipped).expect("write archive");
    let out = run(&path, PASSWORD, None);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_line(&out).contains("chunk 2 failed authentication"), "{}", stderr_line(&out));
    assert!(!stderr_line(&out).contains('\n'));
    assert!(out.stdout.len() <= 2 * 1024 && out.stdout == data[..out.stdout.len()]);

    // Cut at a chunk boundary: the new final chunk was not written as final.
    std::fs::write(&path, &ct[..HEADER_LEN + 2 * 1088]).expect("write archive");
    let out = run(&path, PASSWORD, None);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_line(&out).contains("chunk 1 failed authentication"), "{}", stderr_line(&out));

    for (cut, message) in [(40, "truncated"), (HEADER_LEN + 30, "truncated"), (0, "truncated")] {
        std::fs::write(&path, &ct[..cut]).expect("write archive");
        let out = run(&path, PASSWORD, None);
        assert_eq!(out.status.code(), Some(1), "cut {cut}");
        assert!(stderr_line(&out).contains(message), "cut {cut}: {}", stderr_line(&out));
    }

    let mut header = ct.clone();
    header[30] ^= 0x01; // inside the salt
    std::fs::write(&path, &header).expect("write archive");
    let out = run(&path, PASSWORD, None);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_line(&out).contains("wrong password"), "{}", stderr_line(&out));
}
