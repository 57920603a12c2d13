//! The one retry policy of the network stores: how many attempts, how long to wait between them (exponential
//! backoff with jitter), and which failures are worth another attempt ([`Transient`]; for a [`StorageError`] that
//! is [`StorageError::is_transient`]). Swift's requests and resumed downloads, and the ranged reads of S3 and
//! Glacier, go through it.
//!
//! Time is a parameter: the policy waits through a [`Sleep`], which tests replace with one that only records.
//!
//! Not here: the AWS SDK's own retries of S3 and Glacier requests (configured from [`super::aws::AwsTuning`]).

use std::sync::Arc;
use std::time::Duration;

use super::StorageError;

/// Whether a failure may go away if the call is made again.
pub trait Transient {
    fn is_transient(&self) -> bool;
}

impl Transient for StorageError {
    fn is_transient(&self) -> bool {
        StorageError::is_transient(self)
    }
}

/// Waits. [`ThreadSleep`] really does; tests pass one that records.
pub trait Sleep: Send + Sync {
    fn sleep(&self, d: Duration);
}

/// [`Sleep`] with `std::thread::sleep`.
pub struct ThreadSleep;

impl Sleep for ThreadSleep {
    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }
}

/// How often and how patiently to try.
#[derive(Clone)]
pub struct Retry {
    /// Attempts in all, the first included (at least 1).
    pub attempts: u32,
    /// The wait before the first retry; each later one doubles it, up to `max_delay`.
    pub first_delay: Duration,
    pub max_delay: Duration,
    sleep: Arc<dyn Sleep>,
}

impl std::fmt::Debug for Retry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retry")
            .field("attempts", &self.attempts)
            .field("first_delay", &self.first_delay)
            .field("max_delay", &self.max_delay)
            .finish_non_exhaustive()
    }
}

impl Retry {
    /// A policy that really sleeps.
    pub fn new(attempts: u32, first_delay: Duration, max_delay: Duration) -> Retry {
        Retry { attempts: attempts.max(1), first_delay, max_delay, sleep: Arc::new(ThreadSleep) }
    }

    /// The same policy, waiting through `sleep`.
    pub fn with_sleep(self, sleep: Arc<dyn Sleep>) -> Retry {
        Retry { sleep, ..self }
    }

    /// The longest wait before retry `n` (1 for the first retry): `first_delay * 2^(n-1)`, at most `max_delay`.
    pub fn backoff(&self, n: u32) -> Duration {
        let factor = 1u32 << n.saturating_sub(1).min(20);
        self.first_delay.saturating_mul(factor).min(self.max_delay)
    }

    /// The wait before retry `n`: between half of [`Retry::backoff`] and all of it, at random ("equal jitter"),
    /// so that clients that failed together do not retry together.
    pub fn delay(&self, n: u32) -> Duration {
        let full = self.backoff(n);
        let mut r = [0u8; 4];
        let fraction = match getrandom::getrandom(&mut r) {
            Ok(()) => f64::from(u32::from_le_bytes(r)) / f64::from(u32::MAX),
            Err(_) => 1.0,
        };
        full / 2 + (full / 2).mul_f64(fraction)
    }

    /// Waits before retry `n`.
    pub fn pause(&self, n: u32) {
        self.sleep.sleep(self.delay(n));
    }

    /// Calls `op` with the attempt number (from 1) until it succeeds, fails with an error that is not transient, or
    /// has used every attempt; returns its last result.
    pub fn run<T, E: Transient>(&self, mut op: impl FnMut(u32) -> Result<T, E>) -> Result<T, E> {
        let mut n = 1;
        loop {
            match op(n) {
                Err(e) if e.is_transient() && n < self.attempts => {
                    self.pause(n);
                    n += 1;
                }
                done => return done,
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io;
    use std::sync::Mutex;

    /// A [`Sleep`] that only records how long it was asked to wait.
    #[derive(Default)]
    pub(crate) struct Recorded(pub Mutex<Vec<Duration>>);

    impl Sleep for Recorded {
        fn sleep(&self, d: Duration) {
            self.0.lock().unwrap().push(d);
        }
    }

    fn reset() -> StorageError {
        StorageError::io("s", "k", io::Error::new(io::ErrorKind::ConnectionReset, "reset"))
    }

    fn policy(sleep: &Arc<Recorded>) -> Retry {
        Retry::new(4, Duration::from_millis(100), Duration::from_millis(300)).with_sleep(sleep.clone())
    }

    #[test]
    fn transient_failures_are_retried_with_growing_jittered_waits() {
        let slept = Arc::new(Recorded::default());
        let mut calls = Vec::new();
        let r = policy(&slept).run(|n| {
            calls.push(n);
            if n < 4 {
                Err(reset())
            } else {
                Ok("done")
            }
        });
        assert_eq!(r.unwrap(), "done");
        assert_eq!(calls, [1, 2, 3, 4]);
        let waits = slept.0.lock().unwrap().clone();
        assert_eq!(waits.len(), 3);
        // 100, 200, then 400 capped at 300 ms; each between half and all of that.
        for (w, full) in waits.iter().zip([100, 200, 300]) {
            let full = Duration::from_millis(full);
            assert!(*w >= full / 2 && *w <= full, "{w:?} within [{:?}, {full:?}]", full / 2);
        }
    }

    #[test]
    fn the_last_error_is_returned_after_the_last_attempt() {
        let slept = Arc::new(Recorded::default());
        let mut calls = 0;
        let r: Result<(), _> = policy(&slept).run(|_| {
            calls += 1;
            Err(reset())
        });
        assert!(r.unwrap_err().is_transient());
        assert_eq!((calls, slept.0.lock().unwrap().len()), (4, 3));
    }

    #[test]
    fn other_failures_are_not_retried() {
        let slept = Arc::new(Recorded::default());
        let mut calls = 0;
        let r: Result<(), _> = policy(&slept).run(|_| {
            calls += 1;
            Err(StorageError::NotFound { store: "s".into(), key: "k".into() })
        });
        assert!(matches!(r, Err(StorageError::NotFound { .. })));
        assert_eq!((calls, slept.0.lock().unwrap().len()), (1, 0));
    }
}
