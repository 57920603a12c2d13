//! Measures what a random read of one small file costs in a large encrypted archive (run by scripts/bench.sh).
//!
//! Usage: fetch_cost WORKDIR [BIG_FILES]
//!
//! Writes (once; reused when present) a source tree `WORKDIR/src5g` of BIG_FILES (default 1000) files of 5 MiB of
//! pseudo-random, partly compressible data, with one 4 KiB file after every fifth big file (200 by default). Packs
//! it encrypted with [`write_archive`] (realistic Argon2id defaults) into `WORKDIR/fetch5g.tgz.enc`, streaming to
//! disk, and prints the pack throughput and the index size. Then reads 50 random small files whole through
//! [`Decoder::read`] over a [`RangeRead`] that counts bytes and requests, checks their contents, and prints the
//! max/mean bytes fetched and requests per read, and whether the max stays within 2 MiB. The same is done for 50
//! random 4 KiB ranges inside big files.
//!
//! The target is a property of the format (span 512 KiB, 64 KiB encryption chunks), so the numbers do not depend
//! on the machine; the timings do.

use std::error::Error;
use std::fs::{self, File};
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bakthat::archive::crypto::{KdfParams, MasterKey, DEFAULT_CHUNK_SIZE};
use bakthat::archive::index::{Entry, EntryKind};
use bakthat::archive::pack::PackOptions;
use bakthat::archive::read::{Decoder, FileRange, RangeRead};
use bakthat::archive::{index_sidecar, write_archive, Encryption, Secret};
use rayon::prelude::*;

const BIG: usize = 5 << 20;
const SMALL: usize = 4 << 10;
const SMALL_EVERY: usize = 5;
const READS: usize = 50;
const LIMIT: u64 = 2 << 20;
const PASSWORD: &[u8] = b"fetch-cost-benchmark";

/// splitmix64: a tiny deterministic generator, so the tree and the samples are the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Contents of file `id`: per 4 KiB page, 2 KiB of random bytes then 2 KiB of text lines picked at random from a
/// few (deflate gets a bit under 2:1 overall).
fn content(id: u64, len: usize) -> Vec<u8> {
    const LINES: [&[u8]; 4] = [
        b"2026-01-01T00:00:00Z INFO  request served path=/api/v1/items ok\n",
        b"2026-01-01T00:00:01Z WARN  slow query table=backups took=1200ms\n",
        b"2026-01-01T00:00:02Z DEBUG cache hit key=member:000042 size=512K\n",
        b"2026-01-01T00:00:03Z ERROR upload failed; retrying in 2 s (3/5)\n",
    ];
    let mut rng = Rng(id.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 0x5eed);
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        for _ in 0..256 {
            out.extend_from_slice(&rng.next().to_le_bytes());
        }
        for _ in 0..32 {
            out.extend_from_slice(LINES[rng.below(4) as usize]);
        }
    }
    out.truncate(len);
    out
}

fn big_path(root: &Path, i: usize) -> PathBuf {
    root.join(format!("d{:02}", i / 100)).join(format!("f{i:04}.dat"))
}

fn small_path(root: &Path, i: usize) -> PathBuf {
    root.join(format!("d{:02}", i / 100)).join(format!("f{i:04}_small.txt"))
}

fn small_id(i: usize) -> u64 {
    1_000_000 + i as u64
}

/// Writes the source tree unless a marker says the same tree is already there.
fn make_tree(root: &Path, marker: &Path, big_files: usize) -> Result<(), Box<dyn Error>> {
    let stamp = format!("big={big_files} size={BIG} small={SMALL} every={SMALL_EVERY} v1\n");
    if fs::read_to_string(marker).ok().as_deref() == Some(stamp.as_str()) {
        println!("source tree: reusing {}", root.display());
        return Ok(());
    }
    let _ = fs::remove_file(marker);
    if root.exists() {
        fs::remove_dir_all(root)?;
    }
    let t = Instant::now();
    (0..big_files).into_par_iter().try_for_each(|i| -> Result<(), std::io::Error> {
        let p = big_path(root, i);
        fs::create_dir_all(p.parent().unwrap_or(root))?;
        fs::write(&p, content(i as u64, BIG))?;
        if i % SMALL_EVERY == 0 {
            fs::write(small_path(root, i), content(small_id(i), SMALL))?;
        }
        Ok(())
    })?;
    fs::write(marker, stamp)?;
    let bytes = big_files * BIG + big_files.div_ceil(SMALL_EVERY) * SMALL;
    println!("source tree: wrote {:.2} GB in {:.1} s", bytes as f64 / 1e9, t.elapsed().as_secs_f64());
    Ok(())
}

/// A range source that counts what is asked of it.
struct Counting<'a> {
    inner: &'a dyn RangeRead,
    bytes: AtomicU64,
    requests: AtomicU64,
}

impl Counting<'_> {
    fn take(&self) -> (u64, u64) {
        (self.bytes.swap(0, Ordering::Relaxed), self.requests.swap(0, Ordering::Relaxed))
    }
}

impl RangeRead for Counting<'_> {
    fn len(&self) -> u64 {
        self.inner.len()
    }

    fn read_range(&self, start: u64, len: u64) -> std::io::Result<Vec<u8>> {
        let out = self.inner.read_range(start, len)?;
        self.bytes.fetch_add(out.len() as u64, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        Ok(out)
    }
}

fn peak_rss_mib() -> f64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage only writes into the struct we pass.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return f64::NAN;
    }
    ru.ru_maxrss as f64 / 1024.0
}

struct Stats {
    bytes: Vec<u64>,
    requests: Vec<u64>,
    secs: f64,
}

impl Stats {
    fn print(&self, what: &str) -> bool {
        let n = self.bytes.len() as f64;
        let max = self.bytes.iter().copied().max().unwrap_or(0);
        let mean = self.bytes.iter().sum::<u64>() as f64 / n;
        let rmax = self.requests.iter().copied().max().unwrap_or(0);
        let rmean = self.requests.iter().sum::<u64>() as f64 / n;
        let ok = max <= LIMIT;
        println!(
            "{what}: {} reads; fetched max {:.0} KiB, mean {:.0} KiB; requests max {rmax}, mean {rmean:.2}; \
             {:.1} ms per read; max <= 2 MiB: {}",
            self.bytes.len(),
            max as f64 / 1024.0,
            mean / 1024.0,
            self.secs * 1000.0 / n,
            if ok { "PASS" } else { "MISS" }
        );
        ok
    }
}

fn measure(
    decoder: &Decoder<'_>,
    counter: &Counting<'_>,
    reads: &[(&Entry, u64, u64, Vec<u8>)],
) -> Result<Stats, Box<dyn Error>> {
    let mut stats = Stats { bytes: Vec::new(), requests: Vec::new(), secs: 0.0 };
    let t = Instant::now();
    for (entry, offset, len, expected) in reads {
        counter.take();
        let got = decoder.read(entry, *offset, *len)?;
        let (b, r) = counter.take();
        if &got != expected {
            return Err(format!("wrong bytes read from {}", String::from_utf8_lossy(&entry.path)).into());
        }
        stats.bytes.push(b);
        stats.requests.push(r);
    }
    stats.secs = t.elapsed().as_secs_f64();
    Ok(stats)
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    let Some(work) = args.get(1).map(PathBuf::from) else {
        return Err("usage: fetch_cost WORKDIR [BIG_FILES]".into());
    };
    let big_files: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(1000);
    fs::create_dir_all(&work)?;
    let root = work.join("src5g");
    make_tree(&root, &work.join("src5g.done"), big_files)?;

    // Realistic key derivation: the library's default Argon2id parameters.
    let params = KdfParams::default();
    let t = Instant::now();
    let master = Arc::new(MasterKey::derive(PASSWORD, MasterKey::random_salt(), params)?);
    let kdf_secs = t.elapsed().as_secs_f64();
    println!(
        "argon2id m={} KiB t={} p={}: {:.2} s per derivation",
        params.m_cost_kib, params.t_cost, params.parallelism, kdf_secs
    );
    let enc = Encryption { master, chunk_size: DEFAULT_CHUNK_SIZE };

    let archive = work.join("fetch5g.tgz.enc");
    let t = Instant::now();
    let out = BufWriter::with_capacity(1 << 20, File::create(&archive)?);
    let (report, out) = write_archive(&root, "src5g", &PackOptions::default(), Some(&enc), out)?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    let pack_secs = t.elapsed().as_secs_f64();
    let index = report.index;
    println!(
        "pack: {} files, {:.2} GB -> {:.2} GB ({:.3}) in {:.1} s = {:.0} MB/s (encrypted, {} threads, incl. fsync); \
         peak RSS {:.0} MiB",
        report.files,
        report.bytes as f64 / 1e9,
        index.stored_len as f64 / 1e9,
        index.stored_len as f64 / report.bytes as f64,
        pack_secs,
        report.bytes as f64 / 1e6 / pack_secs,
        rayon::current_num_threads(),
        peak_rss_mib()
    );
    let plain_index = index.to_bytes().len();
    let sidecar = index_sidecar(&index, Some(&enc)).len();
    println!(
        "index: {} entries, {} members; serialized {} bytes ({:.0} KiB), encrypted sidecar {} bytes",
        index.entries.len(),
        index.members.len(),
        plain_index,
        plain_index as f64 / 1024.0,
        sidecar
    );

    // Reads go through a fresh password, as a later `mount` or `cat` would: one derivation, then only ranges.
    let file = FileRange::open(&archive)?;
    let counter = Counting { inner: &file, bytes: AtomicU64::new(0), requests: AtomicU64::new(0) };
    let secret = Secret::new(PASSWORD);
    let t = Instant::now();
    let decoder = Decoder::new(&index, &counter, Some(secret.keys()))?;
    println!(
        "open: key derivation and key check {:.2} s; fetched {} bytes",
        t.elapsed().as_secs_f64(),
        counter.take().0
    );

    let mut rng = Rng(std::env::var("FETCH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(42));
    let entry_of = |p: &Path| -> Result<&Entry, Box<dyn Error>> {
        let rel = p.strip_prefix(&root)?;
        let name = format!("src5g/{}", rel.display());
        let e = index.entry(name.as_bytes()).ok_or_else(|| format!("{name} is not in the index"))?;
        if e.kind != EntryKind::File {
            return Err(format!("{name} is not a file").into());
        }
        Ok(e)
    };
    let smalls: Vec<usize> = (0..big_files).step_by(SMALL_EVERY).collect();
    let mut small_reads = Vec::new();
    for _ in 0..READS {
        let i = smalls[rng.below(smalls.len() as u64) as usize];
        small_reads.push((entry_of(&small_path(&root, i))?, 0, SMALL as u64, content(small_id(i), SMALL)));
    }
    let mut range_reads = Vec::new();
    for _ in 0..READS {
        let i = rng.below(big_files as u64) as usize;
        let off = rng.below((BIG - SMALL) as u64);
        let data = content(i as u64, BIG);
        range_reads.push((entry_of(&big_path(&root, i))?, off, SMALL as u64, data[off as usize..][..SMALL].to_vec()));
    }
    let small_ok = measure(&decoder, &counter, &small_reads)?.print("random 4 KiB files, read whole");
    let range_ok = measure(&decoder, &counter, &range_reads)?.print("random 4 KiB ranges inside 5 MiB files");
    println!("fetch target (max <= 2 MiB per 4 KiB read): {}", if small_ok && range_ok { "PASS" } else { "MISS" });
    Ok(())
}
