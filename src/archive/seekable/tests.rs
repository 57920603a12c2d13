use super::*;

fn sample(n: usize) -> Vec<u8> {
    (0..n).map(|i| ((i * 13 + i / 500) % 241) as u8).collect()
}

/// Frames and their seek table, as pack writes them.
fn archive(parts: &[Vec<u8>]) -> Vec<u8> {
    let frames: Vec<Vec<u8>> = parts.iter().map(|p| compress_frame(p, 3)).collect();
    let lens: Vec<MemberLens> =
        frames.iter().zip(parts).map(|(f, p)| MemberLens { clen: f.len() as u32, ulen: p.len() as u32 }).collect();
    let mut out = frames.concat();
    out.extend(seek_table(&lens));
    out
}

/// Reads every frame of a stream, inflating each; the error text if any step fails.
fn read_all(stream: &[u8]) -> Result<Vec<u8>, String> {
    let mut r = stream;
    let mut fr = FrameReader::default();
    let mut out = Vec::new();
    while let Some((frame, lens)) = fr.next_frame(&mut r).map_err(|e| e.to_string())? {
        let data = decompress_frame(&frame).map_err(|e| e.to_string())?;
        assert_eq!(data.len(), lens.ulen as usize);
        out.extend(data);
    }
    Ok(out)
}

fn expect_err(stream: &[u8], needle: &str) {
    match read_all(stream) {
        Ok(_) => panic!("accepted; expected an error saying {needle:?}"),
        Err(e) => assert!(e.contains(needle), "{e:?} does not say {needle:?}"),
    }
}

#[test]
fn frames_round_trip_with_their_seek_table() {
    let parts = vec![sample(0), sample(1), sample(200_000), sample(1 << 20)];
    let a = archive(&parts);
    assert_eq!(read_all(&a).unwrap(), parts.concat());
    let table_at = a.len() - (8 + parts.len() * 8 + FOOTER_LEN);
    let lens = parse_seek_table(&a[table_at..]).unwrap();
    assert_eq!(lens.iter().map(|l| l.ulen as usize).collect::<Vec<_>>(), [0, 1, 200_000, 1 << 20]);
    assert_eq!(lens.iter().map(|l| l.clen as usize).sum::<usize>(), table_at);
}

#[test]
fn a_corrupted_seek_table_is_refused() {
    let a = archive(&[sample(5000), sample(7000)]);
    let table_at = a.len() - (8 + 2 * 8 + FOOTER_LEN);
    // A frame length in the table that is not the frame's (pointing past the end of the archive, say).
    let mut bad = a.clone();
    bad[table_at + 8..table_at + 12].copy_from_slice(&u32::MAX.to_le_bytes());
    expect_err(&bad, "does not match the frames");
    assert_eq!(parse_seek_table(&bad[table_at..]).unwrap()[0].clen, u32::MAX, "the table alone parses");
    // The seekable magic, the reserved bits, the count.
    for (at, what) in [(a.len() - 1, "seekable magic"), (a.len() - 5, "reserved bits"), (a.len() - 9, "frame count")] {
        let mut bad = a.clone();
        bad[at] ^= 0x10;
        expect_err(&bad, what);
        assert!(parse_seek_table(&bad[table_at..]).is_err());
    }
    // A table length larger than the frames read can need: refused before anything is allocated for it.
    let mut bad = a.clone();
    bad[table_at + 4..table_at + 8].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    expect_err(&bad, "longer than its frames need");
    // Anything after the table; another skippable frame; the table missing (cut at a frame boundary).
    let mut bad = a.clone();
    bad.push(0);
    expect_err(&bad, "data follows the zstd seek table");
    let mut bad = a[..table_at].to_vec();
    bad.extend_from_slice(&[0x50, 0x2a, 0x4d, 0x18, 0, 0, 0, 0]);
    expect_err(&bad, "unexpected skippable frame");
    expect_err(&a[..table_at], "ends before its seek table");
    expect_err(&a[..a.len() - 3], "cut short");
}

#[test]
fn truncated_or_flipped_frames_are_refused() {
    let a = archive(&[sample(300_000)]);
    for cut in [2, 5, 9, 100, a.len() / 2] {
        assert!(read_all(&a[..cut]).is_err(), "cut at {cut} accepted");
    }
    let frame_len = parse_seek_table(&a[a.len() - (8 + 8 + FOOTER_LEN)..]).unwrap()[0].clen as usize;
    // A flip in the compressed data or the checksum: zstd's content checksum or its decoder says so.
    for at in [frame_len / 2, frame_len - 2] {
        let mut bad = a.clone();
        bad[at] ^= 0x01;
        assert!(read_all(&bad).is_err(), "flip at {at} accepted");
    }
}

/// A frame header: magic, descriptor, then `rest` (window descriptor, content size), then one empty raw last block.
fn hostile(fhd: u8, rest: &[u8]) -> Vec<u8> {
    let mut f = FRAME_MAGIC.to_vec();
    f.push(fhd);
    f.extend_from_slice(rest);
    f.extend_from_slice(&[1, 0, 0]);
    f
}

#[test]
fn hostile_headers_are_refused_before_allocating() {
    // Single segment, 4-byte content size of 4 GiB.
    let huge = hostile(0xa0, &u32::MAX.to_le_bytes());
    assert!(decompress_frame(&huge).unwrap_err().to_string().contains("more than a member may hold"));
    expect_err(&huge, "more than a member may hold");
    // 8-byte content size of 2^40.
    let huger = hostile(0xe0, &(1u64 << 40).to_le_bytes());
    expect_err(&huger, "more than a member may hold");
    // A 2 GiB window with a small content size.
    let window = hostile(0x80, &[21 << 3, 10, 0, 0, 0]);
    expect_err(&window, "window of 2147483648 bytes");
    // No content size, a dictionary, the reserved bit.
    expect_err(&hostile(0x00, &[0]), "does not declare its content size");
    expect_err(&hostile(0x21, &[7, 1]), "dictionary");
    expect_err(&hostile(0x28, &[1]), "reserved bit");
    // A block larger than the format allows, a reserved block type, blocks past the declared size.
    let mut f = FRAME_MAGIC.to_vec();
    f.extend_from_slice(&[0x20, 10]);
    let big = ((200_000u32) << 3) | 1;
    f.extend_from_slice(&big.to_le_bytes()[..3]);
    expect_err(&f, "larger than the format allows");
    let mut f = FRAME_MAGIC.to_vec();
    f.extend_from_slice(&[0x20, 10, 0b111, 0, 0]);
    expect_err(&f, "reserved type");
    let mut f = FRAME_MAGIC.to_vec();
    f.extend_from_slice(&[0x20, 10]);
    let rle = (100u32 << 3) | (1 << 1) | 1;
    f.extend_from_slice(&rle.to_le_bytes()[..3]);
    f.push(b'x');
    expect_err(&f, "larger than its declared content");
    // Not a frame at all.
    expect_err(b"PK\x03\x04 not zstd", "not a zstd frame");
}

#[test]
fn frames_are_read_by_the_reference_decoder_as_one_stream() {
    // What `zstd -d` does: frames concatenated, the skippable seek table ignored.
    let parts = vec![sample(70_000), sample(3), sample(500_000)];
    let a = archive(&parts);
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut zstd::stream::read::Decoder::new(&a[..]).unwrap(), &mut out).unwrap();
    assert_eq!(out, parts.concat());
}
