//! Cross-checks `scripts/bakthat-decrypt` (Python, written from the format spec) against `EncryptWriter`, under two
//! interpreters: the venv's (`BAKTHAT_PYTHON`, default `python3`; cryptography >= 44 brings Argon2id) and Debian's own
//! `/usr/bin/python3` (`BAKTHAT_DEBIAN_PYTHON` overrides it) with only `python3-cryptography` (38 on Debian 12, no
//! Argon2id) and `python3-argon2`, as the README tells users to install. Both are installed by
//! `scripts/install-test-deps.sh`; a missing one fails the test, nothing is installed here.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use bakthat::archive::crypto::{EncryptWriter, KdfParams, MasterKey, DEFAULT_CHUNK_SIZE, HEADER_LEN};

const CHEAP: KdfParams = KdfParams { m_cost_kib: 256, t_cost: 1, parallelism: 1 };
const PASSWORD: &str = "correct horse ✓ battery";

/// One interpreter the script is run under, with what it must be able to import.
struct Python {
    exe: String,
    imports: &'static str,
    install: &'static str,
    /// Modules made unimportable (`sys.modules[m] = None`) before the script runs, to force one Argon2id source.
    hide: &'static [&'static str],
}

impl Python {
    /// The venv's interpreter; argon2-cffi hidden, so Argon2id comes from cryptography (>= 44).
    fn venv() -> Python {
        Python {
            exe: std::env::var("BAKTHAT_PYTHON").unwrap_or_else(|_| "python3".to_string()),
            imports: "import cryptography.hazmat.primitives.kdf.argon2",
            install: "pip install \"cryptography>=44\" (or set BAKTHAT_PYTHON to a python that has it)",
            hide: &["argon2"],
        }
    }

    /// Debian's interpreter with Debian's packages, as shipped.
    fn debian() -> Python {
        Python {
            exe: std::env::var("BAKTHAT_DEBIAN_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".to_string()),
            imports: "import cryptography.hazmat.primitives.ciphers, argon2.low_level",
            install: "apt install python3-cryptography python3-argon2 (scripts/install-test-deps.sh does)",
            hide: &[],
        }
    }

    /// Debian's interpreter with cryptography's Argon2id hidden, so argon2-cffi is used even once Debian's
    /// cryptography has one (Debian 12's 38 has none, so there this is the same as `debian`).
    fn debian_argon2_cffi() -> Python {
        Python { hide: &["cryptography.hazmat.primitives.kdf.argon2"], ..Python::debian() }
    }

    /// Fails loudly if the interpreter or the packages the script needs under it are missing.
    fn require(&self) {
        let out = Command::new(&self.exe)
            .args(["-c", self.imports])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {} ({e}): {}", self.exe, self.install));
        assert!(
            out.status.success(),
            "{} cannot `{}`: {}\n{}",
            self.exe,
            self.imports,
            self.install,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs the script on a file (or on stdin when `stdin` is given) with the password in the environment.
    fn run(&self, file: &Path, password: &str, stdin: Option<&[u8]>) -> Output {
        const HIDING_RUNNER: &str = "import runpy, sys\n\
            for m in filter(None, sys.argv[1].split(',')): sys.modules[m] = None\n\
            sys.argv = sys.argv[2:]\n\
            runpy.run_path(sys.argv[0], run_name='__main__')";
        let mut cmd = Command::new(&self.exe);
        cmd.args(["-c", HIDING_RUNNER, &self.hide.join(",")]);
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
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/bakthat-decrypt")
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

/// Every size class (empty, one partial chunk, exact multiples, one byte over, many chunks), from a file and from
/// stdin, and Argon2id with several lanes and passes (p = 4, t = 2) so both libraries' parameter mapping is checked.
fn decrypts_what_the_writer_wrote(python: &Python) {
    python.require();
    let dir = tempfile::tempdir().expect("tempdir");
    let master = MasterKey::derive(PASSWORD.as_bytes(), MasterKey::random_salt(), CHEAP).expect("derive");
    let lanes = KdfParams { m_cost_kib: 512, t_cost: 2, parallelism: 4 };
    let master_lanes = MasterKey::derive(PASSWORD.as_bytes(), MasterKey::random_salt(), lanes).expect("derive");
    let cases: &[(&MasterKey, usize, u32)] = &[
        (&master, 0, 1024),
        (&master, 1, 16),
        (&master, 15, 16),
        (&master, 16 * 5, 16),
        (&master, 1024 * 3, 1024),
        (&master, 1024 * 3 + 1, 1024),
        (&master, 100_000, 4096),
        (&master, 2 * DEFAULT_CHUNK_SIZE as usize, DEFAULT_CHUNK_SIZE),
        (&master, 300_001, DEFAULT_CHUNK_SIZE),
        (&master_lanes, 5000, 1024),
    ];
    for &(master, len, chunk_size) in cases {
        let data = random_bytes(len);
        let ct = encrypt(master, &data, chunk_size);
        let path = dir.path().join(format!("b{len}.tgz.enc"));
        std::fs::write(&path, &ct).expect("write archive");
        let out = python.run(&path, PASSWORD, None);
        assert!(out.status.success(), "{}: len {len}, C {chunk_size}: {}", python.exe, stderr_line(&out));
        assert!(out.stdout == data, "{}: len {len}, C {chunk_size}: plaintext differs", python.exe);
        let piped = python.run(&path, PASSWORD, Some(&ct));
        assert!(piped.status.success() && piped.stdout == data, "stdin, len {len}: {}", stderr_line(&piped));
    }
}

#[test]
fn script_decrypts_what_the_writer_wrote() {
    decrypts_what_the_writer_wrote(&Python::venv());
}

/// Issue 12: the script needed cryptography >= 44 for Argon2id, which Debian 12 (38) does not have, and pip refuses
/// to install outside a venv there. Debian's own python3-cryptography + python3-argon2 must be enough.
#[test]
fn script_decrypts_under_debian_python_with_debian_packages() {
    decrypts_what_the_writer_wrote(&Python::debian());
    decrypts_what_the_writer_wrote(&Python::debian_argon2_cffi());
}

/// Without any Argon2id, the script says which packages to install, before writing anything.
#[test]
fn script_without_argon2id_names_the_packages() {
    let python = Python { hide: &["cryptography.hazmat.primitives.kdf.argon2", "argon2"], ..Python::debian() };
    python.require();
    let dir = tempfile::tempdir().expect("tempdir");
    let master = MasterKey::derive(PASSWORD.as_bytes(), MasterKey::random_salt(), CHEAP).expect("derive");
    let path = dir.path().join("a.tgz.enc");
    std::fs::write(&path, encrypt(&master, b"data", 1024)).expect("write archive");
    let out = python.run(&path, PASSWORD, None);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_line(&out));
    assert!(out.stdout.is_empty());
    let err = stderr_line(&out);
    assert!(err.contains("apt install python3-cryptography python3-argon2") && !err.contains('\n'), "{err}");
}

#[test]
fn script_rejects_wrong_password_and_damage() {
    rejects_wrong_password_and_damage(&Python::venv());
    rejects_wrong_password_and_damage(&Python::debian());
}

fn rejects_wrong_password_and_damage(python: &Python) {
    python.require();
    let dir = tempfile::tempdir().expect("tempdir");
    let master = MasterKey::derive(PASSWORD.as_bytes(), MasterKey::random_salt(), CHEAP).expect("derive");
    let data = random_bytes(5000);
    let ct = encrypt(&master, &data, 1024);
    let path = dir.path().join("a.tgz.enc");
    std::fs::write(&path, &ct).expect("write archive");

    let out = python.run(&path, "wrong", None);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_line(&out));
    assert!(out.stdout.is_empty());
    assert!(stderr_line(&out).contains("wrong password"), "{}", stderr_line(&out));

    // A flipped byte in chunk 2: chunks 0 and 1 may be written, nothing of chunk 2 or later.
    let mut flipped = ct.clone();
    flipped[HEADER_LEN + 2 * 1088 + 100] ^= 0x01;
    std::fs::write(&path, &flipped).expect("write archive");
    let out = python.run(&path, PASSWORD, None);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_line(&out).contains("chunk 2 failed authentication"), "{}", stderr_line(&out));
    assert!(!stderr_line(&out).contains('\n'));
    assert!(out.stdout.len() <= 2 * 1024 && out.stdout == data[..out.stdout.len()]);

    // Cut at a chunk boundary: the new final chunk was not written as final.
    std::fs::write(&path, &ct[..HEADER_LEN + 2 * 1088]).expect("write archive");
    let out = python.run(&path, PASSWORD, None);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_line(&out).contains("chunk 1 failed authentication"), "{}", stderr_line(&out));

    for (cut, message) in [(40, "truncated"), (HEADER_LEN + 30, "truncated"), (0, "truncated")] {
        std::fs::write(&path, &ct[..cut]).expect("write archive");
        let out = python.run(&path, PASSWORD, None);
        assert_eq!(out.status.code(), Some(1), "cut {cut}");
        assert!(stderr_line(&out).contains(message), "cut {cut}: {}", stderr_line(&out));
    }

    let mut header = ct.clone();
    header[30] ^= 0x01; // inside the salt
    std::fs::write(&path, &header).expect("write archive");
    let out = python.run(&path, PASSWORD, None);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_line(&out).contains("wrong password"), "{}", stderr_line(&out));
}
