//! `stats`: totals of the inventory's backups per store and per name (no network).

use std::io::{self, Write};

use anyhow::Result;
use clap::Parser;

use super::ls::{any_encrypted, password_for, write_table};
use super::{context, human, Cli, EXIT_OK};
use crate::ops::{self, NameStats};

#[derive(Parser, Debug)]
pub(super) struct StatsArgs {
    /// JSON output: {total, stores: [{store, backups, stored_bytes}], names: {NAME: totals}}; totals are
    /// {backups, stored_bytes, files, plain_bytes, ratio, unknown, oldest, newest, oldest_utc, newest_utc}
    #[arg(long)]
    json: bool,
}

pub(super) fn run(cli: &Cli, a: &StatsArgs) -> Result<i32> {
    let ctx = context(cli)?;
    let secret = password_for(any_encrypted(&ctx)?)?;
    let s = ops::stats(&ctx, secret.as_deref())?;
    let mut out = io::stdout().lock();
    if a.json {
        serde_json::to_writer_pretty(&mut out, &s)?;
        writeln!(out)?;
        return Ok(EXIT_OK);
    }
    if s.total.backups == 0 {
        writeln!(out, "no backups yet")?;
        return Ok(EXIT_OK);
    }
    let header = |first: &str| {
        ["backups", "stored", "files", "plain", "ratio", "oldest", "newest"].iter().fold(
            vec![first.to_string()],
            |mut v, h| {
                v.push(h.to_string());
                v
            },
        )
    };
    let mut rows = vec![header("name")];
    rows.extend(s.names.iter().map(|(n, t)| row(n, t)));
    rows.push(row("total", &s.total));
    write_table(&mut out, rows, &[1, 2, 3, 4, 5])?;
    writeln!(out)?;
    let mut rows = vec![vec!["store".to_string(), "backups".into(), "stored".into()]];
    rows.extend(s.stores.iter().map(|st| vec![st.store.clone(), st.backups.to_string(), human(st.stored_bytes)]));
    write_table(&mut out, rows, &[1, 2])?;
    if s.total.unknown > 0 {
        writeln!(
            out,
            "\n{} backup(s) without a known plain size (encrypted without a password, or 0.6 archives)",
            s.total.unknown
        )?;
    }
    Ok(EXIT_OK)
}

fn row(name: &str, t: &NameStats) -> Vec<String> {
    let date = |d: &Option<String>| d.as_deref().map(|s| s[..10].to_string()).unwrap_or_default();
    vec![
        name.to_string(),
        t.backups.to_string(),
        human(t.stored_bytes),
        t.files.to_string(),
        human(t.plain_bytes),
        t.ratio.map(|r| format!("{r:.2}")).unwrap_or_else(|| "-".into()),
        date(&t.oldest_utc),
        date(&t.newest_utc),
    ]
}
