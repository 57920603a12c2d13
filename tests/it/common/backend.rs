//! One conformance body for every store (local, S3, Glacier, Swift): what the rest of bakthat relies on.

use std::io::{Read, Write};

use bakthat::storage::{Backend, PutOptions, Retrieval, StorageError};

/// Runs every check against `b`. `prefix` keeps concurrent runs on one bucket apart; `big` is the size of the
/// large object (make it exceed the backend's part size so multipart/segmented paths are exercised).
pub fn conformance(b: &dyn Backend, prefix: &str, big: usize) {
    let key = |k: &str| format!("{prefix}{k}");
    // Small put/get/head.
    let info = b.put_bytes(&key("small"), b"hello world", &PutOptions::default()).unwrap();
    assert_eq!(info.size, 11);
    let mut got = Vec::new();
    wait_ready(b, &key("small"));
    b.get(&key("small")).unwrap().read_to_end(&mut got).unwrap();
    assert_eq!(got, b"hello world");
    assert_eq!(b.head(&key("small")).unwrap().map(|i| i.size), Some(11));
    assert!(b.head(&key("missing")).unwrap().is_none());
    assert!(matches!(b.get(&key("missing")), Err(StorageError::NotFound { .. })), "missing objects are NotFound");

    // A streamed large object, written in odd-sized pieces.
    let data: Vec<u8> = (0..big).map(|i| (i * 31 + i / 7919) as u8).collect();
    let mut up = b.create(&key("big"), &PutOptions { size_hint: None, ..PutOptions::default() }).unwrap();
    for piece in data.chunks(1_000_003) {
        up.write_all(piece).unwrap();
    }
    assert!(b.head(&key("big")).unwrap().is_none(), "an upload is invisible until commit");
    let info = up.commit().unwrap();
    assert_eq!(info.size, big as u64);
    wait_ready(b, &key("big"));
    let mut got = Vec::new();
    b.get(&key("big")).unwrap().read_to_end(&mut got).unwrap();
    assert!(got == data, "large object round trip");
    for (s, l) in [(0u64, 10u64), (big as u64 - 5, 100), (1_048_570, 20), (big as u64 / 2, 4096)] {
        let r = b.get_range(&key("big"), s, l).unwrap();
        let e = (s + l).min(big as u64) as usize;
        assert_eq!(r, &data[s as usize..e], "range {s}+{l}");
    }

    // An aborted upload leaves nothing.
    let mut up = b.create(&key("aborted"), &PutOptions::default()).unwrap();
    up.write_all(&data[..100_000]).unwrap();
    drop(up);
    assert!(b.head(&key("aborted")).unwrap().is_none(), "an aborted upload leaves no object");

    // Listing by prefix, in key order.
    let listed: Vec<String> = b.list(prefix).unwrap().into_iter().map(|o| o.key).collect();
    assert_eq!(listed, vec![key("big"), key("small")]);

    // Delete is idempotent.
    b.delete(&key("small")).unwrap();
    b.delete(&key("small")).unwrap();
    assert!(b.head(&key("small")).unwrap().is_none());
    b.delete(&key("big")).unwrap();
    assert!(b.list(prefix).unwrap().is_empty());
}

/// Cold stores need a retrieval first; hot stores are ready at once.
fn wait_ready(b: &dyn Backend, key: &str) {
    let mut state = b.retrieval_state(key).unwrap();
    if state == Retrieval::NotStarted {
        state = b.start_retrieval(key).unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while state != Retrieval::Ready {
        assert!(std::time::Instant::now() < deadline, "{key} never became ready: {state:?}");
        std::thread::sleep(std::time::Duration::from_millis(100));
        state = b.retrieval_state(key).unwrap();
    }
}
