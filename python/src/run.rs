//! Running a long call with the GIL released and Ctrl-C working.
//!
//! The action runs on a scoped worker thread while the calling thread waits without the GIL, waking every 50 ms to
//! run Python's signal handlers (`PyErr_CheckSignals`, which only the main thread does). A KeyboardInterrupt
//! there sets the core's interrupt flag, the one the command line's SIGINT handler sets: the action stops at its
//! next block of I/O, removes what it had written under temporary names, and the call raises the
//! KeyboardInterrupt. The flag is process-wide, so Ctrl-C stops every bakthat call running in the process, as it
//! stops the command line; it is cleared when the last running call returns. Other threads may run calls at the
//! same time (each waits for its own worker). Not here: what the actions are (see `lib.rs`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

/// Calls in flight, to clear the interrupt flag when the last one returns.
static RUNNING: AtomicUsize = AtomicUsize::new(0);

struct Running;

impl Running {
    fn enter() -> Running {
        if RUNNING.fetch_add(1, Ordering::SeqCst) == 0 {
            // A flag left from an interrupted run with nothing running any more is stale.
            bakthat::ops::interrupt_flag().store(false, Ordering::SeqCst);
        }
        Running
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if RUNNING.fetch_sub(1, Ordering::SeqCst) == 1 {
            bakthat::ops::interrupt_flag().store(false, Ordering::SeqCst);
        }
    }
}

/// Runs `f` without the GIL; a KeyboardInterrupt meanwhile stops it and is raised once it has stopped.
pub fn interruptible<T: Send>(py: Python<'_>, f: impl FnOnce() -> T + Send) -> PyResult<T> {
    let _running = Running::enter();
    let mut interrupted: Option<PyErr> = None;
    let result = std::thread::scope(|s| {
        let (tx, rx) = mpsc::channel();
        // In a mutex only to be shareable with the GIL-free closure below (a Receiver is not Sync).
        let rx = std::sync::Mutex::new(rx);
        let worker = std::thread::Builder::new()
            .name("bakthat".into())
            .spawn_scoped(s, move || {
                let _ = tx.send(f());
            })
            .map_err(|e| PyRuntimeError::new_err(format!("cannot start a thread: {e}")))?;
        loop {
            let received = py.detach(|| {
                let rx = rx.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                rx.recv_timeout(Duration::from_millis(50))
            });
            match received {
                Ok(value) => return Ok(value),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Err(e) = py.check_signals() {
                        if interrupted.is_none() {
                            bakthat::ops::interrupt();
                            interrupted = Some(e);
                        }
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let why = match worker.join() {
                        Err(panic) => panic
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "unknown panic".into()),
                        Ok(()) => "the worker ended without a result".into(),
                    };
                    return Err(PyRuntimeError::new_err(format!("bakthat panicked: {why}")));
                }
            }
        }
    });
    match interrupted {
        Some(e) => Err(e),
        None => result,
    }
}
