//! Glacier's SHA-256 tree hashes (of whole archives and of their parts) and the alignment of ranged retrievals to
//! the tree, so that Glacier can send a checksum of each range.

use sha2::{Digest, Sha256};

use super::MIB;

// ---- tree hashes ----

/// The SHA-256 tree hash of Glacier, computed as data streams in: a SHA-256 per 1 MiB leaf, then pairs of hashes
/// hashed together level by level (an odd one out is promoted) up to the root.
#[derive(Clone, Default)]
pub struct TreeHasher {
    leaves: Vec<[u8; 32]>,
    cur: Sha256,
    cur_len: u64,
}

impl TreeHasher {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds data.
    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let n = ((MIB - self.cur_len) as usize).min(data.len());
            self.cur.update(&data[..n]);
            self.cur_len += n as u64;
            data = &data[n..];
            if self.cur_len == MIB {
                self.leaves.push(std::mem::take(&mut self.cur).finalize().into());
                self.cur_len = 0;
            }
        }
    }

    /// The hashes of the 1 MiB leaves so far, the partial last one included (empty data has one leaf: the hash of
    /// nothing).
    pub fn leaves(&self) -> Vec<[u8; 32]> {
        let mut leaves = self.leaves.clone();
        if self.cur_len > 0 || leaves.is_empty() {
            leaves.push(self.cur.clone().finalize().into());
        }
        leaves
    }

    /// The root hash.
    pub fn finish(&self) -> [u8; 32] {
        combine(&self.leaves())
    }
}

/// The root of a tree over `hashes` (leaf hashes, or the tree hashes of consecutive power-of-two-MiB parts).
pub fn combine(hashes: &[[u8; 32]]) -> [u8; 32] {
    if hashes.is_empty() {
        return Sha256::digest([]).into();
    }
    let mut level = hashes.to_vec();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [a, b] => {
                    let mut h = Sha256::new();
                    h.update(a);
                    h.update(b);
                    h.finalize().into()
                }
                [a] => *a,
                _ => unreachable!("chunks(2) yields one or two"),
            })
            .collect();
    }
    level[0]
}

/// The tree hash of a buffer.
pub fn tree_hash(data: &[u8]) -> [u8; 32] {
    let mut h = TreeHasher::new();
    h.update(data);
    h.finish()
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---- range alignment ----

/// `[start, end)` widened to whole mebibytes, the end clamped to `size`.
pub fn mib_aligned(start: u64, end: u64, size: u64) -> (u64, u64) {
    let s = start.min(size) / MIB * MIB;
    let e = end.min(size).div_ceil(MIB).saturating_mul(MIB).min(size);
    (s, e.max(s))
}

/// The smallest tree-hash-aligned range covering `[start, end)`: the span of a node of the tree over the archive's
/// 1 MiB leaves, `[k * 2^n MiB, min((k + 1) * 2^n MiB, size))`. Glacier sends a checksum for such ranges only.
pub fn tree_aligned(start: u64, end: u64, size: u64) -> (u64, u64) {
    let end = end.min(size);
    if end <= start {
        let s = start.min(size) / MIB * MIB;
        return (s, s);
    }
    let (first, last) = (start / MIB, (end - 1) / MIB);
    let mut n = 0;
    while (first >> n) != (last >> n) {
        n += 1;
    }
    let span = MIB << n;
    let s = (first >> n) * span;
    (s, (s + span).min(size))
}

/// The range of the job output to download for bytes `[start, start + len)` of an archive of `size` bytes, and
/// whether it is tree-hash aligned (so the answer's checksum can be verified). The tree-hash-aligned range is used
/// unless it is much larger than the 1 MiB-aligned one.
pub fn retrieval_range(start: u64, len: u64, size: u64) -> (u64, u64, bool) {
    let end = start.saturating_add(len);
    let (ms, me) = mib_aligned(start, end, size);
    let (ts, te) = tree_aligned(start, end, size);
    if te - ts <= (4 * (me - ms)).max(4 * MIB) {
        (ts, te, true)
    } else {
        (ms, me, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(parts: &[&[u8]]) -> [u8; 32] {
        let mut h = Sha256::new();
        for p in parts {
            h.update(p);
        }
        h.finalize().into()
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 1000) as u8).collect()
    }

    #[test]
    fn tree_hash_of_small_data_is_its_sha256() {
        assert_eq!(hex(&tree_hash(b"")), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        let s = b"Nobody inspects the spammish repetition";
        assert_eq!(tree_hash(s), sha(&[s]));
    }

    /// The developer guide's example 1: a 6.5 MB archive has seven leaves (the last half full); H12, H34, H56 are
    /// hashed pairs, H7 is promoted, then H1234 and H567, then the root.
    #[test]
    fn tree_hash_follows_the_documented_6_5_mb_example() {
        let d = data(6 * MIB as usize + MIB as usize / 2);
        let h: Vec<[u8; 32]> = d.chunks(MIB as usize).map(|c| sha(&[c])).collect();
        assert_eq!(h.len(), 7);
        let h12 = sha(&[&h[0], &h[1]]);
        let h34 = sha(&[&h[2], &h[3]]);
        let h56 = sha(&[&h[4], &h[5]]);
        let h1234 = sha(&[&h12, &h34]);
        let h567 = sha(&[&h56, &h[6]]);
        let root = sha(&[&h1234, &h567]);
        assert_eq!(tree_hash(&d), root);
        // Streaming in odd pieces gives the same leaves.
        let mut t = TreeHasher::new();
        for c in d.chunks(333_333) {
            t.update(c);
        }
        assert_eq!(t.leaves(), h);
        assert_eq!(t.finish(), root);
    }

    /// The guide's example 2: with power-of-two-MiB parts, the archive's tree hash is the tree over the parts'
    /// tree hashes.
    #[test]
    fn archive_tree_hash_is_the_tree_of_part_hashes() {
        let d = data(6 * MIB as usize + MIB as usize / 2);
        for part in [MIB, 2 * MIB, 4 * MIB] {
            let parts: Vec<[u8; 32]> = d.chunks(part as usize).map(tree_hash).collect();
            assert_eq!(combine(&parts), tree_hash(&d), "part size {part}");
        }
    }

    /// Vectors computed with botocore's `calculate_tree_hash` (an independent implementation) over
    /// `bytes((i * 7 + i // 1000) % 256 for i in range(n))`.
    #[test]
    fn tree_hash_matches_an_independent_implementation() {
        for (n, want) in [
            (1 << 20, "74ae267b81e65e38a81b207b952c8ab9d276c7ae78945eb5114be87025ea2e2f"),
            ((1 << 20) + 1, "e9dc5e8372965fc4d802496e9c10d3070d1d03b5f064e750cb946370ccd6aee6"),
            (3 * (1 << 20) + 12345, "f667141b7fd162ff4ec133e56a87a741b44f7e804e07b2d0e2177612b64f8a3a"),
        ] {
            assert_eq!(hex(&tree_hash(&data(n))), want, "{n} bytes");
        }
    }

    #[test]
    fn mib_alignment_widens_to_whole_mebibytes() {
        assert_eq!(mib_aligned(0, 10, 100 * MIB), (0, MIB));
        assert_eq!(mib_aligned(MIB - 1, MIB + 1, 100 * MIB), (0, 2 * MIB));
        assert_eq!(mib_aligned(5 * MIB, 6 * MIB, 100 * MIB), (5 * MIB, 6 * MIB));
        assert_eq!(mib_aligned(3 * MIB + 5, 10 * MIB, 3 * MIB + 100), (3 * MIB, 3 * MIB + 100));
    }

    #[test]
    fn tree_alignment_gives_tree_nodes() {
        let size = 7 * MIB + 500;
        // A leaf.
        assert_eq!(tree_aligned(10, 20, size), (0, MIB));
        // Two leaves under one parent.
        assert_eq!(tree_aligned(MIB - 1, MIB + 1, size), (0, 2 * MIB));
        // Leaves 1 and 2 have different parents: the grandparent [0, 4).
        assert_eq!(tree_aligned(MIB + 5, 2 * MIB + 5, size), (0, 4 * MIB));
        // Crossing the middle of the tree needs the root.
        assert_eq!(tree_aligned(4 * MIB - 1, 4 * MIB + 1, size), (0, size));
        // The short last leaf, and the promoted node over it.
        assert_eq!(tree_aligned(7 * MIB + 1, 7 * MIB + 2, size), (7 * MIB, size));
        assert_eq!(tree_aligned(6 * MIB, size, size), (6 * MIB, size));
        // Every aligned range's tree hash is that node of the archive's tree.
        let d = data(size as usize);
        let leaves: Vec<[u8; 32]> = d.chunks(MIB as usize).map(|c| sha(&[c])).collect();
        let (s, e) = tree_aligned(4 * MIB + 3, 6 * MIB + 1, size);
        assert_eq!((s, e), (4 * MIB, size));
        assert_eq!(tree_hash(&d[s as usize..e as usize]), combine(&leaves[4..]));
    }

    #[test]
    fn retrieval_ranges_prefer_tree_alignment_unless_much_larger() {
        let size = 64 * MIB;
        assert_eq!(retrieval_range(10, 100, size), (0, MIB, true));
        assert_eq!(retrieval_range(32 * MIB - 1, 2, size), (31 * MIB, 33 * MIB, false));
        let (a, b, aligned) = retrieval_range(5 * MIB, 3 * MIB, size);
        assert!(aligned && a <= 5 * MIB && b >= 8 * MIB, "{a} {b}");
        let (a, b, _) = retrieval_range(size - 5, 100, size);
        assert_eq!((a, b), (size - MIB, size));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        #[test]
        fn aligned_ranges_cover_the_request(size in 1u64..(40 * MIB), a in 0u64..(40 * MIB), len in 1u64..(10 * MIB)) {
            let start = a % size;
            let end = (start + len).min(size);
            let (ms, me) = mib_aligned(start, end, size);
            proptest::prop_assert!(ms <= start && me >= end && ms % MIB == 0 && (me % MIB == 0 || me == size));
            let (ts, te) = tree_aligned(start, end, size);
            proptest::prop_assert!(ts <= start && te >= end && ts % MIB == 0);
            let span = te - ts;
            // A node: its start is a multiple of a power-of-two span, and it is either full or ends the archive.
            let full = span.next_power_of_two();
            proptest::prop_assert!(ts % full == 0 && (span == full || te == size), "{} {} {}", ts, te, size);
            let (rs, re, _) = retrieval_range(start, len, size);
            proptest::prop_assert!(rs <= start && re >= end);
        }
    }
}
