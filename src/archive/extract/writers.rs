//! Threads that create the small regular files of an extraction while the reading thread goes on with the stream.
//!
//! A restore of many small files is bound by the kernel creating them (open, write, chmod, set times, close: most
//! of a restore's time is system time on one thread). The reading thread hands a file whose bytes it has read
//! whole to these threads and moves on; what it must see on disk before it goes on (a hard link's target, a name
//! it is about to replace or walk through, the end of the stream) it waits for with [`Writers::wait_idle`].
//!
//! Not here: deciding what is safe to create (the extractor checks every name before handing a file over) or
//! where; a writer only creates the path it is given, exclusively and without following symlinks.

use std::fs::{FileTimes, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::SystemTime;

use super::ExtractError;

/// Bytes of handed-over files waiting to be written at most; the reading thread waits beyond it.
const QUEUED_BYTES: usize = 8 << 20;

/// One file to create.
pub(super) struct Job {
    /// Where to create it (inside the staging tree).
    pub staged: PathBuf,
    /// Its final name, for messages.
    pub final_path: PathBuf,
    pub data: Vec<u8>,
    /// Permission bits, already masked.
    pub mode: u32,
    pub mtime: Option<SystemTime>,
    /// Owner and group, when they are restored.
    pub owner: Option<(u32, u32)>,
}

#[derive(Default)]
struct State {
    /// Jobs handed over and not finished.
    queued: usize,
    queued_bytes: usize,
    /// The first error of any writer.
    error: Option<ExtractError>,
}

type Shared = Arc<(Mutex<State>, Condvar)>;

/// The writer threads of one extraction. Dropping it waits for them.
pub(super) struct Writers {
    tx: Option<Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
    shared: Shared,
}

impl Writers {
    /// Starts up to `n` writer threads. When the system refuses threads, fewer run; with none, [`Writers::submit`]
    /// writes the file itself.
    pub fn start(n: usize) -> Writers {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let shared: Shared = Arc::default();
        let threads = (0..n)
            .map_while(|i| {
                let (rx, shared) = (rx.clone(), shared.clone());
                std::thread::Builder::new().name(format!("bakthat-write-{i}")).spawn(move || work(&rx, &shared)).ok()
            })
            .collect();
        Writers { tx: Some(tx), threads, shared }
    }

    /// Hands a file over; waits while too many bytes are queued. Fails with a writer's error, if one failed.
    pub fn submit(&self, job: Job) -> Result<(), ExtractError> {
        if self.threads.is_empty() {
            return write(&job);
        }
        let (lock, cond) = &*self.shared;
        let mut s = lock.lock().unwrap_or_else(|p| p.into_inner());
        while s.error.is_none() && s.queued > 0 && s.queued_bytes + job.data.len() > QUEUED_BYTES {
            s = cond.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        if let Some(e) = s.error.take() {
            return Err(e);
        }
        s.queued += 1;
        s.queued_bytes += job.data.len();
        drop(s);
        let tx = self.tx.as_ref().expect("submit after finish");
        tx.send(job).map_err(|_| ExtractError::Archive(io::Error::other("the writer threads stopped")))
    }

    /// Waits until every handed-over file is written; fails with a writer's error, if one failed.
    pub fn wait_idle(&self) -> Result<(), ExtractError> {
        let (lock, cond) = &*self.shared;
        let mut s = lock.lock().unwrap_or_else(|p| p.into_inner());
        while s.queued > 0 && s.error.is_none() {
            s = cond.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        match s.error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl Drop for Writers {
    fn drop(&mut self) {
        drop(self.tx.take());
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn work(rx: &Mutex<Receiver<Job>>, shared: &Shared) {
    loop {
        let job = match rx.lock().unwrap_or_else(|p| p.into_inner()).recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        let len = job.data.len();
        let failed = shared.0.lock().unwrap_or_else(|p| p.into_inner()).error.is_some();
        // After a failure the extraction is abandoned: the rest is only counted off.
        let res = if failed { Ok(()) } else { write(&job) };
        let (lock, cond) = &**shared;
        let mut s = lock.lock().unwrap_or_else(|p| p.into_inner());
        s.queued -= 1;
        s.queued_bytes -= len;
        if let Err(e) = res {
            s.error.get_or_insert(e);
        }
        cond.notify_all();
    }
}

fn write(job: &Job) -> Result<(), ExtractError> {
    let io_err = |source| ExtractError::Io { path: job.final_path.clone(), source };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&job.staged)
        .map_err(io_err)?;
    file.write_all(&job.data).map_err(io_err)?;
    if let Some((uid, gid)) = job.owner {
        std::os::unix::fs::fchown(&file, Some(uid), Some(gid)).map_err(io_err)?;
    }
    file.set_permissions(std::fs::Permissions::from_mode(job.mode)).map_err(io_err)?;
    if let Some(t) = job.mtime {
        file.set_times(FileTimes::new().set_modified(t)).map_err(io_err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(staged: PathBuf, data: &[u8]) -> Job {
        Job { final_path: staged.clone(), staged, data: data.to_vec(), mode: 0o644, mtime: None, owner: None }
    }

    /// A writer's failure comes back (once) from the next wait or hand-over, naming the file's final path; the
    /// files after it are not written.
    #[test]
    fn a_writer_error_reaches_the_reading_thread() {
        let dir = tempfile::tempdir().unwrap();
        let w = Writers::start(2);
        w.submit(job(dir.path().join("ok"), b"ok")).unwrap();
        w.wait_idle().unwrap();
        assert_eq!(std::fs::read(dir.path().join("ok")).unwrap(), b"ok");
        let missing = dir.path().join("no-such-dir/f");
        w.submit(job(missing.clone(), b"x")).unwrap();
        match w.wait_idle() {
            Err(ExtractError::Io { path, source }) => {
                assert_eq!(path, missing);
                assert_eq!(source.kind(), io::ErrorKind::NotFound);
            }
            other => panic!("expected the writer's Io error, got {other:?}"),
        }
        // An existing name is never overwritten (create_new).
        w.submit(job(dir.path().join("ok"), b"replaced")).unwrap();
        assert!(matches!(w.wait_idle(), Err(ExtractError::Io { .. })));
        assert_eq!(std::fs::read(dir.path().join("ok")).unwrap(), b"ok");
    }

    /// Without threads (the system refused them) a hand-over writes the file at once.
    #[test]
    fn without_threads_the_hand_over_writes_the_file_itself() {
        let dir = tempfile::tempdir().unwrap();
        let w = Writers::start(0);
        w.submit(job(dir.path().join("f"), b"data")).unwrap();
        assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"data");
        assert!(matches!(w.submit(job(dir.path().join("f"), b"again")), Err(ExtractError::Io { .. })));
        w.wait_idle().unwrap();
    }

    /// More bytes than the queue holds: the hand-over waits instead of buffering them all, and every file lands.
    #[test]
    fn hand_over_waits_beyond_the_queue_limit() {
        let dir = tempfile::tempdir().unwrap();
        let w = Writers::start(1);
        let big = vec![7u8; QUEUED_BYTES / 3];
        for i in 0..10 {
            w.submit(job(dir.path().join(i.to_string()), &big)).unwrap();
            let s = w.shared.0.lock().unwrap();
            assert!(s.queued_bytes <= QUEUED_BYTES, "{}", s.queued_bytes);
        }
        w.wait_idle().unwrap();
        for i in 0..10 {
            assert_eq!(std::fs::metadata(dir.path().join(i.to_string())).unwrap().len(), big.len() as u64);
        }
    }
}
