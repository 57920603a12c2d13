//! Read-ahead for sequential readers: the members after a read are fetched into the block cache in the background,
//! within a per-handle window and a cap on the bytes in flight over all handles.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::model::BackupRecord;

use super::handles::Handle;
use super::read::block_key;
use super::tree::Loaded;
use super::{lock, Inner};

impl Inner {
    /// Fetches the members after a sequential read into the cache in the background, within the per-handle window
    /// and the global in-flight cap.
    pub(super) fn prefetch(
        self: &Arc<Inner>,
        record: &BackupRecord,
        loaded: &Arc<Loaded>,
        from: usize,
        tar_pos: u64,
        file_end: u64,
        h: &mut Handle,
    ) {
        let stored = record.stored_filename.as_str();
        let window_end = tar_pos.saturating_add(self.opts.prefetch_window).min(file_end);
        let last = loaded.index.members_covering(tar_pos, window_end).end;
        let mut start = from.max(h.prefetched_to);
        while start < last && self.cache.contains(&block_key(stored, start)) {
            start += 1;
        }
        if start >= last {
            return;
        }
        let mut end = start;
        while end < last && !self.cache.contains(&block_key(stored, end)) {
            end += 1;
        }
        let bytes: u64 = loaded.index.members[start..end].iter().map(|m| m.tar_len + m.comp_len).sum();
        let total = self.opts.prefetch_total;
        let reserved = self
            .prefetching
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |cur| (cur + bytes <= total).then_some(cur + bytes));
        if reserved.is_err() {
            return;
        }
        h.prefetched_to = end;
        let me = self.clone();
        let (record, loaded) = (record.clone(), loaded.clone());
        let spawned = std::thread::Builder::new().name("bakthat-prefetch".into()).spawn(move || {
            let stored = record.stored_filename.as_str();
            let guard = me.cache.lock_key(&block_key(stored, start));
            let _g = lock(&guard);
            if !me.cache.contains(&block_key(stored, start)) {
                match me.fetch_members(&record, &loaded, start..end) {
                    Ok(parts) => {
                        for (i, p) in parts.iter().enumerate() {
                            if let Err(e) = me.cache.insert(&block_key(stored, start + i), p) {
                                tracing::warn!("prefetch of {stored}: {e}");
                            }
                        }
                    }
                    Err(e) => tracing::debug!("prefetch of {stored}: {e:#}"),
                }
            }
            me.prefetching.fetch_sub(bytes, Ordering::SeqCst);
        });
        if spawned.is_err() {
            self.prefetching.fetch_sub(bytes, Ordering::SeqCst);
        }
    }
}
