//! Open files: one table from file handle to what was opened, so each read, write and release knows from the
//! handle alone whether it goes to a backup's content or to a file staged in /incoming.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::{cache, lock, Ino};

/// An open file of a backup: its read state.
pub(super) struct Handle {
    pub ino: Ino,
    /// The last decoded member this handle used: (member, bytes).
    pub last: Option<(usize, Arc<Vec<u8>>)>,
    /// Where a sequential reader reads next.
    pub next_offset: u64,
    /// Members up to here were already handed to the prefetcher.
    pub prefetched_to: usize,
    pub whole: Option<Arc<cache::CachedFile>>,
}

impl Handle {
    pub fn new(ino: Ino) -> Handle {
        Handle { ino, last: None, next_offset: 0, prefetched_to: 0, whole: None }
    }
}

/// What a file handle refers to.
#[derive(Clone)]
pub(super) enum OpenFile {
    /// A file of a backup (content, raw file or status file).
    Archive(Arc<Mutex<Handle>>),
    /// A file staged in /incoming; `incoming.rs` keeps its descriptor under the same handle.
    Staged,
}

/// The table of open files.
pub(super) struct Handles {
    open: Mutex<HashMap<u64, OpenFile>>,
    next: AtomicU64,
}

impl Handles {
    pub fn new() -> Handles {
        Handles { open: Mutex::new(HashMap::new()), next: AtomicU64::new(1) }
    }

    /// A fresh handle number (registered with [`Handles::insert`] once the open succeeded).
    pub fn allocate(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    pub fn insert(&self, fh: u64, file: OpenFile) {
        lock(&self.open).insert(fh, file);
    }

    pub fn get(&self, fh: u64) -> Option<OpenFile> {
        lock(&self.open).get(&fh).cloned()
    }

    pub fn remove(&self, fh: u64) -> Option<OpenFile> {
        lock(&self.open).remove(&fh)
    }
}
