//! Fills an inventory with N backups and a small entry index each (a directory and 4 files), for
//! `scripts/bench-mount.sh` (listing and memory over many backups). Usage: `bench_inventory DB N`. The rows point at
//! objects that do not exist: listing must never need them. Rows go in 10,000 per transaction, so a million take
//! about a minute.

use bakthat::archive::index::{Entry, EntryKind, Index, Member};
use bakthat::inventory::Inventory;
use bakthat::model::{BackupRecord, StoredName};

fn row(i: i64) -> (BackupRecord, Vec<u8>) {
    let name = format!("svc{:03}", i % 100);
    let date = 1_700_000_000 + i * 3600;
    let stored = StoredName::new(&name, date, Some(bakthat::model::Compression::Gzip), false);
    let record = BackupRecord {
        id: None,
        backend: "local".parse().unwrap(),
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

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: bench_inventory DB N");
        std::process::exit(2);
    }
    let inv = Inventory::open(&args[1]).expect("opening the inventory");
    let n: i64 = args[2].parse().expect("N must be a number");
    let mut i = 0;
    while i < n {
        let batch: Vec<_> = (i..n.min(i + 10_000)).map(row).collect();
        inv.insert_with_indexes(&batch).expect("inserting rows");
        i += batch.len() as i64;
    }
}
