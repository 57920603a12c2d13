//! A stored object as a [`RangeRead`]: how the archive reader fetches byte ranges from a store. One type for the
//! mount's reads and `restore --path`, so both keep the store's own error for their messages.
//!
//! Not here: which ranges to fetch (`archive::read`), caching them (`fs`).

use std::io;
use std::sync::Mutex;

use crate::archive::read::RangeRead;
use crate::storage::{Backend, StorageError};

/// The object `key` of `backend`, `len` bytes long. A failed read becomes an `io::Error` for the archive reader;
/// the store's own error is kept for [`ObjectRange::take_error`], so the caller can say what the store said.
pub(crate) struct ObjectRange<'a> {
    backend: &'a dyn Backend,
    key: &'a str,
    len: u64,
    error: Mutex<Option<StorageError>>,
}

impl<'a> ObjectRange<'a> {
    pub(crate) fn new(backend: &'a dyn Backend, key: &'a str, len: u64) -> Self {
        ObjectRange { backend, key, len, error: Mutex::new(None) }
    }

    /// The store's error behind the last failed read, if any.
    pub(crate) fn take_error(&self) -> Option<StorageError> {
        crate::lock(&self.error).take()
    }
}

impl RangeRead for ObjectRange<'_> {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_range(&self, start: u64, len: u64) -> io::Result<Vec<u8>> {
        self.backend.get_range(self.key, start, len).map_err(|e| {
            let msg = e.to_string();
            *crate::lock(&self.error) = Some(e);
            io::Error::other(msg)
        })
    }
}
