//! Fills an inventory with N backups and a small entry index each (a directory and 4 files), for
//! `scripts/bench-mount.sh` (listing and memory over many backups). Usage: `bench_inventory DB N`. The rows point at
//! objects that do not exist: listing must never need them. Rows go in 10,000 per transaction, so a million take
//! about a minute.

use bakthat::inventory::sample::row;
use bakthat::inventory::Inventory;

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
