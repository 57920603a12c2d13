//! A store that plays cold storage (Glacier, S3 archive classes) over any store: reads fail with
//! [`StorageError::NotRetrieved`] until a retrieval was started and the test says it finished.

use std::io::Read;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use crate::storage::{Backend, ObjectInfo, PutOptions, Retrieval, StorageError, Upload};

const ARCHIVED: u8 = 0;
const RETRIEVING: u8 = 1;
const RESTORED: u8 = 2;

/// `inner` seen as a Glacier vault whose objects are all archived. [`Backend::start_retrieval`] makes every object
/// "retrieving" (job `job-1`, ready at 1,900,000,000); [`ColdStore::finish_retrieval`] makes them readable.
pub struct ColdStore {
    inner: Arc<dyn Backend>,
    state: AtomicU8,
}

impl ColdStore {
    pub fn new(inner: Arc<dyn Backend>) -> ColdStore {
        ColdStore { inner, state: AtomicU8::new(ARCHIVED) }
    }

    /// The store finishes the retrieval: reads succeed from now on.
    pub fn finish_retrieval(&self) {
        self.state.store(RESTORED, Ordering::SeqCst);
    }

    fn state(&self) -> Retrieval {
        match self.state.load(Ordering::SeqCst) {
            ARCHIVED => Retrieval::NotStarted,
            RETRIEVING => Retrieval::Pending { job_id: Some("job-1".into()), ready_at: Some(1_900_000_000) },
            _ => Retrieval::Ready,
        }
    }

    fn readable(&self, key: &str) -> Result<(), StorageError> {
        match self.state() {
            Retrieval::Ready => Ok(()),
            state => Err(StorageError::NotRetrieved { key: key.into(), state }),
        }
    }
}

impl Backend for ColdStore {
    fn kind(&self) -> &'static str {
        "glacier"
    }
    fn describe(&self) -> String {
        format!("cold {}", self.inner.describe())
    }
    fn create(&self, key: &str, opts: &PutOptions) -> Result<Box<dyn Upload>, StorageError> {
        self.inner.create(key, opts)
    }
    fn get(&self, key: &str) -> Result<Box<dyn Read + Send>, StorageError> {
        self.readable(key)?;
        self.inner.get(key)
    }
    fn get_range(&self, key: &str, start: u64, len: u64) -> Result<Vec<u8>, StorageError> {
        self.readable(key)?;
        self.inner.get_range(key, start, len)
    }
    fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StorageError> {
        self.inner.head(key)
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        self.inner.list(prefix)
    }
    fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.inner.delete(key)
    }
    fn retrieval_state(&self, _key: &str) -> Result<Retrieval, StorageError> {
        Ok(self.state())
    }
    fn start_retrieval(&self, _key: &str) -> Result<Retrieval, StorageError> {
        let _ = self.state.compare_exchange(ARCHIVED, RETRIEVING, Ordering::SeqCst, Ordering::SeqCst);
        Ok(self.state())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::local::LocalStore;

    #[test]
    fn reads_wait_for_a_started_and_finished_retrieval() {
        let dir = tempfile::tempdir().unwrap();
        let store = ColdStore::new(Arc::new(LocalStore::open(dir.path()).unwrap()));
        store.put_bytes("a", b"data", &PutOptions::default()).unwrap();
        assert!(matches!(store.get_range("a", 0, 4), Err(StorageError::NotRetrieved { .. })));
        assert_eq!(store.retrieval_state("a").unwrap(), Retrieval::NotStarted);
        assert!(matches!(store.start_retrieval("a").unwrap(), Retrieval::Pending { .. }));
        assert!(matches!(store.get("a").err(), Some(StorageError::NotRetrieved { .. })));
        store.finish_retrieval();
        assert_eq!(store.start_retrieval("a").unwrap(), Retrieval::Ready);
        assert_eq!(store.get_range("a", 0, 4).unwrap(), b"data");
    }
}
