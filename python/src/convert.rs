//! Values crossing into Python: inventory rows as dicts with 0.6's fields, JSON values as Python objects, and
//! passwords and destinations coming in. Not here: the `Backups` class the rows become (`bakthat/models.py`).

use std::sync::Arc;

use bakthat::archive::Secret;
use bakthat::model::{BackupRecord, Destination};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};
use serde_json::Value;

use crate::errors;

/// An inventory row as a dict: 0.6's columns (`id`, `backend`, `backend_hash`, `backup_date`, `filename`,
/// `is_deleted`, `last_updated`, `metadata`, `size`, `stored_filename`, `tags` as one space-separated string),
/// plus `store` (which store holds it; `""` when unknown).
pub fn record<'py>(py: Python<'py>, r: &BackupRecord) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("id", r.id)?;
    d.set_item("backend", r.backend.as_str())?;
    d.set_item("backend_hash", r.backend_hash.as_deref())?;
    d.set_item("backup_date", r.backup_date)?;
    d.set_item("filename", &r.filename)?;
    d.set_item("is_deleted", r.is_deleted)?;
    d.set_item("last_updated", r.last_updated)?;
    d.set_item("metadata", json(py, &r.metadata)?)?;
    d.set_item("size", r.size)?;
    d.set_item("stored_filename", r.stored_filename.as_str())?;
    d.set_item("tags", &r.tags)?;
    d.set_item("store", r.store.as_str())?;
    Ok(d)
}

/// Rows as a list of dicts.
pub fn records<'py, 'r>(
    py: Python<'py>,
    rows: impl IntoIterator<Item = &'r BackupRecord>,
) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    for r in rows {
        list.append(record(py, r)?)?;
    }
    Ok(list)
}

/// A JSON value as the Python object `json.loads` would give.
pub fn json<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => pyo3::types::PyBool::new(py, *b).to_owned().into_any(),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => i.into_pyobject(py)?.into_any(),
            (None, Some(u)) => u.into_pyobject(py)?.into_any(),
            _ => n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any(),
        },
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(json(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(map) => {
            let d = PyDict::new(py);
            for (k, item) in map {
                d.set_item(k, json(py, item)?)?;
            }
            d.into_any()
        }
    })
}

/// Anything serde can write, through JSON.
pub fn serialized<'py>(py: Python<'py>, v: &impl serde::Serialize) -> PyResult<Bound<'py, PyAny>> {
    let value = serde_json::to_value(v).map_err(|e| errors::message(false, e.to_string()))?;
    json(py, &value)
}

/// A password given as `str` or `bytes`; `None` and the empty string mean no password (as in 0.6).
pub fn password(value: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Arc<Secret>>> {
    let Some(value) = value.filter(|v| !v.is_none()) else { return Ok(None) };
    let bytes: Vec<u8> = if let Ok(b) = value.cast::<PyBytes>() {
        b.as_bytes().to_vec()
    } else {
        value.extract::<String>()?.into_bytes()
    };
    Ok((!bytes.is_empty()).then(|| Arc::new(Secret::new(&bytes))))
}

/// A destination name (`local`, `s3`, `glacier`, `swift`); `None` and `""` mean the profile's default.
pub fn destination(name: Option<&str>) -> PyResult<Option<Destination>> {
    match name.filter(|n| !n.is_empty()) {
        None => Ok(None),
        Some(n) => {
            n.parse().map(Some).map_err(|e: bakthat::model::UnknownDestination| errors::message(true, e.to_string()))
        }
    }
}
