//! The local directory store, bakthat's default: one file per object in a directory.
//!
//! Writes are atomic: a temporary file named `.bakthat-tmp.<pid>.<random>.<key>` in the same directory, fsync,
//! rename, fsync of the directory. A killed process leaves only such temporary files, which [`Backend::cleanup`]
//! removes once their process is gone.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{check_key, Backend, ObjectInfo, PutOptions, StorageError, Upload};

const TMP_PREFIX: &str = ".bakthat-tmp.";

/// A directory of objects.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// Opens (and creates, mode 0700) the store directory.
    pub fn open(root: &Path) -> Result<Self, StorageError> {
        let store = LocalStore { root: root.to_path_buf() };
        if !root.is_dir() {
            fs::create_dir_all(root).map_err(|e| store.err("", e))?;
            let _ = fs::set_permissions(root, fs::Permissions::from_mode(0o700));
        }
        Ok(store)
    }

    /// The store directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> Result<PathBuf, StorageError> {
        check_key(key)?;
        if key.starts_with(TMP_PREFIX) {
            return Err(StorageError::BadKey { key: key.into(), reason: "reserved for temporary files" });
        }
        Ok(self.root.join(key))
    }

    fn err(&self, key: &str, e: io::Error) -> StorageError {
        if e.kind() == io::ErrorKind::NotFound && !key.is_empty() {
            return StorageError::NotFound { store: self.describe(), key: key.into() };
        }
        StorageError::io(self.describe(), key, e)
    }

    fn info(&self, key: &str, meta: &fs::Metadata) -> ObjectInfo {
        let modified = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
        ObjectInfo {
            key: key.into(),
            size: meta.len(),
            modified: modified.map(|d| d.as_secs() as i64),
            storage_class: None,
        }
    }
}

struct LocalUpload {
    store: LocalStore,
    key: String,
    tmp: PathBuf,
    file: Option<File>,
}

impl Write for LocalUpload {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.as_mut().ok_or_else(|| io::Error::other("upload already finished"))?.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().map_or(Ok(()), |f| f.flush())
    }
}

impl Upload for LocalUpload {
    fn commit(mut self: Box<Self>) -> Result<ObjectInfo, StorageError> {
        let file = self.file.take().ok_or_else(|| self.store.err(&self.key, io::Error::other("already committed")))?;
        let done = (|| {
            file.sync_all()?;
            let meta = file.metadata()?;
            drop(file);
            fs::rename(&self.tmp, self.store.root.join(&self.key))?;
            File::open(&self.store.root)?.sync_all()?;
            Ok(meta)
        })();
        match done {
            Ok(meta) => {
                self.tmp = PathBuf::new();
                Ok(self.store.info(&self.key, &meta))
            }
            Err(e) => Err(self.store.err(&self.key, e)),
        }
    }
}

impl Drop for LocalUpload {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            self.file.take();
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

impl Backend for LocalStore {
    fn kind(&self) -> &'static str {
        "local"
    }

    fn describe(&self) -> String {
        format!("local store {}", self.root.display())
    }

    fn create(&self, key: &str, _opts: &PutOptions) -> Result<Box<dyn Upload>, StorageError> {
        self.path(key)?;
        let mut rnd = [0u8; 6];
        getrandom::getrandom(&mut rnd).map_err(|e| self.err(key, io::Error::other(e.to_string())))?;
        let hex: String = rnd.iter().map(|b| format!("{b:02x}")).collect();
        let tmp = self.root.join(format!("{TMP_PREFIX}{}.{hex}.{key}", std::process::id()));
        let file =
            OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).map_err(|e| self.err(key, e))?;
        Ok(Box::new(LocalUpload { store: self.clone(), key: key.into(), tmp, file: Some(file) }))
    }

    fn get(&self, key: &str) -> Result<Box<dyn Read + Send>, StorageError> {
        let f = File::open(self.path(key)?).map_err(|e| self.err(key, e))?;
        Ok(Box::new(io::BufReader::with_capacity(1 << 20, f)))
    }

    fn get_range(&self, key: &str, start: u64, len: u64) -> Result<Vec<u8>, StorageError> {
        let mut f = File::open(self.path(key)?).map_err(|e| self.err(key, e))?;
        let size = f.metadata().map_err(|e| self.err(key, e))?.len();
        let end = start.saturating_add(len).min(size);
        let mut buf = vec![0u8; end.saturating_sub(start) as usize];
        f.seek(SeekFrom::Start(start)).and_then(|_| f.read_exact(&mut buf)).map_err(|e| self.err(key, e))?;
        Ok(buf)
    }

    fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StorageError> {
        match fs::metadata(self.path(key)?) {
            Ok(m) if m.is_file() => Ok(Some(self.info(key, &m))),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err(key, e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        let mut out = Vec::new();
        let rd = match fs::read_dir(&self.root) {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(self.err("", e)),
        };
        for ent in rd {
            let ent = ent.map_err(|e| self.err("", e))?;
            let Some(name) = ent.file_name().to_str().map(str::to_owned) else { continue };
            if !name.starts_with(prefix) || name.starts_with(TMP_PREFIX) {
                continue;
            }
            if let Ok(m) = ent.metadata() {
                if m.is_file() {
                    out.push(self.info(&name, &m));
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        match fs::remove_file(self.path(key)?) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.err(key, e)),
        }
    }

    fn cleanup(&self) -> Result<u64, StorageError> {
        let mut removed = 0;
        let Ok(rd) = fs::read_dir(&self.root) else { return Ok(0) };
        for ent in rd.flatten() {
            let name = ent.file_name();
            let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(TMP_PREFIX)) else { continue };
            let pid: Option<i32> = rest.split('.').next().and_then(|p| p.parse().ok());
            let alive = pid.is_some_and(|p| p as u32 != std::process::id() && process_alive(p));
            if !alive && pid.is_some_and(|p| p as u32 != std::process::id()) && fs::remove_file(ent.path()).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

fn process_alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks whether the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_is_invisible_until_commit_and_abort_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::open(&dir.path().join("store")).unwrap();
        let mut up = s.create("a.tgz", &PutOptions::default()).unwrap();
        up.write_all(b"hello").unwrap();
        assert!(s.head("a.tgz").unwrap().is_none());
        assert!(s.list("").unwrap().is_empty());
        let info = up.commit().unwrap();
        assert_eq!(info.size, 5);
        assert_eq!(s.get_range("a.tgz", 1, 3).unwrap(), b"ell");
        assert_eq!(s.get_range("a.tgz", 3, 100).unwrap(), b"lo");
        let mut up = s.create("b.tgz", &PutOptions::default()).unwrap();
        up.write_all(b"partial").unwrap();
        drop(up);
        let names: Vec<_> = fs::read_dir(s.root()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "{names:?}");
        s.delete("a.tgz").unwrap();
        s.delete("a.tgz").unwrap();
        assert!(matches!(s.get("a.tgz"), Err(StorageError::NotFound { .. })));
    }

    #[test]
    fn cleanup_removes_leftovers_of_dead_processes_only() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::open(dir.path()).unwrap();
        // A pid that cannot exist (above pid_max) stands for a killed backup.
        fs::write(dir.path().join(format!("{TMP_PREFIX}99999999.abcd.x.tgz")), b"junk").unwrap();
        let mine = s.create("y.tgz", &PutOptions::default()).unwrap();
        assert_eq!(s.cleanup().unwrap(), 1);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "the live upload's temp file stays");
        drop(mine);
    }

    #[test]
    fn bad_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::open(dir.path()).unwrap();
        for k in ["", "..", "a/b", ".bakthat-tmp.1.x"] {
            assert!(matches!(s.create(k, &PutOptions::default()), Err(StorageError::BadKey { .. })), "{k}");
        }
    }
}
