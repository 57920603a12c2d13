//! Test support, shared by the unit tests, the integration tests in `tests/` and the mount tests: a counting store
//! ([`counting`], which is [`Metered`] with its meter at hand), a store that plays cold storage ([`ColdStore`]), a
//! store that fails chosen calls on purpose ([`Faulty`], after mountpoint-s3's `failure_client`) and deterministic
//! test data ([`bytes`], [`text`]).
//!
//! Public, and compiled into the library, so that every test target (and code built on bakthat that wants to test
//! its own error handling) can use it without a feature flag; nothing in the tool itself uses it.
//!
//! Not here: server doubles. S3, Glacier and Swift are tested against real servers (moto, Swift all-in-one; see
//! `scripts/`).

use std::sync::Arc;

use super::metered::{Meter, Metered};
use super::Backend;

mod cold;
mod faulty;

pub use cold::ColdStore;
pub use faulty::{connection_reset, Faulty, When};

/// `inner` with its requests counted by operation: `store.meter().count(Op::GetRange)`.
pub fn counting(inner: Arc<dyn Backend>) -> Arc<Metered> {
    Arc::new(Metered::new(inner, Meter::new()))
}

/// `len` pseudo-random bytes (incompressible); the same `seed` gives the same bytes.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    xorshift(seed).take(len).map(|x| x as u8).collect()
}

/// `len` bytes of English-looking text (compressible); the same `seed` gives the same text.
pub fn text(seed: u64, len: usize) -> Vec<u8> {
    const WORDS: &[u8; 44] = b"the quick brown fox jumps over the lazy dog\n";
    xorshift(seed).take(len).enumerate().map(|(i, x)| WORDS[(x as usize + i) % WORDS.len()]).collect()
}

/// An endless xorshift64 sequence started from `seed`.
fn xorshift(seed: u64) -> impl Iterator<Item = u64> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407) | 1;
    std::iter::from_fn(move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        Some(x)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_data_is_deterministic_and_seed_dependent() {
        assert_eq!(bytes(7, 1000), bytes(7, 1000));
        assert_ne!(bytes(7, 1000), bytes(8, 1000));
        assert_eq!(&bytes(7, 1000)[..10], &bytes(7, 10)[..]);
        // The values the three former copies produced: data written by earlier runs stays comparable.
        assert_eq!(bytes(1, 4), [61, 247, 94, 32]);
        let t = text(2, 2000);
        assert!(t.iter().all(|b| b"the quick brown fox jumps over the lazy dog\n".contains(b)));
    }
}
