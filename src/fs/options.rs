//! The settings of a mount.

use std::path::PathBuf;
use std::time::Duration;

/// Settings of a mount.
#[derive(Debug, Clone)]
pub struct MountOptions {
    /// Where decoded blocks are kept (created with mode 0700).
    pub cache_dir: PathBuf,
    /// Hard cap of the block cache, in bytes.
    pub cache_size: u64,
    /// How far ahead of a sequential reader members are fetched, in bytes.
    pub prefetch_window: u64,
    /// Bytes of prefetch in flight over all handles (the memory cap of prefetching).
    pub prefetch_total: u64,
    /// Owner shown for the mount's own directories.
    pub uid: u32,
    pub gid: u32,
    /// How often the inventory is checked for new backups (at most).
    pub refresh_interval: Duration,
    /// How often pending cold-storage retrievals are polled.
    pub poll_interval: Duration,
    /// Where `/incoming` stages what is copied in (created with mode 0700).
    pub staging_dir: PathBuf,
    /// How long a directory in `/incoming` must be quiet before it is backed up.
    pub settle: Duration,
    /// How many bytes of heap the opened backups (rows, entry indexes, laid-out trees; see `cost.rs`) may hold
    /// before the least recently used are let go. An opened backup of a few files takes ~4 KB.
    pub listing_budget: usize,
}

impl MountOptions {
    /// Defaults for a cache directory: 1 GiB cache, 8 MiB prefetch per reader, 64 MiB in all.
    pub fn new(cache_dir: PathBuf) -> Self {
        // SAFETY: getuid/getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        MountOptions {
            staging_dir: cache_dir.join("incoming"),
            settle: Duration::from_secs(3),
            cache_dir,
            cache_size: 1 << 30,
            prefetch_window: 8 << 20,
            prefetch_total: 64 << 20,
            uid,
            gid,
            refresh_interval: Duration::from_secs(1),
            poll_interval: Duration::from_secs(30),
            listing_budget: 16 << 20,
        }
    }
}
