//! `bakthat._native`: the small native module under the `bakthat` Python package. Each function is one action of
//! the Rust core's [`Client`], run with the GIL released and Ctrl-C working (see [`run`]); results come back as
//! plain dicts and lists, which the pure-Python modules (`bakthat/__init__.py`, `helper.py`, `models.py`, …) turn
//! into 0.6's return shapes. This crate holds no backup logic: the core crate does it all, and does not know Python.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bakthat::client::{Client, ClientError};
use bakthat::inventory::JobKind;
use bakthat::model::BackupRecord;
use bakthat::ops::{self, BackupOptions, RestoreOptions, RotateOptions, ShowQuery};
use bakthat::storage::s3::{PresignMethod, UnknownMethod};
use pyo3::exceptions::PyIndexError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use uuid::Uuid;

mod convert;
mod errors;
mod host;
mod run;
mod target;

use target::Target;

/// Runs `f` on a client for `target`, off the GIL; raises what a Python callback of its sessions raised, else the
/// action's error.
fn act<T: Send>(
    py: Python<'_>,
    target: &Target,
    f: impl FnOnce(&Client) -> Result<T, ClientError> + Send,
) -> PyResult<T> {
    let cancel = target.cancel();
    let (result, sessions) = run::interruptible(py, &cancel, || {
        let client = match target.client(&cancel) {
            Ok(c) => c,
            Err(e) => return (Err(e), Vec::new()),
        };
        let sessions: Arc<Mutex<Vec<Uuid>>> = Arc::default();
        let seen = sessions.clone();
        client.events().on_any(move |ev| {
            let mut seen = seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if !seen.contains(&ev.session_id) {
                seen.push(ev.session_id);
            }
        });
        let result = f(&client);
        drop(client);
        let sessions = sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        (result, sessions)
    })?;
    if let Some(err) = host::take_errors(&sessions) {
        return Err(err);
    }
    result.map_err(errors::client)
}

/// Backs up `source`; returns the inventory row as a dict, plus `warnings` (files that could not be read whole).
#[pyfunction]
#[pyo3(signature = (target, source, destination=None, tags=Vec::new(), name=None, password=None, exclude_file=None, reduced_redundancy=false, key=None))]
#[allow(clippy::too_many_arguments)]
fn backup<'py>(
    py: Python<'py>,
    target: Target,
    source: PathBuf,
    destination: Option<&str>,
    tags: Vec<String>,
    name: Option<String>,
    password: Option<&Bound<'py, PyAny>>,
    exclude_file: Option<PathBuf>,
    reduced_redundancy: bool,
    key: Option<String>,
) -> PyResult<Bound<'py, PyDict>> {
    let rules = bakthat::cli::excludes::Rules { exclude_file, ..Default::default() };
    let filter = bakthat::cli::excludes::filter(&source, &rules)
        .map_err(|e| errors::message(false, bakthat::join_causes(e.chain())))?
        .filter;
    let opts = BackupOptions {
        source,
        destination: convert::destination(destination)?,
        tags: tags.into_iter().filter(|t| !t.is_empty()).collect(),
        name: name.filter(|n| !n.is_empty()),
        password: convert::password(password)?,
        filter,
        storage_class: reduced_redundancy.then(|| "REDUCED_REDUNDANCY".to_string()),
        ..BackupOptions::default()
    };
    let out = act(py, &target, |client| match &key {
        Some(k) => client.backup_monitored(&opts, k),
        None => client.backup(&opts),
    })?;
    let d = convert::record(py, &out.record)?;
    let warnings: Vec<String> = out.warnings.iter().map(|w| format!("{}: {}", w.path.display(), w.message)).collect();
    d.set_item("warnings", warnings)?;
    Ok(d)
}

/// Restores the newest backup of `name` (or an exact stored name) into `to` (default: the current directory);
/// returns its row.
#[pyfunction]
#[pyo3(signature = (target, name, destination=None, password=None, to=None, force=false))]
fn restore<'py>(
    py: Python<'py>,
    target: Target,
    name: String,
    destination: Option<&str>,
    password: Option<&Bound<'py, PyAny>>,
    to: Option<PathBuf>,
    force: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let opts = RestoreOptions {
        name,
        destination: convert::destination(destination)?,
        to,
        force,
        password: convert::password(password)?,
        paths: Vec::new(),
    };
    let out = act(py, &target, |client| client.restore(&opts));
    match out {
        Ok(out) => convert::record(py, &out.record),
        Err(e) => Err(with_job(py, &target, e)),
    }
}

/// Fills `job` of a RetrievalPending with the inventory's row of its retrieval job.
fn with_job(py: Python<'_>, target: &Target, e: PyErr) -> PyErr {
    if !e.is_instance_of::<errors::RetrievalPending>(py) {
        return e;
    }
    let value = e.value(py);
    let Ok(stored) = value.getattr("stored_filename").and_then(|s| s.extract::<String>()) else { return e };
    let job = target.client(&target.cancel()).ok().and_then(|c| {
        [JobKind::ArchiveRetrieval, JobKind::S3Restore]
            .into_iter()
            .find_map(|kind| c.inventory().job(&stored, kind).ok().flatten())
    });
    if let Some(job) = job {
        let d = PyDict::new(py);
        let _ = d.set_item("job_id", &job.job_id);
        let _ = d.set_item("backend", job.backend.as_str());
        let _ = d.set_item("kind", format!("{:?}", job.kind));
        let _ = d.set_item("status", format!("{:?}", job.status).to_lowercase());
        let _ = d.set_item("created_at", job.created_at);
        let _ = d.set_item("ready_at", job.ready_at);
        let _ = value.setattr("job", d);
    }
    e
}

/// The rows of one `show` call, kept as Rust values: `bakthat.models.Backups` objects hold one index into it and
/// build their fields (a dict) on first use, so listing 10,000 rows makes 10,000 small objects and no dicts.
#[pyclass(frozen, module = "bakthat._native")]
struct Rows {
    rows: Vec<BackupRecord>,
}

#[pymethods]
impl Rows {
    fn __len__(&self) -> usize {
        self.rows.len()
    }

    /// Row `i` as a dict: 0.6's fields and `store` (see `convert::record`).
    fn row<'py>(&self, py: Python<'py>, i: usize) -> PyResult<Bound<'py, PyDict>> {
        let r = self.rows.get(i).ok_or_else(|| PyIndexError::new_err(format!("row {i} of {}", self.rows.len())))?;
        convert::record(py, r)
    }
}

/// Rows of the inventory, newest change first: `query` is a literal substring of the name or stored name,
/// `destinations` limits the stores (all when empty), `tags` must all be present (whole words); 0.6's
/// `older_than` (backup_date below), `backup_date` (equal) and `last_updated_gt` (last_updated at least) filter
/// too. Returns `(rows, text)`: the rows as a [`Rows`], and with `lines` the command line's `show` output into a
/// pipe for them (one tab-separated line each, newline-terminated), else None.
#[pyfunction]
#[pyo3(signature = (target, query=None, destinations=Vec::new(), tags=Vec::new(), include_deleted=false, lines=false, older_than=None, backup_date=None, last_updated_gt=None))]
#[allow(clippy::too_many_arguments)]
fn show(
    py: Python<'_>,
    target: Target,
    query: Option<String>,
    destinations: Vec<String>,
    tags: Vec<String>,
    include_deleted: bool,
    lines: bool,
    older_than: Option<i64>,
    backup_date: Option<i64>,
    last_updated_gt: Option<i64>,
) -> PyResult<(Rows, Option<String>)> {
    let destinations =
        destinations.iter().map(|d| convert::destination(Some(d))).collect::<PyResult<Vec<_>>>()?.into_iter();
    let q = ShowQuery { text: query, destinations: destinations.flatten().collect(), tags, include_deleted };
    act(py, &target, |client| {
        let mut rows = client.show(&q)?;
        rows.retain(|r| {
            older_than.is_none_or(|t| r.backup_date < t)
                && backup_date.is_none_or(|t| r.backup_date == t)
                && last_updated_gt.is_none_or(|t| r.last_updated >= t)
        });
        let text = lines.then(|| {
            let mut text = String::with_capacity(rows.len() * 120);
            for r in &rows {
                text.push_str(&bakthat::cli::show_line(r));
                text.push('\n');
            }
            text
        });
        Ok((Rows { rows }, text))
    })
}

/// The newest live row named `name` (or with that stored name), or None.
#[pyfunction]
#[pyo3(signature = (target, name, destination=None))]
fn match_filename<'py>(
    py: Python<'py>,
    target: Target,
    name: String,
    destination: Option<&str>,
) -> PyResult<Option<Bound<'py, PyDict>>> {
    let dest = convert::destination(destination)?;
    let row = act(py, &target, |client| Ok(client.inventory().newest(&name, dest)?))?;
    row.map(|r| convert::record(py, &r)).transpose()
}

/// Deletes the newest backup of `name`; returns its row.
#[pyfunction]
#[pyo3(signature = (target, name, destination=None, password=None))]
fn delete<'py>(
    py: Python<'py>,
    target: Target,
    name: String,
    destination: Option<&str>,
    password: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let dest = convert::destination(destination)?;
    let secret = convert::password(password)?;
    let row = act(py, &target, |client| client.delete(&name, dest, secret.as_deref()))?;
    convert::record(py, &row)
}

/// Deletes the backups named exactly `name` older than `interval`; returns the deleted rows.
#[pyfunction]
#[pyo3(signature = (target, name, interval, destination=None, password=None))]
fn delete_older_than<'py>(
    py: Python<'py>,
    target: Target,
    name: String,
    interval: String,
    destination: Option<&str>,
    password: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyList>> {
    let dest = convert::destination(destination)?;
    let secret = convert::password(password)?;
    let plan = act(py, &target, |client| client.delete_older_than(&name, &interval, dest, false, secret.as_deref()))?;
    convert::records(py, plan.iter().filter(|p| !p.keep).map(|p| &p.record))
}

/// Applies the profile's rotation policy to the backups named exactly `name`; returns the deleted rows.
#[pyfunction]
#[pyo3(signature = (target, name, destination=None, password=None))]
fn rotate_backups<'py>(
    py: Python<'py>,
    target: Target,
    name: String,
    destination: Option<&str>,
    password: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyList>> {
    let opts = RotateOptions {
        destination: convert::destination(destination)?,
        dry_run: false,
        policy: None,
        password: convert::password(password)?,
    };
    let plan = act(py, &target, |client| client.rotate(&name, &opts))?;
    convert::records(py, plan.iter().filter(|p| !p.keep).map(|p| &p.record))
}

/// The paths of the newest backup of `name` (from the inventory's copy of its index), under `path` if given.
#[pyfunction]
#[pyo3(signature = (target, name, path=None, destination=None, password=None))]
fn ls<'py>(
    py: Python<'py>,
    target: Target,
    name: String,
    path: Option<String>,
    destination: Option<&str>,
    password: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let dest = convert::destination(destination)?;
    let secret = convert::password(password)?;
    let listing =
        act(py, &target, |client| Ok(ops::ls(client.ctx(), &name, dest, path.as_deref(), secret.as_deref())?))?;
    convert::serialized(py, &listing)
}

/// KeyValue: stores `json_text` under `key` in the profile's S3 bucket.
#[pyfunction]
#[pyo3(signature = (target, key, json_text, compress=true, password=None))]
fn kv_set(
    py: Python<'_>,
    target: Target,
    key: String,
    json_text: String,
    compress: bool,
    password: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    let value: serde_json::Value =
        serde_json::from_str(&json_text).map_err(|e| errors::message(false, format!("value is not JSON: {e}")))?;
    let secret = convert::password(password)?;
    kv_act(py, &target, |kv| kv.set_key(&key, &value, compress, secret.as_deref()).map_err(Box::new))
}

/// KeyValue: the JSON text under `key`, or None when there is no such object.
#[pyfunction]
#[pyo3(signature = (target, key, password=None))]
fn kv_get(
    py: Python<'_>,
    target: Target,
    key: String,
    password: Option<&Bound<'_, PyAny>>,
) -> PyResult<Option<String>> {
    let secret = convert::password(password)?;
    let value = kv_act(py, &target, |kv| kv.get_key(&key, secret.as_deref()).map_err(Box::new))?;
    Ok(value.map(|v| v.to_string()))
}

/// KeyValue: deletes `key`; whether it existed.
#[pyfunction]
fn kv_delete(py: Python<'_>, target: Target, key: String) -> PyResult<bool> {
    kv_act(py, &target, |kv| kv.delete_key(&key).map_err(Box::new))
}

/// KeyValue: a presigned URL of `key` for `method` (GET, PUT, DELETE or HEAD), valid `expires_in` seconds.
#[pyfunction]
#[pyo3(signature = (target, key, expires_in, method="GET"))]
fn kv_url(py: Python<'_>, target: Target, key: String, expires_in: u64, method: &str) -> PyResult<String> {
    let method: PresignMethod = method.parse().map_err(|e: UnknownMethod| errors::message(false, e.to_string()))?;
    kv_act(py, &target, |kv| kv.get_key_url(&key, Duration::from_secs(expires_in), method).map_err(Box::new))
}

/// Why a KeyValue call failed: opening the profile's client, or the call.
enum KvFailure {
    Client(ClientError),
    Kv(bakthat::kv::KvError),
}

fn kv_act<T: Send>(
    py: Python<'_>,
    target: &Target,
    f: impl FnOnce(&bakthat::kv::KeyValue<'_>) -> Result<T, Box<bakthat::kv::KvError>> + Send,
) -> PyResult<T> {
    let cancel = target.cancel();
    let result = run::interruptible(py, &cancel, || -> Result<T, Box<KvFailure>> {
        let client = target.client(&cancel).map_err(|e| Box::new(KvFailure::Client(e)))?;
        let kv = client.kv().map_err(|e| Box::new(KvFailure::Kv(e)))?;
        f(&kv).map_err(|e| Box::new(KvFailure::Kv(*e)))
    })?;
    result.map_err(|e| match *e {
        KvFailure::Kv(kv) => errors::kv(kv),
        KvFailure::Client(c) => errors::client(c),
    })
}

/// Syncs the inventory: with the sync server when the profile sets `sync.url`, else with the store's journal.
/// Returns the counts of the report.
#[pyfunction]
#[pyo3(signature = (target, destination=None, password=None, rebuild=false))]
fn sync<'py>(
    py: Python<'py>,
    target: Target,
    destination: Option<&str>,
    password: Option<&Bound<'py, PyAny>>,
    rebuild: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let dest = convert::destination(destination)?;
    let secret = convert::password(password)?;
    let cancel = target.cancel();
    let report = run::interruptible(py, &cancel, || {
        let client = target.client(&cancel).map_err(errors_text)?;
        bakthat::sync::run(client.ctx(), dest, secret.as_deref(), rebuild).map_err(|e| bakthat::error_chain(&e))
    })?
    .map_err(|line| errors::message(false, line))?;
    let d = PyDict::new(py);
    d.set_item("listed", report.listed)?;
    d.set_item("fetched", report.fetched)?;
    d.set_item("inserted", report.inserted)?;
    d.set_item("updated", report.updated)?;
    d.set_item("unchanged", report.unchanged)?;
    d.set_item("unreadable", report.unreadable.clone())?;
    d.set_item("rejected", report.rejected.clone())?;
    Ok(d)
}

/// Forgets the sync server state (client id, sync_ts).
#[pyfunction]
fn reset_sync(py: Python<'_>, target: Target) -> PyResult<()> {
    let cancel = target.cancel();
    run::interruptible(py, &cancel, || {
        let client = target.client(&cancel).map_err(errors_text)?;
        bakthat::sync::client::reset(client.ctx()).map_err(|e| bakthat::error_chain(&e))
    })?
    .map_err(|line| errors::message(false, line))
}

fn errors_text(e: ClientError) -> String {
    bakthat::error_chain(&e)
}

/// The Glacier archive ids the inventory knows: `[{filename, archive_id, size}]`.
#[pyfunction]
fn glacier_inventory<'py>(py: Python<'py>, target: Target) -> PyResult<Bound<'py, PyAny>> {
    let rows = act(py, &target, |client| Ok(ops::show_local_glacier_inventory(client.ctx())?))?;
    convert::serialized(py, &rows)
}

/// The cold-storage jobs the inventory knows: `[{filename, job_id, backend, kind, status, created_at, ready_at}]`.
#[pyfunction]
fn jobs<'py>(py: Python<'py>, target: Target) -> PyResult<Bound<'py, PyList>> {
    let jobs = act(py, &target, |client| Ok(client.inventory().jobs()?))?;
    let list = PyList::empty(py);
    for job in jobs {
        let d = PyDict::new(py);
        d.set_item("filename", &job.target)?;
        d.set_item("job_id", &job.job_id)?;
        d.set_item("backend", job.backend.as_str())?;
        d.set_item("kind", format!("{:?}", job.kind))?;
        d.set_item("status", format!("{:?}", job.status).to_lowercase())?;
        d.set_item("created_at", job.created_at)?;
        d.set_item("ready_at", job.ready_at)?;
        list.append(d)?;
    }
    Ok(list)
}

/// The profile's settings as JSON text (what plugins get as `self.conf`).
#[pyfunction]
fn profile_conf(target: Target) -> PyResult<String> {
    let config = target.config().map_err(|e| errors::client(ClientError::Config(e)))?;
    let profile = config.profile(&target.2).map_err(|e| errors::client(ClientError::Config(e)))?;
    serde_json::to_string(&profile).map_err(|e| errors::message(false, e.to_string()))
}

/// 0.6's interval grammar (`2D1h`, `3M`): the number of seconds. The empty string is refused.
#[pyfunction]
fn interval_seconds(text: &str) -> PyResult<i64> {
    bakthat::interval::parse_interval(text).map_err(|e| errors::message(false, e.to_string()))
}

/// Runs the command line on `argv` (the first item is the program name) in this process, with the plugin host
/// installed, and returns its exit code.
#[pyfunction]
fn run_cli(py: Python<'_>, argv: Vec<String>) -> i32 {
    host::CLI.store(true, std::sync::atomic::Ordering::SeqCst);
    let code = py.detach(|| bakthat::cli::main_from(argv));
    // The command line handles SIGINT itself (exit 130); Python's own handler saw it too: drop its KeyboardInterrupt.
    let _ = py.check_signals();
    code
}

/// Installs the plugin host: `dispatch(event_name, session_id, records, error)` gets every event of every client of
/// this process, `setup_plugins(profile_name, conf_json)` each new client whose profile lists plugins.
#[pyfunction]
fn _install_host(dispatch: Py<PyAny>, setup_plugins: Py<PyAny>) -> bool {
    bakthat::client::host::install(Arc::new(host::PyHost { dispatch: Arc::new(dispatch), setup_plugins }))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    errors::register(m)?;
    m.add_class::<target::PyCancel>()?;
    m.add_class::<Rows>()?;
    m.add_function(wrap_pyfunction!(backup, m)?)?;
    m.add_function(wrap_pyfunction!(restore, m)?)?;
    m.add_function(wrap_pyfunction!(show, m)?)?;
    m.add_function(wrap_pyfunction!(match_filename, m)?)?;
    m.add_function(wrap_pyfunction!(delete, m)?)?;
    m.add_function(wrap_pyfunction!(delete_older_than, m)?)?;
    m.add_function(wrap_pyfunction!(rotate_backups, m)?)?;
    m.add_function(wrap_pyfunction!(ls, m)?)?;
    m.add_function(wrap_pyfunction!(kv_set, m)?)?;
    m.add_function(wrap_pyfunction!(kv_get, m)?)?;
    m.add_function(wrap_pyfunction!(kv_delete, m)?)?;
    m.add_function(wrap_pyfunction!(kv_url, m)?)?;
    m.add_function(wrap_pyfunction!(sync, m)?)?;
    m.add_function(wrap_pyfunction!(reset_sync, m)?)?;
    m.add_function(wrap_pyfunction!(glacier_inventory, m)?)?;
    m.add_function(wrap_pyfunction!(jobs, m)?)?;
    m.add_function(wrap_pyfunction!(profile_conf, m)?)?;
    m.add_function(wrap_pyfunction!(interval_seconds, m)?)?;
    m.add_function(wrap_pyfunction!(run_cli, m)?)?;
    m.add_function(wrap_pyfunction!(_install_host, m)?)?;
    Ok(())
}
