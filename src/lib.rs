//! bakthat: compress, encrypt and upload backups; list them from a local inventory; browse them with a FUSE mount.
//!
//! For library use start at [`client::Client`]; its module docs have a backup-script example (0.6's `BakHelper`)
//! and [`client::plugin`] a plugin example.
//!
//! Architecture (dependencies point one way):
//! - [`model`]: names, timestamps and records; no I/O.
//! - [`archive`]: the archive format (tar, independent gzip members, chunked authenticated encryption, entry
//!   index) and the legacy bakthat 0.6 (beefish) reader.
//! - [`storage`]: the `Backend` trait and its implementations.
//! - [`inventory`]: the SQLite inventory; the only module that names rusqlite.
//! - [`rotation`]: grandfather-father-son retention as a pure function.
//! - [`config`]: `~/.bakthat.yml` profiles.
//! - [`ops`]: backup, restore, show, delete, rotate, composed from the above.
//! - [`client`]: the library front door: a client with events, hooks, a backup-script helper and plugins.
//! - [`cli`]: the command line; the only place for anyhow.

pub mod archive;
pub mod cli;
pub mod client;
pub mod config;
pub mod interval;
pub mod inventory;
pub mod model;
pub mod ops;
pub mod rotation;
pub mod storage;
