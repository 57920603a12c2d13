//! Compares deflate backends, zstd levels and member spans on a corpus file (run by scripts/bench-deflate.sh).
//!
//! Usage: deflate_compare FILE [GZIP6_SIZE]
//! Prints, per backend, level and span: compressed size, its ratio to `gzip -6`, and single-core MB/s for
//! compression and decompression.

use std::io::{Read, Write};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let data = std::fs::read(&args[1]).expect("reading the corpus");
    let gzip6: Option<f64> = args.get(2).and_then(|s| s.parse().ok());
    let mb = data.len() as f64 / 1e6;
    println!("corpus {:.1} MB, gzip -6 {}", mb, gzip6.map(|g| format!("{:.1} MB", g / 1e6)).unwrap_or("?".into()));
    println!(
        "{:<22} {:>8} {:>10} {:>8} {:>10} {:>10}",
        "backend", "span", "size MB", "/gzip6", "comp MB/s", "decomp MB/s"
    );
    let spans = [256usize << 10, 512 << 10, 1 << 20, 4 << 20];
    let report = |name: &str, span: usize, size: usize, ct: f64, dt: f64| {
        let ratio = gzip6.map(|g| format!("{:.3}", size as f64 / g)).unwrap_or("?".into());
        println!(
            "{name:<22} {:>7}K {:>10.1} {ratio:>8} {:>10.0} {:>10.0}",
            span >> 10,
            size as f64 / 1e6,
            mb / ct,
            mb / dt
        );
    };
    for level in [1, 2, 3, 4, 5, 6, 9] {
        for &span in if level == 6 { &spans[..] } else { &spans[1..2] } {
            let t = Instant::now();
            let members: Vec<Vec<u8>> =
                data.chunks(span).map(|c| bakthat::archive::members::compress_member(c, level)).collect();
            let ct = t.elapsed().as_secs_f64();
            let size: usize = members.iter().map(|m| m.len()).sum();
            let t = Instant::now();
            for m in &members {
                std::hint::black_box(bakthat::archive::members::inflate_member(m).unwrap());
            }
            report(&format!("libdeflate-{level}"), span, size, ct, t.elapsed().as_secs_f64());
        }
    }
    // zstd frames as `compression: zstd` writes them (content size and checksum in each frame).
    for level in [1, 2, 3, 4, 5, 6, 7, 9] {
        let span = spans[1];
        let z = bakthat::archive::codec::Compression::Zstd;
        let t = Instant::now();
        let members: Vec<Vec<u8>> = data.chunks(span).map(|c| bakthat::archive::codec::compress(z, c, level)).collect();
        let ct = t.elapsed().as_secs_f64();
        let size: usize = members.iter().map(|m| m.len()).sum();
        let t = Instant::now();
        for m in &members {
            std::hint::black_box(bakthat::archive::codec::decompress(m).unwrap());
        }
        report(&format!("zstd-{level}"), span, size, ct, t.elapsed().as_secs_f64());
    }
    for level in [6u32] {
        for &span in &spans[1..3] {
            let t = Instant::now();
            let members: Vec<Vec<u8>> = data
                .chunks(span)
                .map(|c| {
                    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
                    e.write_all(c).unwrap();
                    e.finish().unwrap()
                })
                .collect();
            let ct = t.elapsed().as_secs_f64();
            let size: usize = members.iter().map(|m| m.len()).sum();
            let t = Instant::now();
            for m in &members {
                let mut out = Vec::with_capacity(span);
                flate2::read::GzDecoder::new(&m[..]).read_to_end(&mut out).unwrap();
                std::hint::black_box(out);
            }
            report(&format!("flate2-zlib-rs-{level}"), span, size, ct, t.elapsed().as_secs_f64());
        }
    }
}
