//! A store that fails chosen calls on purpose, to test what the code above a store does when the store fails: the
//! nth call of an operation, every call from the nth on, or a seeded fraction of them, each with a chosen error.
//! Uploads and read streams it returns fail their writes, commits and reads the same way. Everything else goes to
//! the wrapped store unchanged.
//!
//! ```
//! use std::sync::Arc;
//! use bakthat::storage::{local::LocalStore, testing::{Faulty, When}, Backend, Op, PutOptions};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = Faulty::new(Arc::new(LocalStore::open(dir.path()).unwrap())).fail(Op::GetRange, When::Nth(2));
//! store.put_bytes("a", b"0123", &PutOptions::default()).unwrap();
//! assert!(store.get_range("a", 0, 2).is_ok());
//! assert!(store.get_range("a", 0, 2).unwrap_err().is_transient());
//! assert!(store.get_range("a", 0, 2).is_ok());
//! assert_eq!(store.injected(Op::GetRange), 1);
//! ```

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::storage::{Backend, ObjectInfo, Op, PutOptions, Retrieval, StorageError, Upload};

/// Which calls of an operation fail. Calls are numbered from 1, per operation, across all keys (and, for writes,
/// commits and reads, across all uploads and streams).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum When {
    /// The nth call and no other: a passing glitch.
    Nth(u64),
    /// The nth call and every later one: a store that went away.
    From(u64),
    /// Each call with probability `ratio`, decided by the call's number and `seed` alone: the same seed fails the
    /// same calls in every run, whatever the threads do.
    Fraction { ratio: f64, seed: u64 },
}

impl When {
    fn hits(self, n: u64) -> bool {
        match self {
            When::Nth(k) => n == k,
            When::From(k) => n >= k,
            When::Fraction { ratio, seed } => {
                // splitmix64 of (seed, n): independent draws without shared generator state.
                let mut z = seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^= z >> 31;
                ((z >> 11) as f64 / (1u64 << 53) as f64) < ratio
            }
        }
    }
}

/// Makes the error of an injected fault from the key of the failing call (empty for listings and cleanup).
type MakeError = Arc<dyn Fn(&str) -> StorageError + Send + Sync>;

/// The error a fault gives unless told otherwise: the connection was reset, which is transient
/// ([`StorageError::is_transient`]).
pub fn connection_reset(key: &str) -> StorageError {
    StorageError::io("faulty store", key, io::Error::new(io::ErrorKind::ConnectionReset, "injected fault"))
}

struct Rule {
    op: Op,
    when: When,
    error: MakeError,
}

struct State {
    rules: Vec<Rule>,
    calls: [AtomicU64; Op::ALL.len()],
    injected: [AtomicU64; Op::ALL.len()],
}

impl State {
    /// Counts a call of `op` on `key`; the error if a rule says this call fails.
    fn check(&self, op: Op, key: &str) -> Result<(), StorageError> {
        let n = self.calls[op as usize].fetch_add(1, Ordering::SeqCst) + 1;
        match self.rules.iter().find(|r| r.op == op && r.when.hits(n)) {
            Some(rule) => {
                self.injected[op as usize].fetch_add(1, Ordering::SeqCst);
                Err((rule.error)(key))
            }
            None => Ok(()),
        }
    }

    /// [`State::check`] for the `io` side of uploads and streams: the error keeps its kind.
    fn check_io(&self, op: Op, key: &str) -> io::Result<()> {
        self.check(op, key).map_err(|e| {
            let kind = match &e {
                StorageError::Io { source, .. } => source.kind(),
                _ => io::ErrorKind::Other,
            };
            io::Error::new(kind, e)
        })
    }
}

/// `inner`, failing the calls its rules choose. Build it with [`Faulty::new`] and [`Faulty::fail`].
pub struct Faulty {
    inner: Arc<dyn Backend>,
    state: Arc<State>,
}

impl Faulty {
    /// `inner`, failing nothing yet.
    pub fn new(inner: Arc<dyn Backend>) -> Faulty {
        Faulty {
            inner,
            state: Arc::new(State { rules: Vec::new(), calls: Default::default(), injected: Default::default() }),
        }
    }

    /// Also fails the calls of `op` that `when` chooses, with [`connection_reset`].
    pub fn fail(self, op: Op, when: When) -> Faulty {
        self.fail_with(op, when, connection_reset)
    }

    /// Also fails the calls of `op` that `when` chooses, with the error `make` builds from the call's key. When
    /// several rules choose a call, the first one added gives the error.
    pub fn fail_with(
        mut self,
        op: Op,
        when: When,
        make: impl Fn(&str) -> StorageError + Send + Sync + 'static,
    ) -> Faulty {
        let state = Arc::get_mut(&mut self.state).expect("rules are added before the store is used");
        state.rules.push(Rule { op, when, error: Arc::new(make) });
        self
    }

    /// How many calls of `op` were made, failed ones included.
    pub fn calls(&self, op: Op) -> u64 {
        self.state.calls[op as usize].load(Ordering::SeqCst)
    }

    /// How many calls of `op` were failed on purpose.
    pub fn injected(&self, op: Op) -> u64 {
        self.state.injected[op as usize].load(Ordering::SeqCst)
    }
}

struct FaultyUpload {
    inner: Box<dyn Upload>,
    state: Arc<State>,
    key: String,
}

impl Write for FaultyUpload {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.state.check_io(Op::Write, &self.key)?;
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl Upload for FaultyUpload {
    /// A failed commit drops the inner upload uncommitted: nothing appears under the key.
    fn commit(self: Box<Self>) -> Result<ObjectInfo, StorageError> {
        self.state.check(Op::Commit, &self.key)?;
        self.inner.commit()
    }
}

struct FaultyRead {
    inner: Box<dyn Read + Send>,
    state: Arc<State>,
    key: String,
}

impl Read for FaultyRead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.state.check_io(Op::Read, &self.key)?;
        self.inner.read(buf)
    }
}

impl Backend for Faulty {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn create(&self, key: &str, opts: &PutOptions) -> Result<Box<dyn Upload>, StorageError> {
        self.state.check(Op::Create, key)?;
        let inner = self.inner.create(key, opts)?;
        Ok(Box::new(FaultyUpload { inner, state: self.state.clone(), key: key.to_string() }))
    }
    fn get(&self, key: &str) -> Result<Box<dyn Read + Send>, StorageError> {
        self.state.check(Op::Get, key)?;
        let inner = self.inner.get(key)?;
        Ok(Box::new(FaultyRead { inner, state: self.state.clone(), key: key.to_string() }))
    }
    fn get_range(&self, key: &str, start: u64, len: u64) -> Result<Vec<u8>, StorageError> {
        self.state.check(Op::GetRange, key)?;
        self.inner.get_range(key, start, len)
    }
    fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StorageError> {
        self.state.check(Op::Head, key)?;
        self.inner.head(key)
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        self.state.check(Op::List, prefix)?;
        self.inner.list(prefix)
    }
    fn list_after(&self, prefix: &str, start_after: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        self.state.check(Op::List, prefix)?;
        self.inner.list_after(prefix, start_after)
    }
    fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.state.check(Op::Delete, key)?;
        self.inner.delete(key)
    }
    fn put_bytes(&self, key: &str, data: &[u8], opts: &PutOptions) -> Result<ObjectInfo, StorageError> {
        self.state.check(Op::PutBytes, key)?;
        self.inner.put_bytes(key, data, opts)
    }
    fn retrieval_state(&self, key: &str) -> Result<Retrieval, StorageError> {
        self.state.check(Op::RetrievalState, key)?;
        self.inner.retrieval_state(key)
    }
    fn start_retrieval(&self, key: &str) -> Result<Retrieval, StorageError> {
        self.state.check(Op::StartRetrieval, key)?;
        self.inner.start_retrieval(key)
    }
    fn cleanup(&self) -> Result<u64, StorageError> {
        self.state.check(Op::Cleanup, "")?;
        self.inner.cleanup()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::local::LocalStore;

    fn local(dir: &tempfile::TempDir) -> Arc<dyn Backend> {
        Arc::new(LocalStore::open(dir.path()).unwrap())
    }

    #[test]
    fn the_nth_call_fails_and_only_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Faulty::new(local(&dir)).fail(Op::Head, When::Nth(3));
        let failed: Vec<bool> = (0..5).map(|_| store.head("x").is_err()).collect();
        assert_eq!(failed, [false, false, true, false, false]);
        assert_eq!((store.calls(Op::Head), store.injected(Op::Head)), (5, 1));
        assert_eq!(store.calls(Op::List), 0, "other operations are counted apart");
    }

    #[test]
    fn from_the_nth_call_on_every_call_fails_with_the_chosen_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = Faulty::new(local(&dir)).fail_with(Op::List, When::From(2), |_| StorageError::Backend {
            store: "s".into(),
            message: "gone".into(),
            source: None,
        });
        assert!(store.list("").is_ok());
        for _ in 0..3 {
            let e = store.list_after("", "a").unwrap_err();
            assert!(matches!(&e, StorageError::Backend { message, .. } if message == "gone"), "{e:?}");
            assert!(!e.is_transient());
        }
    }

    #[test]
    fn a_fraction_of_calls_fails_the_same_way_for_the_same_seed() {
        let dir = tempfile::tempdir().unwrap();
        let run = |seed| {
            let store = Faulty::new(local(&dir)).fail(Op::Delete, When::Fraction { ratio: 0.25, seed });
            (0..400).map(|_| store.delete("x").is_err()).collect::<Vec<bool>>()
        };
        let a = run(1);
        assert_eq!(a, run(1));
        assert_ne!(a, run(2));
        let failed = a.iter().filter(|f| **f).count();
        assert!((70..130).contains(&failed), "about a quarter of 400 calls fail: {failed}");
    }

    #[test]
    fn uploads_and_streams_fail_their_writes_commits_and_reads() {
        let dir = tempfile::tempdir().unwrap();
        let store = Faulty::new(local(&dir)).fail(Op::Write, When::Nth(2)).fail(Op::Commit, When::Nth(1));
        let mut up = store.create("a", &PutOptions::default()).unwrap();
        up.write_all(b"one").unwrap();
        let e = up.write_all(b"two").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
        up.write_all(b"three").unwrap();
        assert!(up.commit().unwrap_err().is_transient());
        assert_eq!(store.head("a").unwrap(), None, "a failed commit leaves nothing under the key");
        store.put_bytes("a", b"0123456789", &PutOptions::default()).unwrap();

        let store = Faulty::new(local(&dir)).fail(Op::Read, When::Nth(2));
        let mut r = store.get("a").unwrap();
        let mut buf = [0u8; 4];
        assert_eq!(r.read(&mut buf).unwrap(), 4);
        assert_eq!(r.read(&mut buf).unwrap_err().kind(), io::ErrorKind::ConnectionReset);
        assert_eq!(store.calls(Op::Read), 2);
    }
}
