//! Injected store faults for `scripts/hostile.sh` (not a test, not part of CI): backups, restores and verifies of a
//! local store wrapped in [`Faulty`], failing the nth call of one kind or a seeded fraction of all reads or writes.
//! Prints one line per case in the script's columns: tried, refused (an error), survived (went through, and the
//! data is right), misplaced (a wrong byte restored, a row without its archive, an error-free run with wrong
//! results; target 0). Usage: `cargo run --example hostile_faults -- WORKDIR`.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bakthat::archive::Secret;
use bakthat::config::{Config, Profile};
use bakthat::inventory::Inventory;
use bakthat::ops::{self, BackupOptions, Ctx, RestoreOptions};
use bakthat::storage::testing::{bytes, Faulty, When};
use bakthat::storage::Op;

fn ctx(dir: &Path, fault: Option<(Op, When)>) -> Ctx {
    fs::create_dir_all(dir).unwrap();
    let mut config = Config::empty(&dir.join("bakthat.yml"));
    config.set_profile("default", Profile { local_path: Some(dir.join("store")), ..Profile::default() });
    let mut c = Ctx::new(config, "default", Inventory::open(dir.join("inv.sqlite")).unwrap()).unwrap();
    if let Some((op, when)) = fault {
        c.store_layer = Some(Arc::new(move |inner| Arc::new(Faulty::new(inner).fail(op, when))));
    }
    c
}

/// Whether every file under `src` is in `out` (under the source's directory name) with the same bytes.
fn same_tree(src: &Path, out: &Path) -> bool {
    let name = src.file_name().unwrap();
    fs::read_dir(src).unwrap().all(|e| {
        let e = e.unwrap();
        fs::read(e.path()).ok() == fs::read(out.join(name).join(e.file_name())).ok()
    })
}

/// Rows of the inventory whose archive is not in the store.
fn rows_without_data(c: &Ctx, dir: &Path) -> usize {
    let rows = c.inventory.search(&Default::default()).unwrap();
    rows.iter().filter(|r| !dir.join("store").join(r.stored_filename.as_str()).exists()).count()
}

fn line(case: &str, tried: usize, refused: usize, survived: usize, misplaced: usize) {
    println!("{case:<44} {tried:>5} {refused:>7} {survived:>8} {misplaced:>9}");
}

fn main() {
    let work = PathBuf::from(std::env::args().nth(1).expect("usage: hostile_faults WORKDIR"));
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).unwrap();
    let src = work.join("data");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("big.bin"), bytes(1, 3_000_000)).unwrap();
    fs::write(src.join("small.txt"), b"hello\n").unwrap();
    let pw = Arc::new(Secret::new(b"pw"));
    let writes = [
        (Op::Create, When::Nth(1)),
        (Op::Write, When::Nth(1)),
        (Op::Write, When::Nth(3)),
        (Op::Commit, When::Nth(1)),
        (Op::PutBytes, When::Nth(1)),
        (Op::PutBytes, When::Nth(2)),
    ];
    let reads = [(Op::Get, When::Nth(1)), (Op::Read, When::Nth(1)), (Op::Read, When::Nth(5)), (Op::Head, When::Nth(1))];
    let seeds = 0..10u64;

    // Backups: the nth write of each kind, then a seeded fifth of all writes; plain and encrypted.
    let (mut tried, mut refused, mut survived, mut misplaced) = (0, 0, 0, 0);
    let mut cases: Vec<(Op, When)> = writes.to_vec();
    cases.extend(seeds.clone().map(|seed| (Op::Write, When::Fraction { ratio: 0.2, seed })));
    for (i, (op, when)) in cases.iter().enumerate() {
        for password in [None, Some(pw.clone())] {
            let dir = work.join(format!("backup-{i}-{}", password.is_some()));
            let c = ctx(&dir, Some((*op, *when)));
            tried += 1;
            let r = ops::backup(
                &c,
                &BackupOptions { source: src.clone(), password: password.clone(), ..Default::default() },
            );
            let lost = rows_without_data(&c, &dir);
            misplaced += lost;
            match r {
                Err(_) => refused += 1,
                // Went through (the fault missed, or was retried): the backup must restore exactly.
                Ok(_) => {
                    let out = dir.join("out");
                    let clean = ctx(&dir, None);
                    let opts =
                        RestoreOptions { name: "data".into(), to: Some(out.clone()), password, ..Default::default() };
                    if ops::restore(&clean, &opts).is_ok() && same_tree(&src, &out) {
                        survived += 1;
                    } else {
                        misplaced += 1;
                    }
                }
            }
        }
    }
    line("store faults during backup (nth call, 20% seeded)", tried, refused, survived, misplaced);

    // Restores and verifies of a good backup through a store failing reads.
    for (what, verify) in [("restore", false), ("verify", true)] {
        let (mut tried, mut refused, mut survived, mut misplaced) = (0, 0, 0, 0);
        let mut cases: Vec<(Op, When)> = reads.to_vec();
        cases.extend(seeds.clone().map(|seed| (Op::Read, When::Fraction { ratio: 0.2, seed })));
        for password in [None, Some(pw.clone())] {
            let dir = work.join(format!("{what}-{}", password.is_some()));
            let good = ctx(&dir, None);
            ops::backup(
                &good,
                &BackupOptions { source: src.clone(), password: password.clone(), ..Default::default() },
            )
            .unwrap();
            for (i, (op, when)) in cases.iter().enumerate() {
                let c = ctx(&dir, Some((*op, *when)));
                tried += 1;
                let out = dir.join(format!("out-{i}"));
                let ok = if verify {
                    ops::verify(&c, "data", None, password.as_deref()).map(|_| ())
                } else {
                    let opts = RestoreOptions {
                        name: "data".into(),
                        to: Some(out.clone()),
                        password: password.clone(),
                        ..Default::default()
                    };
                    ops::restore(&c, &opts).map(|_| ())
                };
                match ok {
                    Err(_) => {
                        refused += 1;
                        // A refused restore leaves nothing under the final name.
                        if !verify && out.join("data").exists() {
                            misplaced += 1;
                        }
                    }
                    Ok(()) if verify || same_tree(&src, &out) => survived += 1,
                    Ok(()) => misplaced += 1,
                }
            }
        }
        line(&format!("store faults during {what} (nth call, 20% seeded)"), tried, refused, survived, misplaced);
    }
}
