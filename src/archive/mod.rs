//! The archive format: tar, independent gzip members, chunked authenticated encryption, entry index.
//! Knows nothing about stores or the inventory.

pub mod crypto;
pub mod extract;
pub mod legacy;
pub mod index;
pub mod members;
pub mod pack;
