//! What the kernel must forget when the inventory changes: the rebuild's [`Changes`] become [`Invalidation`]s,
//! queued here and handed out by a [`Watcher`] (the FUSE adapter passes them on as notifications).
//!
//! Not here: deciding what changed (`catalog.rs`), talking to the kernel (`crate::fuse`).

use std::sync::Weak;
use std::time::Duration;

use super::catalog::Changes;
use super::{lock, Inner, Ino};

/// Something the kernel may have cached that is no longer true, because the inventory changed (a backup made,
/// deleted or synced). [`Fs::invalidations`] hands them out; `crate::fuse` passes them on as FUSE notifications.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    /// The attributes and listing of this inode.
    Inode(Ino),
    /// The name `name` in directory `parent` (it no longer exists, or is something else now).
    Entry { parent: Ino, name: Vec<u8> },
}

/// Hands out [`Invalidation`]s; holds the filesystem weakly, so it ends with it.
pub struct Watcher {
    pub(super) inner: Weak<Inner>,
}

impl Watcher {
    /// Waits up to `timeout` for inventory changes the kernel must hear about and takes them (empty when none
    /// came); `None` once the filesystem is gone.
    pub fn next(&self, timeout: Duration) -> Option<Vec<Invalidation>> {
        let inner = self.inner.upgrade()?;
        let q = lock(&inner.invalidations);
        let (mut q, _) =
            inner.invalidated.wait_timeout_while(q, timeout, |q| q.is_empty()).unwrap_or_else(|p| p.into_inner());
        Some(std::mem::take(&mut *q))
    }
}

impl Inner {
    /// Hands a rebuild's changes to whoever tells the kernel.
    pub(super) fn queue(&self, c: Changes) {
        if c.inodes.is_empty() && c.removed.is_empty() {
            return;
        }
        let mut q = lock(&self.invalidations);
        q.extend(c.removed.into_iter().map(|(parent, name)| Invalidation::Entry { parent, name }));
        q.extend(c.inodes.into_iter().map(Invalidation::Inode));
        self.invalidated.notify_all();
    }
}
