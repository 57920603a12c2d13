//! The monitoring webhook, replacing bakthat 0.6's BakManager report (`backup -k KEY`): after a successful backup
//! with a key, POST `{"key", "host", "size", "stored_filename", "backup_date"}` as JSON to the profile's
//! `webhook_url`. A failed report is the caller's to log; it never undoes the backup.
//!
//! This module only sends; it does not decide when (see [`super::Client::backup_monitored`]).

use std::time::Duration;

use serde_json::{json, Value};

use crate::model::BackupRecord;

/// How long a report may take before it is abandoned.
pub const TIMEOUT: Duration = Duration::from_secs(15);

/// The JSON body reported for a backup: `backup_date` is UTC epoch seconds, `size` the stored bytes.
pub fn payload(key: &str, host: &str, record: &BackupRecord) -> Value {
    json!({
        "key": key,
        "host": host,
        "size": record.size,
        "stored_filename": record.stored_filename,
        "backup_date": record.backup_date,
    })
}

/// POSTs `body` to `url`; any answer other than 2xx is an error (as text, for the log).
pub(crate) fn post(url: &str, body: &Value) -> Result<(), String> {
    let client = reqwest::blocking::Client::builder()
        .timeout(TIMEOUT)
        .user_agent(concat!("bakthat/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.to_string())?;
    let response = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(body).unwrap_or_default())
        .send()
        .map_err(|e| crate::error_chain(&e))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("the server answered {status}"))
    }
}
