//! bakthat: compress, encrypt and upload backups; list them from a local inventory; browse them with a FUSE mount.
//!
//! For library use start at [`client::Client`]; its module docs have a backup-script example (0.6's `BakHelper`)
//! and [`client::plugin`] a plugin example.
//!
//! Architecture. Dependencies point one way, and `scripts/deps.sh` prints the module graph and fails on a cycle
//! (`scripts/test.sh` runs it):
//! - [`model`]: names, timestamps, destinations and records; no I/O.
//! - [`archive`]: the archive format (tar, independent gzip members, chunked authenticated encryption, entry
//!   index) and the legacy bakthat 0.6 (beefish) reader.
//! - [`storage`]: the `Backend` trait and its implementations.
//! - [`inventory`]: the SQLite inventory; the only module that names rusqlite.
//! - [`rotation`] and [`interval`]: grandfather-father-son retention as a pure function, and 0.6's interval grammar.
//! - [`config`]: `~/.bakthat.yml` profiles.
//! - [`journal`]: the sync journal's entries, written to a store with a key; a leaf beside `archive` and `storage`.
//! - [`stores`]: a profile's stores, built in one place, and the one place that starts a cold retrieval.
//! - [`ops`]: backup, restore, show, delete, rotate, composed from the above (a backup or delete appends to the
//!   journal).
//! - [`kv`]: KeyValue, small JSON values in the profile's S3 bucket (0.6's `helper.KeyValue`).
//! - [`sync`]: several hosts, one inventory: reading the journal back, the 0.6 sync server and client, and when to
//!   sync (`sync.auto`).
//! - [`client`]: the one entry point for every action: events, hooks, plugins, the webhook and auto-sync around
//!   `ops`; the command line and the mount's `/incoming` both back up through it.
//! - [`fs`]: the mount's logic in plain types (tree, reads through a block cache, cold storage, status, /incoming);
//!   no fuser in it.
//! - [`fuse`]: the thin fuser adapter over [`fs`]; the only module that names fuser.
//! - [`mount`]: the mount's lifecycle (mount point checks, `/proc/mounts`, the detached process) around [`fuse`].
//! - [`cli`]: the command line, one file per command; the only place for anyhow.

pub mod archive;
pub mod cli;
pub mod client;
pub mod config;
pub mod fs;
pub mod fuse;
pub mod interval;
pub mod inventory;
pub mod journal;
pub mod kv;
pub mod model;
pub mod mount;
pub mod ops;
pub mod rotation;
pub mod storage;
pub mod stores;
pub mod sync;
#[cfg(test)]
mod test_heap;

/// An error and its causes on one line, `a: b: c`: what logs and one-line messages show.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    join_causes(std::iter::successors(Some(e), |e| e.source()))
}

/// Joins an error and its causes with `: `, leaving out a cause whose text the line already holds (many errors
/// put their source in their own message too, which printed `… (os error 28): No space left on device (os error
/// 28)`).
pub fn join_causes<'a, 'b: 'a>(chain: impl Iterator<Item = &'a (dyn std::error::Error + 'b)>) -> String {
    let mut line = String::new();
    for cause in chain {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// Locks `m` even when another thread panicked while holding it. bakthat's mutexes guard caches, tables and
/// counters that each update leaves consistent, so one panicked thread must not make every later call panic too.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod chain_tests {
    use std::io;

    #[derive(Debug, thiserror::Error)]
    #[error("writing /out/f: {source}")]
    struct Writing {
        #[source]
        source: io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("restoring site")]
    struct Restoring(#[source] Writing);

    // Regression (issue 12): a cause that its parent's message already holds was printed again:
    // `… (os error 28): No space left on device (os error 28)`.
    #[test]
    fn a_cause_already_in_the_line_is_not_repeated() {
        let e = Restoring(Writing { source: io::Error::from_raw_os_error(28) });
        let line = super::error_chain(&e);
        assert_eq!(line, format!("restoring site: writing /out/f: {}", io::Error::from_raw_os_error(28)));
        assert_eq!(line.matches("os error 28").count(), 1, "{line}");
        let any = anyhow::Error::new(Restoring(Writing { source: io::Error::from_raw_os_error(28) }));
        assert_eq!(super::join_causes(any.chain()), line);
    }
}
