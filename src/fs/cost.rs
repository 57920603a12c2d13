//! What the listing budget charges for a backup held open: the heap it takes, counted the way glibc's malloc takes
//! it (each allocation a 16-byte aligned chunk with an 8-byte header, 32 bytes at least), for its full row, its
//! loaded entry index and each laid-out directory tree. `listing_tests.rs` checks these against the bytes the
//! allocator really hands out (`crate::test_heap`), so the budget means what it says.
//!
//! Not here: deciding what to let go (`tree.rs`), the structures themselves (`tree.rs`, `expand.rs`).

use std::mem::size_of;

use crate::archive::index::{Entry, Member};
use crate::model::BackupRecord;

use super::tree::{Loaded, Slot};

/// What malloc takes for `n` bytes (nothing for none).
pub(super) fn chunk(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        ((n + 8 + 15) & !15).max(32)
    }
}

/// A vector's or box's buffer of `len` items of `T`.
pub(super) fn array<T>(len: usize) -> usize {
    chunk(len * size_of::<T>())
}

/// An entry in a hash map with `T` items: the item and its control byte, at the lowest load a map keeps after
/// growing (it doubles at 7/8 full, so it is between 7/16 and 7/8 full).
pub(super) fn hashed<T>() -> usize {
    (size_of::<T>() + 1) * 16 / 7
}

/// A JSON value (a row's metadata): maps are B-trees of up to 11 entries a node.
fn json(v: &serde_json::Value) -> usize {
    use serde_json::Value;
    match v {
        Value::String(s) => chunk(s.len()),
        Value::Array(a) => array::<Value>(a.capacity()) + a.iter().map(json).sum::<usize>(),
        Value::Object(m) => {
            let node = chunk(11 * (size_of::<String>() + size_of::<Value>()) + 16);
            m.len().div_ceil(11).max(1) * node + m.iter().map(|(k, v)| chunk(k.len()) + json(v)).sum::<usize>()
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => 0,
    }
}

/// A full row held outside the catalog (its text and metadata).
fn record(r: &BackupRecord) -> usize {
    chunk(r.filename.len())
        + chunk(r.stored_filename.as_str().len())
        + chunk(r.tags.len())
        + chunk(r.store.to_string().len())
        + r.backend_hash.as_ref().map_or(0, |h| chunk(h.len()))
        + json(&r.metadata)
}

fn entries(list: &[Entry], capacity: usize) -> usize {
    let text = |e: &Entry| chunk(e.path.capacity()) + e.link.as_ref().map_or(0, |l| chunk(l.capacity()));
    chunk(capacity * size_of::<Entry>()) + list.iter().map(text).sum::<usize>()
}

/// A loaded entry index: its entries and their paths, members, the hard-link map and, for an incremental, its
/// chain's records and indexes.
pub(super) fn loaded(l: &Loaded) -> usize {
    let index = &l.index;
    let mut n = chunk(size_of::<Loaded>() + 16)
        + entries(&index.entries, index.entries.capacity())
        + array::<Member>(index.members.capacity())
        + index.crypto_header.as_ref().map_or(0, |h| chunk(h.capacity()));
    if l.has_links() {
        n += index.entries.len() * (hashed::<(Vec<u8>, usize)>() + 8)
            + index.entries.iter().map(|e| chunk(e.path.len())).sum::<usize>();
    }
    if let Some(c) = &l.chain {
        n += c.records.iter().map(|r| size_of::<BackupRecord>() + record(r)).sum::<usize>()
            + array::<Option<(usize, Entry)>>(c.holders.capacity())
            + c.holders.iter().flatten().map(|(_, e)| entries(std::slice::from_ref(e), 0)).sum::<usize>()
            + c.archives.values().map(|a| loaded(a) + hashed::<(usize, usize)>()).sum::<usize>();
    }
    n
}

/// An opened backup's slot: its entry in the map of slots and its row.
pub(super) fn slot(s: &Slot) -> usize {
    hashed::<(i64, Slot)>() + record(&s.record)
}
