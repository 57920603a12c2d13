use std::io::{Read, Write};

use super::*;
use proptest::prelude::*;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

/// Cheap Argon2 parameters so tests stay fast in debug builds.
const CHEAP: KdfParams = KdfParams { m_cost_kib: 256, t_cost: 1, parallelism: 1 };

fn cheap_master(password: &[u8]) -> MasterKey {
    MasterKey::derive(password, MasterKey::random_salt(), CHEAP).unwrap()
}

fn random_bytes(len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    getrandom::getrandom(&mut data).unwrap();
    data
}

/// Encrypts through `EncryptWriter`, cycling through `write_sizes` (all >= 1) for the write calls.
fn encrypt(master: &MasterKey, data: &[u8], chunk_size: u32, write_sizes: &[usize]) -> Vec<u8> {
    let mut writer = EncryptWriter::new(Vec::new(), master, chunk_size).unwrap();
    let mut rest = data;
    let mut sizes = write_sizes.iter().cycle();
    while !rest.is_empty() {
        let n = (*sizes.next().unwrap()).min(rest.len());
        let written = writer.write(&rest[..n]).unwrap();
        assert!(written > 0);
        rest = &rest[written..];
    }
    writer.finish().unwrap()
}

/// Reads a `DecryptReader` to the end with the given buffer sizes; returns what it released and the error.
fn read_all<R: Read>(reader: &mut DecryptReader<R>, buf_sizes: &[usize]) -> (Vec<u8>, Option<CryptoError>) {
    let mut out = Vec::new();
    let mut buf = vec![0u8; buf_sizes.iter().copied().max().unwrap_or(1)];
    for &size in buf_sizes.iter().cycle() {
        match reader.read(&mut buf[..size]) {
            Ok(0) => return (out, None),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => {
                assert_eq!(e.kind(), io::ErrorKind::InvalidData);
                return (out, Some(CryptoError::from_io(e)));
            }
        }
    }
    unreachable!("cycle never ends")
}

/// Full decryption through `DecryptReader`: the plaintext released before any error, and the error.
fn decrypt(cache: &KeyCache, ct: &[u8]) -> (Vec<u8>, Option<CryptoError>) {
    match DecryptReader::new(ct, cache) {
        Ok(mut reader) => read_all(&mut reader, &[4096]),
        Err(e) => (Vec::new(), Some(e)),
    }
}

fn expected_len(data_len: usize, c: usize) -> usize {
    let n = data_len.div_ceil(c).max(1);
    HEADER_LEN + (n - 1) * (c + 64) + sealed_len(data_len - (n - 1) * c)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn round_trip(
        len in prop_oneof![0usize..64, 0usize..300 * 1024],
        chunk_blocks in 1u32..=512,
        password in "\\PC{0,24}",
        write_sizes in prop::collection::vec(1usize..5000, 1..8),
        read_sizes in prop::collection::vec(1usize..5000, 1..8),
    ) {
        let chunk_size = chunk_blocks * 16;
        let data = random_bytes(len);
        let master = MasterKey::derive(password.as_bytes(), MasterKey::random_salt(), CHEAP).unwrap();
        let ct = encrypt(&master, &data, chunk_size, &write_sizes);
        prop_assert_eq!(ct.len(), expected_len(len, chunk_size as usize));
        let cache = KeyCache::new(password.as_bytes());
        let mut reader = DecryptReader::new(&ct[..], &cache).unwrap();
        let (out, err) = read_all(&mut reader, &read_sizes);
        prop_assert!(err.is_none(), "{:?}", err);
        prop_assert!(out == data, "plaintext differs");
        prop_assert_eq!(decrypt_bytes(&cache, &ct).unwrap(), data);
    }

    #[test]
    fn decrypt_range_reads_only_the_covering_chunks(
        len in 0usize..20_000,
        chunk_blocks in 1u32..=64,
        ranges in prop::collection::vec((0u64..21_000, 0u64..6000), 1..12),
    ) {
        let chunk_size = chunk_blocks * 16;
        let c = u64::from(chunk_size);
        let data = random_bytes(len);
        let master = cheap_master(b"range");
        let ct = encrypt(&master, &data, chunk_size, &[7000]);
        let keys = FileKeys::open(&Header::parse(&ct).unwrap(), &master).unwrap();
        let total = ct.len() as u64;
        let n_chunks = (len as u64).div_ceil(c).max(1);
        for (start, span) in ranges {
            let end = start + span;
            let calls = AtomicU64::new(0);
            let fetched = AtomicU64::new(0);
            let fetch = |at: u64, n: u64| -> io::Result<Vec<u8>> {
                calls.fetch_add(1, Ordering::Relaxed);
                fetched.fetch_add(n, Ordering::Relaxed);
                Ok(ct[at as usize..(at + n) as usize].to_vec())
            };
            let got = decrypt_range(&keys, total, &fetch, start, end).unwrap();
            let lo = (start as usize).min(len);
            let hi = (end as usize).clamp(lo, len);
            prop_assert!(got == data[lo..hi], "range {}..{} of {}", start, end, len);
            // Exactly the chunks covering the range (clamped to the chunks that exist) were fetched, once.
            let (cs, ce) = ciphertext_range(keys.header(), total, start, end);
            prop_assert_eq!(fetched.load(Ordering::Relaxed), ce - cs);
            if start >= end || start / c >= n_chunks {
                prop_assert_eq!(calls.load(Ordering::Relaxed), 0);
            } else {
                let first = start / c;
                let last = ((end - 1) / c).min(n_chunks - 1);
                prop_assert_eq!(calls.load(Ordering::Relaxed), 1);
                prop_assert_eq!(cs, HEADER_LEN as u64 + first * (c + 64));
                prop_assert_eq!(ce, (HEADER_LEN as u64 + (last + 1) * (c + 64)).min(total));
            }
        }
    }
}

#[test]
fn sizes_follow_the_format() {
    let master = cheap_master(b"pw");
    // Empty plaintext: exactly one empty final chunk.
    assert_eq!(encrypt(&master, b"", 64, &[1]).len(), HEADER_LEN + 64);
    // A multiple of C ends with a full chunk and no extra empty one.
    assert_eq!(encrypt(&master, &[1; 128], 64, &[5]).len(), HEADER_LEN + 2 * (64 + 64));
    assert_eq!(encrypt(&master, &[1; 129], 64, &[5]).len(), HEADER_LEN + 2 * (64 + 64) + 64);
    assert_eq!(encrypt_bytes(&master, b"").len(), HEADER_LEN + 64);
    // Larger writes are split across batches and still come back.
    let data = random_bytes(3 * 16 * 64 + 5);
    let ct = encrypt(&master, &data, 64, &[100_000]);
    assert_eq!(decrypt(&KeyCache::new(b"pw"), &ct).0, data);
}

#[test]
fn header_round_trips_and_is_recognized() {
    let master = cheap_master(b"pw");
    let ct = encrypt_bytes(&master, b"hello");
    let header = Header::parse(&ct).unwrap();
    assert_eq!(header.to_bytes()[..], ct[..HEADER_LEN]);
    assert_eq!(header.params, CHEAP);
    assert_eq!(header.salt, master.salt());
    assert_eq!(header.chunk_size, DEFAULT_CHUNK_SIZE);
    assert!(is_v1(&ct));
    assert!(is_v1(&MAGIC));
    assert!(!is_v1(&MAGIC[..7]));
    assert!(!is_v1(b"Salted__whatever"));
    // A second file under the same master key gets another file id.
    assert_ne!(Header::parse(&encrypt_bytes(&master, b"hello")).unwrap().file_id, header.file_id);
}

#[test]
fn header_errors_guide_the_user() {
    let master = cheap_master(b"pw");
    let ct = encrypt_bytes(&master, b"data");
    assert!(matches!(Header::parse(b"\x1f\x8b\x08 gzip"), Err(CryptoError::NotEncrypted)));
    assert!(matches!(Header::parse(&ct[..89]), Err(CryptoError::Truncated)));
    assert!(matches!(Header::parse(&ct[..5]), Err(CryptoError::Truncated)));
    assert!(matches!(Header::parse(b""), Err(CryptoError::Truncated)));
    let mut v2 = ct.clone();
    v2[8] = 2;
    assert!(matches!(Header::parse(&v2), Err(CryptoError::UnsupportedVersion(2))));
    let mut kdf = ct.clone();
    kdf[9] = 9;
    assert!(matches!(Header::parse(&kdf), Err(CryptoError::UnsupportedKdf(9))));
    let mut huge = ct.clone();
    huge[10..14].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(Header::parse(&huge), Err(CryptoError::BadHeader(_))));
    let mut chunk = ct.clone();
    chunk[54..58].copy_from_slice(&100u32.to_le_bytes());
    assert!(matches!(Header::parse(&chunk), Err(CryptoError::BadHeader(_))));

    assert_eq!(CryptoError::WrongPassword.to_string(), "wrong password (the archive's key check does not match)");
    assert_eq!(
        CryptoError::Integrity { chunk: 3 }.to_string(),
        "archive is corrupt or was tampered with: chunk 3 failed authentication"
    );
    assert_eq!(CryptoError::Truncated.to_string(), "archive is truncated");
    assert!(matches!(
        EncryptWriter::new(Vec::new(), &master, 100).map_err(CryptoError::from_io),
        Err(CryptoError::InvalidChunkSize(100))
    ));
    assert!(matches!(
        MasterKey::derive(b"pw", [0; 16], KdfParams { m_cost_kib: 256, t_cost: 0, parallelism: 1 }),
        Err(CryptoError::Kdf(_))
    ));
}

/// A ~3-chunk object: chunk size 1024, 2500 bytes of plaintext.
fn three_chunks(password: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let data = random_bytes(2500);
    let ct = encrypt(&cheap_master(password), &data, 1024, &[333]);
    assert_eq!(ct.len(), HEADER_LEN + 2 * 1088 + 512);
    (data, ct)
}

#[test]
fn every_single_byte_flip_is_detected() {
    let (data, ct) = three_chunks(b"pw");
    let cache = KeyCache::new(b"pw");
    assert_eq!(decrypt(&cache, &ct).0, data);
    for pos in 0..ct.len() {
        let mut bad = ct.clone();
        bad[pos] ^= 0x01;
        if pos < HEADER_LEN {
            // Header damage is reported by new(), before any chunk is read.
            let err = DecryptReader::new(&bad[..], &cache).err();
            let ok = match pos {
                0..=7 => matches!(err, Some(CryptoError::NotEncrypted)),
                8 => matches!(err, Some(CryptoError::UnsupportedVersion(_))),
                9 => matches!(err, Some(CryptoError::UnsupportedKdf(_))),
                // Argon2 parameters and chunk size: out of range, or a different key.
                10..=21 | 54..=57 => matches!(err, Some(CryptoError::WrongPassword | CryptoError::BadHeader(_))),
                _ => matches!(err, Some(CryptoError::WrongPassword)),
            };
            assert!(ok, "flip at {pos}: {err:?}");
            assert!(decrypt_bytes(&cache, &bad).is_err());
        } else {
            let chunk = ((pos - HEADER_LEN) / 1088) as u64;
            let (out, err) = decrypt(&cache, &bad);
            assert!(matches!(err, Some(CryptoError::Integrity { chunk: c }) if c == chunk), "flip at {pos}: {err:?}");
            assert!(out.len() as u64 <= chunk * 1024 && out == data[..out.len()], "flip at {pos}");
            assert!(matches!(decrypt_bytes(&cache, &bad), Err(CryptoError::Integrity { chunk: c }) if c == chunk));
        }
    }
}

#[test]
fn chunks_holding_more_than_the_chunk_size_are_rejected() {
    // Only a writer holding the keys can make these (PKCS#7 lets a C + 64 byte chunk carry up to C + 15
    // bytes); readers still refuse them, so every reader agrees on the plaintext.
    let master = cheap_master(b"pw");
    let keys = FileKeys::create(&master, 32).unwrap();
    let seal = |index: u64, last: bool, pt: &[u8]| {
        let mut out = vec![0u8; sealed_len(pt.len())];
        keys.seal_chunk(index, last, &[9; 16], pt, &mut out);
        out
    };
    let header = keys.header().to_bytes();
    let cache = KeyCache::new(b"pw");
    let long_middle = [&header[..], &seal(0, false, &[1; 37]), &seal(1, true, &[2; 3])].concat();
    assert!(matches!(decrypt(&cache, &long_middle).1, Some(CryptoError::Integrity { chunk: 0 })));
    let long_last = [&header[..], &seal(0, false, &[1; 32]), &seal(1, true, &[2; 40])].concat();
    assert!(matches!(decrypt(&cache, &long_last).1, Some(CryptoError::Integrity { chunk: 1 })));
    let fine = [&header[..], &seal(0, false, &[1; 32]), &seal(1, true, &[2; 32])].concat();
    assert_eq!(decrypt(&cache, &fine).0, [[1; 32], [2; 32]].concat());
}

#[test]
fn a_failing_chunk_releases_only_earlier_batches() {
    // 40 chunks of 16 bytes: batches of 16, so chunk 20 sits in the second batch.
    let master = cheap_master(b"pw");
    let data = random_bytes(40 * 16);
    let ct = encrypt(&master, &data, 16, &[50]);
    let cache = KeyCache::new(b"pw");
    let mut bad = ct.clone();
    bad[HEADER_LEN + 20 * 80 + 30] ^= 0x01;
    let mut reader = DecryptReader::new(&bad[..], &cache).unwrap();
    let (out, err) = read_all(&mut reader, &[7]);
    assert!(matches!(err, Some(CryptoError::Integrity { chunk: 20 })), "{err:?}");
    assert_eq!(out, data[..16 * 16]);
    // The reader stays failed.
    let e = reader.read(&mut [0u8; 8]).unwrap_err();
    assert!(matches!(CryptoError::from_io(e), CryptoError::Integrity { chunk: 20 }));
}

#[test]
fn every_truncation_fails() {
    let (data, ct) = three_chunks(b"pw");
    let cache = KeyCache::new(b"pw");
    for len in 0..ct.len() {
        let (out, err) = decrypt(&cache, &ct[..len]);
        let err = err.unwrap_or_else(|| panic!("truncation to {len} bytes was accepted"));
        assert!(matches!(err, CryptoError::Truncated | CryptoError::Integrity { .. }), "truncation to {len}: {err:?}");
        assert!(out.len() < data.len() && out == data[..out.len()]);
        assert!(decrypt_bytes(&cache, &ct[..len]).is_err());
    }
    // Cut exactly at a chunk boundary: chunk 1 is now the final one, and its tag says it is not.
    let (_, err) = decrypt(&cache, &ct[..HEADER_LEN + 2 * 1088]);
    assert!(matches!(err, Some(CryptoError::Integrity { chunk: 1 })), "{err:?}");
}

#[test]
fn reordered_or_extended_chunks_fail() {
    let (_, ct) = three_chunks(b"pw");
    let cache = KeyCache::new(b"pw");
    let chunk = |i: usize| &ct[HEADER_LEN + i * 1088..(HEADER_LEN + (i + 1) * 1088).min(ct.len())];
    let swapped = [&ct[..HEADER_LEN], chunk(1), chunk(0), chunk(2)].concat();
    assert!(matches!(decrypt(&cache, &swapped).1, Some(CryptoError::Integrity { chunk: 0 })));
    let copied = [&ct[..], chunk(1)].concat();
    assert!(matches!(decrypt(&cache, &copied).1, Some(CryptoError::Integrity { chunk: 2 })));
    let last_twice = [&ct[..], chunk(2)].concat();
    assert!(matches!(decrypt(&cache, &last_twice).1, Some(CryptoError::Integrity { chunk: 2 })));
    // A chunk of another file under the same password and salt does not fit either.
    let master = cache.master(Header::parse(&ct).unwrap().salt, CHEAP).unwrap();
    let other = encrypt(&master, &random_bytes(2500), 1024, &[4096]);
    let spliced = [&ct[..HEADER_LEN + 1088], &other[HEADER_LEN + 1088..]].concat();
    assert!(matches!(decrypt(&cache, &spliced).1, Some(CryptoError::Integrity { chunk: 1 })));
}

/// Counts the bytes read through it.
struct Counting<'a> {
    data: &'a [u8],
    read: usize,
}

impl Read for Counting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (&self.data[self.read..]).read(buf)?;
        self.read += n;
        Ok(n)
    }
}

#[test]
fn wrong_password_fails_before_data_is_read() {
    let (_, ct) = three_chunks("pässwörd".as_bytes());
    let mut counting = Counting { data: &ct, read: 0 };
    let err = DecryptReader::new(&mut counting, &KeyCache::new(b"passwort")).unwrap_err();
    assert!(matches!(err, CryptoError::WrongPassword), "{err:?}");
    assert_eq!(counting.read, HEADER_LEN);
    assert!(matches!(decrypt_bytes(&KeyCache::new(b""), &ct), Err(CryptoError::WrongPassword)));
    let keys = KeyCache::new("pässwörd".as_bytes()).open(&Header::parse(&ct).unwrap()).unwrap();
    let fetch = |_: u64, _: u64| -> io::Result<Vec<u8>> { panic!("nothing to fetch") };
    assert!(decrypt_range(&keys, 50, &fetch, 0, 10).is_err());
}

#[test]
fn key_cache_derives_once_per_salt_and_params() {
    let master = cheap_master(b"pw");
    let objects: Vec<Vec<u8>> = (0..8).map(|i| encrypt_bytes(&master, &[i; 100])).collect();
    let cache = KeyCache::new(b"pw");
    std::thread::scope(|s| {
        for (i, ct) in objects.iter().enumerate() {
            let cache = &cache;
            s.spawn(move || assert_eq!(decrypt_bytes(cache, ct).unwrap(), [i as u8; 100]));
        }
    });
    assert_eq!(cache.derivations(), 1);
    let other_salt = encrypt_bytes(&cheap_master(b"pw"), b"x");
    assert_eq!(decrypt_bytes(&cache, &other_salt).unwrap(), b"x");
    assert_eq!(cache.derivations(), 2);
    // A key inserted from the writer side needs no derivation at all.
    let seeded = KeyCache::new(b"pw");
    seeded.insert(Arc::new(master.clone()));
    assert_eq!(decrypt_bytes(&seeded, &objects[0]).unwrap(), [0; 100]);
    assert_eq!(seeded.derivations(), 0);
    // A master key for another salt is refused rather than reported as a wrong password.
    let header = Header::parse(&other_salt).unwrap();
    assert!(matches!(FileKeys::open(&header, &master), Err(CryptoError::Kdf(_))));
}

#[test]
fn writer_holds_back_the_newest_chunk() {
    let master = cheap_master(b"pw");
    let c = 64usize;
    let batch = batch_chunks(c);
    let mut writer = EncryptWriter::new(Vec::new(), &master, c as u32).unwrap();
    assert_eq!(writer.get_ref().len(), HEADER_LEN);
    writer.write_all(&vec![5; batch * c]).unwrap();
    writer.flush().unwrap();
    // A full batch is buffered, but its last chunk's flag is unknown until more data arrives.
    assert_eq!(writer.get_ref().len(), HEADER_LEN);
    writer.write_all(&[6]).unwrap();
    assert_eq!(writer.get_ref().len(), HEADER_LEN + batch * (c + 64));
    let ct = writer.finish().unwrap();
    assert_eq!(ct.len(), HEADER_LEN + batch * (c + 64) + 64);
    let mut expected = vec![5; batch * c];
    expected.push(6);
    assert_eq!(decrypt_bytes(&KeyCache::new(b"pw"), &ct).unwrap(), expected);
}

#[test]
fn plaintext_len_reads_only_the_final_chunk() {
    let master = cheap_master(b"pw");
    for len in [0usize, 1, 1023, 1024, 1025, 5000] {
        let data = random_bytes(len);
        let ct = encrypt(&master, &data, 1024, &[999]);
        let keys = FileKeys::open(&Header::parse(&ct).unwrap(), &master).unwrap();
        let fetched = AtomicU64::new(0);
        let fetch = |at: u64, n: u64| -> io::Result<Vec<u8>> {
            fetched.fetch_add(n, Ordering::Relaxed);
            Ok(ct[at as usize..(at + n) as usize].to_vec())
        };
        assert_eq!(plaintext_len(&keys, ct.len() as u64, &fetch).unwrap(), len as u64);
        assert!(fetched.load(Ordering::Relaxed) <= 1024 + 64);
        assert_eq!(decrypt_range(&keys, ct.len() as u64, &fetch, 0, u64::MAX).unwrap(), data);
    }
}

#[test]
fn inner_io_errors_pass_through_and_reads_resume() {
    struct Flaky<'a> {
        data: &'a [u8],
        calls: usize,
    }
    impl Read for Flaky<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.calls += 1;
            if self.calls % 3 == 0 {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "flaky"));
            }
            let n = buf.len().min(100);
            (&mut self.data).read(&mut buf[..n])
        }
    }
    let master = cheap_master(b"pw");
    let data = random_bytes(10_000);
    let ct = encrypt(&master, &data, 256, &[4096]);
    let mut flaky = Flaky { data: &ct, calls: 1 };
    // The header read may hit the flaky error too; retry new() until it gets through.
    let mut reader = loop {
        match DecryptReader::new(&mut flaky, &KeyCache::new(b"pw")) {
            Ok(r) => break r,
            Err(CryptoError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::TimedOut),
            Err(e) => panic!("{e:?}"),
        }
        flaky = Flaky { data: &ct, calls: 1 };
    };
    let mut out = Vec::new();
    let mut buf = [0u8; 333];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::TimedOut),
        }
    }
    assert_eq!(out, data);
}

#[test]
fn default_parameters_round_trip() {
    let params = KdfParams::default();
    assert_eq!(params, KdfParams { m_cost_kib: 65536, t_cost: 3, parallelism: 1 });
    let master = MasterKey::derive(b"correct horse", MasterKey::random_salt(), params).unwrap();
    let data = random_bytes(200_000);
    let ct = encrypt(&master, &data, DEFAULT_CHUNK_SIZE, &[8192]);
    let header = Header::parse(&ct).unwrap();
    assert_eq!((header.params, header.chunk_size), (params, DEFAULT_CHUNK_SIZE));
    let cache = KeyCache::new(b"correct horse");
    cache.insert(Arc::new(master));
    assert_eq!(decrypt(&cache, &ct).0, data);
    assert_eq!(cache.derivations(), 0);
}

/// Throughput of the streaming writer and reader. 256 MiB in release builds, 8 MiB in debug builds; run with
/// `cargo test --release --lib archive::crypto::tests::throughput -- --nocapture` to see the numbers.
#[test]
fn throughput() {
    let size = if cfg!(debug_assertions) { 8 << 20 } else { 256 << 20 };
    let data = random_bytes(size);
    let master = cheap_master(b"pw");
    let start = Instant::now();
    let mut writer =
        EncryptWriter::new(Vec::with_capacity(size + size / 512 + 4096), &master, DEFAULT_CHUNK_SIZE).unwrap();
    for piece in data.chunks(128 * 1024) {
        writer.write_all(piece).unwrap();
    }
    let ct = writer.finish().unwrap();
    let enc = start.elapsed();
    let cache = KeyCache::new(b"pw");
    cache.insert(Arc::new(master));
    let start = Instant::now();
    let mut reader = DecryptReader::new(&ct[..], &cache).unwrap();
    let mut out = Vec::with_capacity(size);
    reader.read_to_end(&mut out).unwrap();
    let dec = start.elapsed();
    assert!(out == data);
    let mb = size as f64 / 1e6;
    eprintln!(
        "throughput over {} MiB on {} rayon threads: EncryptWriter {:.0} MB/s, DecryptReader {:.0} MB/s",
        size >> 20,
        rayon::current_num_threads(),
        mb / enc.as_secs_f64(),
        mb / dec.as_secs_f64()
    );
}
