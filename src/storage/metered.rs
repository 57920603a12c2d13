//! A [`Backend`] wrapper that counts the requests reaching a store, by [`Op`], and the bytes read from it. The mount
//! shows the totals as extended attributes of its root (so "listing made no request" can be checked on a live
//! mount) and logs them when it ends; tests read the count of one operation ([`Meter::count`]). It changes nothing
//! about the requests themselves.

use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::{Backend, ObjectInfo, Op, PutOptions, Retrieval, StorageError, Upload};

/// Totals shared by every store wrapped with the same meter.
#[derive(Debug, Default)]
pub struct Meter {
    /// Calls per operation, indexed by `Op as usize`.
    calls: [AtomicU64; Op::ALL.len()],
    bytes_read: AtomicU64,
}

/// A snapshot of a [`Meter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Totals {
    /// Requests of any kind: reads, ranged reads, listings, heads, writes, deletes and cold-storage calls.
    pub requests: u64,
    /// Object bytes returned by reads and ranged reads.
    pub bytes_read: u64,
}

impl Meter {
    pub fn new() -> Arc<Meter> {
        Arc::new(Meter::default())
    }

    pub fn totals(&self) -> Totals {
        Totals {
            requests: Op::ALL.iter().map(|op| self.count(*op)).sum(),
            bytes_read: self.bytes_read.load(Ordering::Relaxed),
        }
    }

    /// How many `op` requests were made (0 for operations that are not requests, see [`Op::is_request`]).
    pub fn count(&self, op: Op) -> u64 {
        self.calls[op as usize].load(Ordering::Relaxed)
    }

    /// Starts counting from zero again.
    pub fn reset(&self) {
        for c in &self.calls {
            c.store(0, Ordering::Relaxed);
        }
        self.bytes_read.store(0, Ordering::Relaxed);
    }

    fn request(&self, op: Op) {
        debug_assert!(op.is_request());
        self.calls[op as usize].fetch_add(1, Ordering::Relaxed);
    }

    fn read(&self, n: u64) {
        self.bytes_read.fetch_add(n, Ordering::Relaxed);
    }
}

/// `inner`, with every call counted on `meter`.
pub struct Metered {
    inner: Arc<dyn Backend>,
    meter: Arc<Meter>,
}

impl Metered {
    pub fn new(inner: Arc<dyn Backend>, meter: Arc<Meter>) -> Metered {
        Metered { inner, meter }
    }

    /// The meter this store counts on.
    pub fn meter(&self) -> &Arc<Meter> {
        &self.meter
    }
}

/// Counts the bytes a streaming read returns.
struct CountingRead {
    inner: Box<dyn Read + Send>,
    meter: Arc<Meter>,
}

impl Read for CountingRead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.meter.read(n as u64);
        Ok(n)
    }
}

impl Backend for Metered {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn create(&self, key: &str, opts: &PutOptions) -> Result<Box<dyn Upload>, StorageError> {
        self.meter.request(Op::Create);
        self.inner.create(key, opts)
    }
    fn get(&self, key: &str) -> Result<Box<dyn Read + Send>, StorageError> {
        self.meter.request(Op::Get);
        let inner = self.inner.get(key)?;
        Ok(Box::new(CountingRead { inner, meter: self.meter.clone() }))
    }
    fn get_range(&self, key: &str, start: u64, len: u64) -> Result<Vec<u8>, StorageError> {
        self.meter.request(Op::GetRange);
        let data = self.inner.get_range(key, start, len)?;
        self.meter.read(data.len() as u64);
        Ok(data)
    }
    fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StorageError> {
        self.meter.request(Op::Head);
        self.inner.head(key)
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        self.meter.request(Op::List);
        self.inner.list(prefix)
    }
    fn list_after(&self, prefix: &str, start_after: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        self.meter.request(Op::List);
        self.inner.list_after(prefix, start_after)
    }
    fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.meter.request(Op::Delete);
        self.inner.delete(key)
    }
    fn put_bytes(&self, key: &str, data: &[u8], opts: &PutOptions) -> Result<ObjectInfo, StorageError> {
        self.meter.request(Op::PutBytes);
        self.inner.put_bytes(key, data, opts)
    }
    fn retrieval_state(&self, key: &str) -> Result<Retrieval, StorageError> {
        self.meter.request(Op::RetrievalState);
        self.inner.retrieval_state(key)
    }
    fn start_retrieval(&self, key: &str) -> Result<Retrieval, StorageError> {
        self.meter.request(Op::StartRetrieval);
        self.inner.start_retrieval(key)
    }
    fn cleanup(&self) -> Result<u64, StorageError> {
        self.meter.request(Op::Cleanup);
        self.inner.cleanup()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::local::LocalStore;

    #[test]
    fn counts_requests_by_operation_and_bytes_read() {
        let dir = tempfile::tempdir().unwrap();
        let meter = Meter::new();
        let store = Metered::new(Arc::new(LocalStore::open(dir.path()).unwrap()), meter.clone());
        assert_eq!(meter.totals(), Totals::default());
        store.put_bytes("a", b"0123456789", &PutOptions::default()).unwrap();
        assert_eq!(store.get_range("a", 2, 3).unwrap(), b"234");
        let mut all = Vec::new();
        store.get("a").unwrap().read_to_end(&mut all).unwrap();
        assert_eq!(all, b"0123456789");
        assert_eq!(store.list("").unwrap().len(), 1);
        assert_eq!(store.list_after("", "a").unwrap().len(), 0);
        assert_eq!(meter.totals(), Totals { requests: 5, bytes_read: 13 });
        let counts: Vec<u64> = Op::ALL.iter().map(|op| meter.count(*op)).collect();
        //                    Create Write Commit Get Read Range Head List Del Put State Start Cleanup
        assert_eq!(counts, [0, 0, 0, 1, 0, 1, 0, 2, 0, 1, 0, 0, 0]);
        meter.reset();
        assert_eq!(meter.totals(), Totals::default());
    }
}
