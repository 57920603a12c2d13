use super::*;
use std::io::Write;

fn sample(n: usize) -> Vec<u8> {
    (0..n).map(|i| ((i * 7 + i / 300) % 251) as u8).collect()
}

/// A stream as pack writes it: the members, then the compression's trailer.
fn stream(c: Compression, parts: &[Vec<u8>], level: i32) -> Vec<u8> {
    let members: Vec<Vec<u8>> = parts.iter().map(|p| compress(c, p, level)).collect();
    let lens: Vec<MemberLens> =
        members.iter().zip(parts).map(|(m, p)| MemberLens { clen: m.len() as u32, ulen: p.len() as u32 }).collect();
    let mut out = members.concat();
    out.extend(trailer(c, &lens));
    out
}

fn all_blocks(mut b: Box<dyn Blocks + '_>) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(block) = b.next_block()? {
        assert!(!block.is_empty());
        out.extend_from_slice(&block);
    }
    Ok(out)
}

#[test]
fn both_codecs_read_many_members_and_report_offsets() {
    for c in Compression::ALL {
        let parts: Vec<Vec<u8>> = (0..9).map(|i| sample(10_000 + i * 3000)).collect();
        let s = stream(c, &parts, default_level(c));
        assert_eq!(sniff(&s), Some(c));
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let s2 = seen.clone();
        let mut r =
            ParallelInflate::new(&s[..], c, 4).with_observer(Box::new(move |off, l| s2.lock().unwrap().push((off, l))));
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, parts.concat(), "{c}");
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 9);
        assert_eq!(seen[1].0, seen[0].1.clen as u64);
        let mut out = Vec::new();
        open(&s[..], 3).unwrap().read_to_end(&mut out).unwrap();
        assert_eq!(out, parts.concat(), "{c} through open");
    }
}

#[test]
fn truncated_streams_are_errors() {
    for c in Compression::ALL {
        let s = stream(c, &[sample(50_000), sample(60_000)], 3);
        for cut in [10, s.len() / 2, s.len() - 3] {
            let mut r = open(&s[..cut], 2).unwrap();
            assert!(r.read_to_end(&mut Vec::new()).is_err(), "{c} cut at {cut}");
        }
    }
    // A zstd archive cut exactly at a frame boundary lacks its seek table: an error, not a shorter archive.
    let one = compress(Compression::Zstd, &sample(1000), 3);
    let two = [one.clone(), one.clone()].concat();
    let err = open(&two[..], 2).unwrap().read_to_end(&mut Vec::new()).unwrap_err();
    assert!(err.to_string().contains("ends before its seek table"), "{err}");
}

#[test]
fn blocks_give_the_same_bytes_as_reading() {
    for c in Compression::ALL {
        // Members (one of them empty), handed out whole.
        let parts: Vec<Vec<u8>> = [10_000, 0, 70_000, 3].iter().map(|&n| sample(n)).collect();
        let s = stream(c, &parts, 4);
        assert_eq!(all_blocks(open_blocks(&s[..], 2).unwrap()).unwrap(), parts.concat());
        // A partly read member continues where the reader stopped.
        let mut g = ParallelInflate::new(&s[..], c, 2);
        let mut head = [0u8; 100];
        g.read_exact(&mut head).unwrap();
        let mut rest = head.to_vec();
        rest.extend(all_blocks(Box::new(g)).unwrap());
        assert_eq!(rest, parts.concat());
    }
    // Foreign gzip, in 1 MiB blocks; a truncated stream is an error.
    let data = sample(2_500_000);
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(1));
    enc.write_all(&data).unwrap();
    let gz = enc.finish().unwrap();
    assert_eq!(all_blocks(open_blocks(&gz[..], 2).unwrap()).unwrap(), data);
    assert!(all_blocks(open_blocks(&gz[..gz.len() - 5], 2).unwrap()).is_err());
}

#[test]
fn foreign_gzip_falls_back_to_flate2_and_other_bytes_are_refused() {
    let data = sample(100_000);
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(9));
    enc.write_all(&data).unwrap();
    let gz = enc.finish().unwrap();
    let mut out = Vec::new();
    open(&gz[..], 4).unwrap().read_to_end(&mut out).unwrap();
    assert_eq!(out, data);
    assert!(open(&b"not gzip at all"[..], 4).is_err());
}

#[test]
fn one_member_of_either_codec_decompresses_by_its_magic() {
    let data = sample(300_000);
    let parts = [compress(Compression::Gzip, &data, 4), compress(Compression::Zstd, &data, 3)];
    let refs: Vec<&[u8]> = parts.iter().map(|p| &p[..]).collect();
    for out in decompress_all(&refs).unwrap() {
        assert_eq!(out, data);
    }
    assert!(levels(Compression::Gzip).contains(&default_level(Compression::Gzip)));
    assert!(levels(Compression::Zstd).contains(&default_level(Compression::Zstd)));
}
