//! The mount's view of incremental backups (issue 15): each shows as the complete tree at its time, listed with no
//! store request, each file read from the chain's archive that holds its bytes. Driven in kernel order without a
//! kernel, as `tests.rs` does.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::*;
use crate::ops::{self, BackupOptions};
use crate::storage::local::LocalStore;
use crate::storage::testing::{bytes, counting};
use crate::storage::{Backend, Op};

fn lookup_path(fs: &Fs, path: &str) -> Result<Ino> {
    let mut ino = ROOT;
    for c in path.split('/').filter(|c| !c.is_empty()) {
        ino = fs.lookup(ino, c.as_bytes())?.attr.ino;
    }
    Ok(ino)
}

fn read_all(fs: &Fs, path: &str) -> Vec<u8> {
    let ino = lookup_path(fs, path).unwrap();
    let o = fs.open(ino, false).unwrap();
    let mut out = Vec::new();
    loop {
        let chunk = fs.read(ino, o.fh, out.len() as u64, 128 << 10).unwrap();
        if chunk.is_empty() {
            break;
        }
        out.extend_from_slice(&chunk);
    }
    fs.release(o.fh).unwrap();
    out
}

#[test]
fn an_incremental_shows_its_complete_tree_and_reads_from_the_archive_holding_each_file() {
    let setup = super::versions_tests::Setup::new();
    let (dir, client, clock) = (&setup.dir, setup.client.clone(), setup.clock.clone());
    let src = dir.path().join("site");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("kept.bin"), bytes(1, 1_500_000)).unwrap();
    std::fs::write(src.join("sub/changed.txt"), b"first").unwrap();
    std::fs::write(src.join("gone.txt"), b"deleted later").unwrap();
    let backup = || ops::backup(client.ctx(), &BackupOptions { source: src.clone(), ..BackupOptions::default() });
    let full = backup().unwrap().record;
    std::fs::write(src.join("sub/changed.txt"), b"second").unwrap();
    std::fs::remove_file(src.join("gone.txt")).unwrap();
    clock.store(super::versions_tests::T0 + 3600, Ordering::SeqCst);
    let inc = backup().unwrap().record;
    assert_eq!(inc.parent().as_ref(), Some(&full.stored_filename));

    let store = counting(Arc::new(LocalStore::open(&dir.path().join("store")).unwrap()));
    let mut opts = MountOptions::new(dir.path().join("cache"));
    opts.refresh_interval = Duration::ZERO;
    let b = store.clone();
    let open: OpenBackend = Arc::new(move |_| Ok(b.clone() as Arc<dyn Backend>));
    let fs = Fs::new(client.clone(), open, None, opts).unwrap();
    let ts = String::from_utf8(names::timestamp(inc.backup_date)).unwrap();
    let root = format!("by-name/site/{ts}/site");
    let ino = lookup_path(&fs, &root).unwrap();
    let listed: Vec<String> =
        fs.readdir(ino, 0).unwrap().into_iter().skip(2).map(|e| String::from_utf8(e.name).unwrap()).collect();
    assert_eq!(listed, ["kept.bin", "sub"], "the complete tree at that time: gone.txt is gone, kept.bin is there");
    assert_eq!(fs.getattr(lookup_path(&fs, &format!("{root}/kept.bin")).unwrap()).unwrap().attr.size, 1_500_000);
    assert_eq!(store.meter().totals().requests, 0, "listing an incremental makes no store request");
    assert_eq!(read_all(&fs, &format!("{root}/sub/changed.txt")), b"second");
    assert_eq!(read_all(&fs, &format!("{root}/kept.bin")), bytes(1, 1_500_000), "read from the full");
    assert_eq!(store.meter().count(Op::Get), 0, "ranged reads only");
    // The full still shows its own time.
    let old = String::from_utf8(names::timestamp(full.backup_date)).unwrap();
    assert_eq!(read_all(&fs, &format!("by-name/site/{old}/site/gone.txt")), b"deleted later");
    assert_eq!(read_all(&fs, &format!("by-name/site/{old}/site/sub/changed.txt")), b"first");
}
