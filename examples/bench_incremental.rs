//! One day of `scripts/bench-incremental.sh`'s simulation for bakthat, at a given time: a backup of SOURCE under
//! the profile's `incremental:` policy, then `rotate_backups` of its name under the profile's `rotation:` policy,
//! with the clock set to EPOCH (the CLI has no clock to set; the peers take `--time`/`--timestamp` instead).
//!
//! Usage: BAKTHAT_CONFIG=... BAKTHAT_DB=... [BAKTHAT_PASSWORD=...] bench_incremental EPOCH SOURCE

use std::sync::Arc;

use bakthat::archive::Secret;
use bakthat::config::Config;
use bakthat::inventory::Inventory;
use bakthat::ops::{self, BackupOptions, Ctx, RotateOptions};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, epoch, source] = args.as_slice() else {
        eprintln!("usage: bench_incremental EPOCH SOURCE (with BAKTHAT_CONFIG and BAKTHAT_DB set)");
        std::process::exit(2);
    };
    let now: i64 = epoch.parse().expect("EPOCH is seconds since 1970");
    let config = Config::load(std::path::Path::new(&std::env::var("BAKTHAT_CONFIG").expect("BAKTHAT_CONFIG"))).unwrap();
    let inventory = Inventory::open(std::env::var("BAKTHAT_DB").expect("BAKTHAT_DB")).unwrap();
    let mut ctx = Ctx::new(config, "default", inventory).unwrap();
    ctx.clock = Arc::new(move || now);
    let password = std::env::var("BAKTHAT_PASSWORD").ok().map(|p| Arc::new(Secret::new(p.as_bytes())));
    let opts = BackupOptions { source: source.into(), password: password.clone(), ..BackupOptions::default() };
    let out = ops::backup(&ctx, &opts).unwrap_or_else(|e| panic!("backup: {}", bakthat::error_chain(&e)));
    println!("{} {}", out.record.stored_filename, out.record.size);
    let rotate = RotateOptions { password, ..RotateOptions::default() };
    for p in ops::rotate(&ctx, &out.record.filename, &rotate).unwrap() {
        if !p.keep {
            println!("deleted {}", p.record.stored_filename);
        }
    }
}
