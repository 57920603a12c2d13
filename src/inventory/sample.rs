//! Synthetic inventory rows for the benchmarks and the mount's scale tests: backup `i` of a hundred names
//! (`svc000`…`svc099`), an hour apart, one of seven tags, with a small entry index (a directory and 4 files). The
//! rows point at objects that do not exist: listing must never need them. Not for anything a user runs.

use crate::archive::index::{Entry, EntryKind, Index, Member};
use crate::model::{BackupRecord, Compression, StoredName};

/// The `i`-th sample backup and its entry index (as [`super::Inventory::insert_with_indexes`] takes them).
pub fn row(i: i64) -> (BackupRecord, Vec<u8>) {
    let name = format!("svc{:03}", i % 100);
    let date = 1_700_000_000 + i * 3600;
    let stored = StoredName::new(&name, date, Some(Compression::Gzip), false);
    let record = BackupRecord {
        id: None,
        backend: "local".parse().expect("a known backend"),
        backend_hash: None,
        backup_date: date,
        filename: name.clone(),
        is_deleted: false,
        last_updated: date,
        metadata: serde_json::json!({"format": "bakthat-1"}),
        size: 10_000,
        stored_filename: stored,
        tags: format!("t{}", i % 7),
        store: Default::default(),
    };
    let mut idx = Index { span: 512 << 10, seekable: true, tar_len: 20_480, stored_len: 10_000, ..Index::default() };
    idx.members.push(Member { tar_offset: 0, tar_len: 20_480, comp_offset: 0, comp_len: 10_000 });
    let mut off = 0;
    let mut push = |path: String, kind, size| {
        idx.entries.push(Entry {
            path: path.into_bytes(),
            kind,
            size,
            mode: if kind == EntryKind::Dir { 0o40755 } else { 0o100644 },
            uid: 1000,
            gid: 1000,
            mtime: date,
            link: None,
            header_offset: off,
            data_offset: off + 512,
            damaged: false,
        });
        off += 512 + size.div_ceil(512) * 512;
    };
    push(name.clone(), EntryKind::Dir, 0);
    for f in 0..4 {
        push(format!("{name}/file{f}.txt"), EntryKind::File, 100 + f);
    }
    (record, idx.to_bytes())
}
