//! The legacy (bakthat 0.6 / beefish) reader against real beefish output, plus round trips and error cases.
//!
//! Vectors come from `tests/data/beefish/` (a copy of `shared/reference/beefish-vectors/`). `BAKTHAT_SHARED`
//! (the `shared/` directory) overrides the copy; without the copy, `<crate>/../shared` and `/work/shared` are
//! tried. A missing vector directory fails the tests.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use bakthat::archive::legacy::{
    aes_key_iv, blowfish_encrypt, blowfish_encrypt_with, AesReader, BlowfishReader, LegacyCipher, LegacyError,
};
use proptest::prelude::*;

const PASSWORD: &[u8] = b"bakthat-test-password";
/// Read buffer sizes used for every decryption: odd ones, block-sized ones, and larger than the internal chunk.
const READ_SIZES: &[usize] = &[1, 3, 7, 8, 13, 16, 4095, 4096, 65_537];

fn vectors_dir() -> PathBuf {
    let mut tried = Vec::new();
    let mut candidates = Vec::new();
    if let Some(shared) = std::env::var_os("BAKTHAT_SHARED") {
        candidates.push(PathBuf::from(shared).join("reference/beefish-vectors"));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    candidates.push(root.join("tests/data/beefish"));
    candidates.push(root.join("../shared/reference/beefish-vectors"));
    candidates.push(PathBuf::from("/work/shared/reference/beefish-vectors"));
    for dir in candidates {
        if dir.join("py3_beefish-0.2.1_pycryptodome.json").is_file() {
            return dir;
        }
        tried.push(dir);
    }
    panic!("beefish test vectors not found; tried {tried:?} (set BAKTHAT_SHARED to the shared/ directory)");
}

fn vector_file(name: &str) -> Vec<u8> {
    let path = vectors_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn hex(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0, "odd hex length");
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit")).collect()
}

/// Byte `i` of every vector plaintext is `(i*7 + 3) & 0xff`.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i.wrapping_mul(7).wrapping_add(3) & 0xff) as u8).collect()
}

fn read_all_with(mut r: impl Read, step: usize) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; step];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

fn decrypt_bf(ct: &[u8], password: &[u8], step: usize) -> Result<Vec<u8>, io::Error> {
    let r = BlowfishReader::new(ct, password, false).map_err(io::Error::from)?;
    read_all_with(r, step)
}

fn decrypt_aes(ct: &[u8], password: &[u8], step: usize) -> Result<Vec<u8>, io::Error> {
    let r = AesReader::new(ct, password, false).map_err(io::Error::from)?;
    read_all_with(r, step)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

struct Vector {
    id: String,
    cipher: String,
    password: Vec<u8>,
    plaintext: Vec<u8>,
    ciphertext: Vec<u8>,
}

fn json() -> serde_json::Value {
    serde_json::from_slice(&vector_file("py3_beefish-0.2.1_pycryptodome.json")).expect("vector file is JSON")
}

fn json_vectors() -> Vec<Vector> {
    let doc = json();
    let list = doc["vectors"].as_array().expect("`vectors` array");
    list.iter()
        .map(|v| {
            let s = |k: &str| v[k].as_str().unwrap_or_else(|| panic!("vector field {k} missing")).to_string();
            let vec = Vector {
                id: s("id"),
                cipher: s("cipher"),
                password: hex(&s("password_hex")),
                plaintext: hex(&s("plaintext_hex")),
                ciphertext: hex(&s("ciphertext_hex")),
            };
            assert_eq!(vec.password, s("password_utf8").into_bytes(), "{}: password_hex vs password_utf8", vec.id);
            let len = vec.plaintext.len();
            assert_eq!(Some(len as u64), v["plaintext_len"].as_u64(), "{}: plaintext_len", vec.id);
            assert_eq!(vec.plaintext, pattern(len), "{}: plaintext is the documented pattern", vec.id);
            vec
        })
        .collect()
}

#[test]
fn every_json_vector_decrypts_with_any_read_size() {
    let vectors = json_vectors();
    assert_eq!(vectors.len(), 12, "the vector file has 12 vectors");
    let (mut bf, mut aes) = (0, 0);
    for v in &vectors {
        for &step in READ_SIZES {
            let got = match v.cipher.as_str() {
                "blowfish-cbc" => {
                    assert_eq!(v.ciphertext.len(), 8 + 8 * (v.plaintext.len() / 8 + 1), "{}", v.id);
                    decrypt_bf(&v.ciphertext, &v.password, step)
                }
                "beefish-aes256-cbc-derived-iv" => {
                    assert_eq!(v.ciphertext.len(), 16 + 16 * (v.plaintext.len() / 16 + 1), "{}", v.id);
                    decrypt_aes(&v.ciphertext, &v.password, step)
                }
                other => panic!("{}: unknown cipher {other}", v.id),
            };
            assert_eq!(got.unwrap_or_else(|e| panic!("{}: {e}", v.id)), v.plaintext, "{} read size {step}", v.id);
        }
        match v.cipher.as_str() {
            "blowfish-cbc" => bf += 1,
            _ => aes += 1,
        }
    }
    assert_eq!((bf, aes), (6, 6));
}

#[test]
fn aes_derivation_matches_beefish() {
    let doc = json();
    let d = &doc["aes_derivation"];
    let password = hex(d["password_hex"].as_str().unwrap());
    let (key, iv) = aes_key_iv(&password);
    assert_eq!(key.to_vec(), hex(d["key_hex"].as_str().unwrap()));
    assert_eq!(iv.to_vec(), hex(d["iv_hex"].as_str().unwrap()));
}

#[test]
fn password_file_has_no_trailing_newline() {
    // The vectors use exactly these 21 bytes as the key; a trailing newline would be part of the key.
    assert_eq!(vector_file("password.txt"), PASSWORD);
}

#[test]
fn plain_txt_enc_and_ae_decrypt_to_plain_txt() {
    let password = vector_file("password.txt");
    let plain = vector_file("plain.txt");
    let enc = vector_file("plain.txt.enc");
    let ae = vector_file("plain.txt.ae");
    assert_eq!(enc.len(), 56, "8 IV + 44 plaintext + 4 pad");
    for &step in READ_SIZES {
        assert_eq!(decrypt_bf(&enc, &password, step).unwrap(), plain);
        assert_eq!(decrypt_aes(&ae, &password, step).unwrap(), plain);
    }
    // The same through the object-name dispatch.
    for (name, ct) in [("plain.txt.enc", &enc), ("plain.txt.e", &enc), ("plain.txt.ae", &ae)] {
        let cipher = LegacyCipher::from_object_name(name).unwrap();
        let r = cipher.reader(&ct[..], &password, false).unwrap();
        assert_eq!(read_all_with(r, 5).unwrap(), plain, "{name}");
    }
}

#[test]
fn aes_header_iv_is_ignored() {
    let mut ae = vector_file("plain.txt.ae");
    ae[..16].fill(0);
    assert_eq!(decrypt_aes(&ae, PASSWORD, 64).unwrap(), vector_file("plain.txt"));
}

/// Section 1.2 "Deterministic check": IV 0001020304050607, 7 pad bytes a5, flag 248 (r = 247), with the vector
/// password and a vector plaintext whose length is a multiple of 8.
#[test]
fn deterministic_check_reproduces_the_reference_prefix() {
    for len in [8, 16, 4096] {
        let plain = pattern(len);
        let ct = blowfish_encrypt_with(&plain, PASSWORD, [0, 1, 2, 3, 4, 5, 6, 7], 0xa5, 247).unwrap();
        assert_eq!(ct[..16].to_vec(), hex("000102030405060745414900f8a3a86c"), "len {len}");
        assert_eq!(ct.len(), 8 + len + 8);
        assert_eq!(decrypt_bf(&ct, PASSWORD, 7).unwrap(), plain);
        // The last plaintext block is exactly the pad: a5 x 7, then the flag 248.
        let last = raw_cbc_last_block(&ct, PASSWORD);
        assert_eq!(last, [0xa5, 0xa5, 0xa5, 0xa5, 0xa5, 0xa5, 0xa5, 248]);
    }
}

/// Decrypts the last block of a beefish Blowfish file without the reader (so the pad bytes are visible).
fn raw_cbc_last_block(ct: &[u8], key: &[u8]) -> [u8; 8] {
    use blowfish::cipher::{BlockDecrypt, KeyInit};
    let bf = <blowfish::Blowfish>::new_from_slice(key).unwrap();
    let n = ct.len();
    let mut block = blowfish::cipher::generic_array::GenericArray::clone_from_slice(&ct[n - 8..]);
    bf.decrypt_block(&mut block);
    let mut out = [0u8; 8];
    for i in 0..8 {
        out[i] = block[i] ^ ct[n - 16 + i];
    }
    out
}

/// Blowfish files made with short keys and a UTF-8 password. Not produced by beefish (pycryptodome and
/// `cryptography` reject keys under 4 bytes): made with Python `cryptography` Blowfish-CBC in the beefish layout
/// (random IV, random pad, flag `r - r % 8 + p`), with a 1-3 byte key given as its repetition to 4+ bytes, which
/// the cyclic Blowfish key schedule makes equivalent (pycrypto 2.6.1 ran the same schedule on the short key).
const OTHER_KEYS: &[(&str, usize, &str)] = &[
    ("6b", 13, "a3a429c195df3b27540e5f9836a44b131a3a001052dba447"),
    ("6162", 8, "bdb464603aea5ed53ebce827c61b25295c2fa42462347abd"),
    ("78797a", 20, "365bb52b370b83dfc51ca320398ec91d9a46c2ca36671c94e26aa9fa232f0800"),
    (
        "4142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f606162636465666768696a6b6c6d6e6f707172737475767778",
        17,
        "2aeffb17daf5edec6d9eac72c95483510cc06956a8989b0bdaeeed07d2472a12",
    ),
    (
        "70c3a4737377c3b6726420d0bad0bbd18ed18720f09f9491",
        30,
        "5a5d8286f0b05b606b6f8bfd1fd15baaf9cc92c7f65fd431c9e94b55b9d40e51b34ed233ade10c37",
    ),
];

#[test]
fn short_long_and_utf8_keys_decrypt_external_vectors() {
    let lens: Vec<usize> = OTHER_KEYS.iter().map(|(k, _, _)| k.len() / 2).collect();
    assert_eq!(lens, [1, 2, 3, 56, 24]);
    assert_eq!(hex(OTHER_KEYS[4].0), "pässwörd ключ 🔑".as_bytes());
    for &(key, len, ct) in OTHER_KEYS {
        let key = hex(key);
        for &step in READ_SIZES {
            assert_eq!(decrypt_bf(&hex(ct), &key, step).unwrap(), pattern(len), "key {key:?}");
        }
    }
}

#[test]
fn short_keys_equal_their_repetition() {
    // The cyclic key schedule: "k" is "kkkk", "ab" is "abab", "xyz" is "xyzxyz".
    for (short, long) in [(&b"k"[..], &b"kkkk"[..]), (b"ab", b"abab"), (b"xyz", b"xyzxyz")] {
        let a = blowfish_encrypt_with(&pattern(21), short, [9; 8], 1, 100).unwrap();
        let b = blowfish_encrypt_with(&pattern(21), long, [9; 8], 1, 100).unwrap();
        assert_eq!(a, b);
    }
}

#[test]
fn round_trips_for_many_lengths_and_keys() {
    let mut lens: Vec<usize> = (0..=40).collect();
    lens.extend([4095, 4096, 4097, 8191, 8192, 8193, 65_535, 65_536, 65_537, 200_003]);
    let keys: [&[u8]; 6] = [b"k", b"ab", b"xyz", &[0x5a; 56], "pässwörd ключ 🔑".as_bytes(), PASSWORD];
    for &len in &lens {
        let plain = pattern(len);
        for key in keys {
            let mut ct = Vec::new();
            let written = blowfish_encrypt(&plain[..], &mut ct, key).unwrap();
            assert_eq!(written, ct.len() as u64);
            assert_eq!(ct.len(), 8 + 8 * (len / 8 + 1), "len {len}");
            for step in [1usize, 13, 4096, 70_000] {
                if step == 1 && len > 10_000 {
                    continue; // byte-at-a-time on big inputs adds nothing but time
                }
                assert_eq!(decrypt_bf(&ct, key, step).unwrap(), plain, "len {len} key {key:?} step {step}");
            }
        }
    }
}

#[test]
fn random_encryptions_differ() {
    let mut a = Vec::new();
    let mut b = Vec::new();
    blowfish_encrypt(&b"same"[..], &mut a, PASSWORD).unwrap();
    blowfish_encrypt(&b"same"[..], &mut b, PASSWORD).unwrap();
    assert_ne!(a[..8], b[..8], "the IV comes from the OS RNG");
}

#[test]
fn gzip_check_accepts_the_right_password_and_rejects_a_wrong_one() {
    let payload = gzip(&pattern(10_000));
    let mut ct = Vec::new();
    blowfish_encrypt(&payload[..], &mut ct, PASSWORD).unwrap();
    let r = BlowfishReader::new(&ct[..], PASSWORD, true).unwrap();
    assert_eq!(read_all_with(r, 1000).unwrap(), payload);
    for wrong in [&b"bakthat-test-passwore"[..], b"x", b"other password"] {
        let err = BlowfishReader::new(&ct[..], wrong, true).err().expect("wrong password detected");
        assert!(matches!(err, LegacyError::WrongPassword), "{err:?}");
        assert_eq!(err.to_string(), "wrong password for this bakthat 0.6 archive (decrypted data is not gzip)");
    }
    // Without the check a wrong password yields garbage, as in beefish.
    assert_ne!(decrypt_bf(&ct, b"x", 100).unwrap(), payload);

    // AES: a gzip payload passes; the vectors' non-gzip plaintext does not.
    let ae = vector_file("plain.txt.ae");
    assert!(matches!(AesReader::new(&ae[..], PASSWORD, true), Err(LegacyError::WrongPassword)));
    // A non-gzip plaintext fails the check even with the right password; so do a 0- and 1-byte plaintext.
    for plain in [&b"plain text"[..], b"", b"\x1f"] {
        let ct = blowfish_encrypt_with(plain, PASSWORD, [3; 8], 0, 6).unwrap();
        assert!(matches!(BlowfishReader::new(&ct[..], PASSWORD, true), Err(LegacyError::WrongPassword)));
    }
    // Exactly the magic is enough.
    let ct = blowfish_encrypt_with(b"\x1f\x8b", PASSWORD, [3; 8], 0, 6).unwrap();
    let r = BlowfishReader::new(&ct[..], PASSWORD, true).unwrap();
    assert_eq!(read_all_with(r, 1).unwrap(), b"\x1f\x8b");
}

fn legacy_err(e: &io::Error) -> &LegacyError {
    assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
    LegacyError::from_io(e).unwrap_or_else(|| panic!("not a LegacyError: {e:?}"))
}

#[test]
fn truncated_inputs_are_reported() {
    let enc = vector_file("plain.txt.enc");
    // Cut inside a block: the reader notices at EOF.
    for cut in 1..8 {
        let short = &enc[..enc.len() - cut];
        for step in [1, 7, 4096] {
            let err = decrypt_bf(short, PASSWORD, step).unwrap_err();
            assert!(matches!(legacy_err(&err), LegacyError::Truncated), "cut {cut}");
        }
    }
    // Cut inside the IV (including an empty file): new() fails.
    for len in 0..8 {
        let err = BlowfishReader::new(&enc[..len], PASSWORD, false).err().expect("truncated IV");
        assert!(matches!(err, LegacyError::Truncated));
    }
    // IV and a partial first block, with the gzip check: also Truncated.
    assert!(matches!(BlowfishReader::new(&enc[..12], PASSWORD, true), Err(LegacyError::Truncated)));
    let err = LegacyError::Truncated;
    assert_eq!(err.to_string(), "legacy archive is truncated (its length is not a multiple of 8)");

    // AES: a body that is not a multiple of 16, even if it is of 8; a header shorter than 16.
    let ae = vector_file("plain.txt.ae");
    for cut in [1, 8, 15] {
        let err = decrypt_aes(&ae[..ae.len() - cut], PASSWORD, 5).unwrap_err();
        assert!(matches!(legacy_err(&err), LegacyError::Truncated), "cut {cut}");
    }
    for len in [0, 8, 15] {
        assert!(matches!(AesReader::new(&ae[..len], PASSWORD, false), Err(LegacyError::Truncated)));
    }
}

#[test]
fn an_empty_body_decrypts_to_nothing() {
    // beefish: "If the ciphertext body is empty, nothing is truncated."
    let iv_only = &vector_file("plain.txt.enc")[..8];
    assert_eq!(decrypt_bf(iv_only, PASSWORD, 8).unwrap(), b"");
    let header_only = &vector_file("plain.txt.ae")[..16];
    assert_eq!(decrypt_aes(header_only, PASSWORD, 8).unwrap(), b"");
}

#[test]
fn bad_key_lengths_are_rejected() {
    let enc = vector_file("plain.txt.enc");
    for key in [vec![], vec![b'k'; 57], vec![b'k'; 200]] {
        let len = key.len();
        let expect = format!("legacy (bakthat 0.6) archives need a password of 1 to 56 bytes, got {len}");
        let err = BlowfishReader::new(&enc[..], &key, false).err().expect("bad key");
        assert!(matches!(err, LegacyError::BadKeyLength { len: l } if l == len));
        assert_eq!(err.to_string(), expect);
        let err = blowfish_encrypt(&b"x"[..], Vec::new(), &key).unwrap_err();
        assert!(matches!(err, LegacyError::BadKeyLength { len: l } if l == len));
        let err = blowfish_encrypt_with(b"x", &key, [0; 8], 0, 6).unwrap_err();
        assert!(matches!(err, LegacyError::BadKeyLength { len: l } if l == len));
    }
}

/// An inner reader that counts how much ciphertext was pulled.
struct Counting<'a> {
    data: &'a [u8],
    pulled: usize,
}

impl Read for Counting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.data.len() - self.pulled);
        buf[..n].copy_from_slice(&self.data[self.pulled..self.pulled + n]);
        self.pulled += n;
        Ok(n)
    }
}

#[test]
fn decryption_streams_instead_of_reading_everything() {
    let plain = pattern(4 * 1024 * 1024);
    let mut ct = Vec::new();
    blowfish_encrypt(&plain[..], &mut ct, PASSWORD).unwrap();
    let mut inner = Counting { data: &ct, pulled: 0 };
    let mut r = BlowfishReader::new(&mut inner, PASSWORD, false).unwrap();
    let mut first = [0u8; 100];
    r.read_exact(&mut first).unwrap();
    assert_eq!(first[..], plain[..100]);
    drop(r);
    assert!(inner.pulled <= 8 + 128 * 1024, "pulled {} bytes to return 100", inner.pulled);
}

#[test]
fn inner_io_errors_pass_through_unchanged() {
    struct Failing(usize);
    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::Error::new(io::ErrorKind::ConnectionReset, "store went away"));
            }
            let n = buf.len().min(self.0);
            buf[..n].fill(0);
            self.0 -= n;
            Ok(n)
        }
    }
    let r = BlowfishReader::new(Failing(100), PASSWORD, false).unwrap();
    let err = read_all_with(r, 64).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    assert!(LegacyError::from_io(&err).is_none());
    // In new() (IV read or gzip peek) the error is LegacyError::Io.
    assert!(matches!(BlowfishReader::new(Failing(3), PASSWORD, false), Err(LegacyError::Io(_))));
    assert!(matches!(BlowfishReader::new(Failing(8), PASSWORD, true), Err(LegacyError::Io(_))));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn prop_round_trip(
        plain in proptest::collection::vec(any::<u8>(), 0..3000),
        key in proptest::collection::vec(any::<u8>(), 1..=56),
        step in 1usize..600,
    ) {
        let mut ct = Vec::new();
        blowfish_encrypt(&plain[..], &mut ct, &key).unwrap();
        prop_assert_eq!(ct.len(), 8 + 8 * (plain.len() / 8 + 1));
        prop_assert_eq!(decrypt_bf(&ct, &key, step).unwrap(), plain);
    }

    #[test]
    fn prop_deterministic_matches_random_layout(
        plain in proptest::collection::vec(any::<u8>(), 0..100),
        pad_byte in any::<u8>(),
        flag_r in 6u8..=247,
    ) {
        let ct = blowfish_encrypt_with(&plain, PASSWORD, [7; 8], pad_byte, flag_r).unwrap();
        prop_assert_eq!(decrypt_bf(&ct, PASSWORD, 9).unwrap(), plain.clone());
        let last = raw_cbc_last_block(&ct, PASSWORD);
        let p = 8 - plain.len() % 8;
        prop_assert_eq!(usize::from(last[7]), usize::from(flag_r - flag_r % 8) + p);
        prop_assert!(last[8 - p..7].iter().all(|&b| b == pad_byte));
    }
}
