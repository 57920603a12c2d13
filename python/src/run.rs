//! Running a long call with the GIL released and Ctrl-C working.
//!
//! The action runs on a scoped worker thread while the calling thread waits without the GIL, waking every 50 ms to
//! run Python's signal handlers (`PyErr_CheckSignals`, which only the main thread does). A KeyboardInterrupt
//! there cancels the call's own token ([`Cancel`], which its context holds): that action stops at its next block
//! of I/O, removes what it had written under temporary names, and the call raises the KeyboardInterrupt. Calls
//! running in other threads go on (Python delivers Ctrl-C to the main thread's call only); a caller's
//! `bakthat.Cancel` token stops a call from any thread. Not here: what the actions are (see `lib.rs`).

use std::sync::mpsc;
use std::time::Duration;

use bakthat::ops::Cancel;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

/// Runs `f` without the GIL; a KeyboardInterrupt meanwhile cancels `cancel` (the token of this call's context) and
/// is raised once `f` has stopped.
pub fn interruptible<T: Send>(py: Python<'_>, cancel: &Cancel, f: impl FnOnce() -> T + Send) -> PyResult<T> {
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
                            cancel.cancel();
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
