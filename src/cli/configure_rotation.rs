//! `configure_backups_rotation`: set a profile's rotation policy, interactively or from flags.

use anyhow::{anyhow, bail, Context as _, Result};
use clap::Parser;

use super::{ask, load_config, Cli, EXIT_OK};
use crate::config::{self, RotationConfig};

#[derive(Parser, Debug, Default)]
pub(super) struct RotationArgs {
    #[arg(long)]
    days: Option<i64>,
    #[arg(long)]
    weeks: Option<i64>,
    #[arg(long)]
    months: Option<i64>,
    /// monday..sunday, or 0 (monday) to 6 (sunday)
    #[arg(long)]
    first_week_day: Option<String>,
}

pub(super) fn run(cli: &Cli, a: &RotationArgs) -> Result<i32> {
    let mut config = load_config(cli)?;
    let mut p = config.profile(&cli.profile)?;
    let mut r: RotationConfig = p.rotation.clone().unwrap_or_default();
    let num = |s: Option<String>, what: &str| -> Result<Option<i64>> {
        s.map(|v| v.parse::<i64>().with_context(|| format!("{what} must be a whole number, got {v:?}"))).transpose()
    };
    let from_flags = a.days.is_some() || a.weeks.is_some() || a.months.is_some() || a.first_week_day.is_some();
    let first = if from_flags {
        r.days = a.days.or(r.days);
        r.weeks = a.weeks.or(r.weeks);
        r.months = a.months.or(r.months);
        a.first_week_day.clone()
    } else {
        r.days = num(ask("Number of days to keep: ", None)?, "days")?.or(r.days);
        r.weeks = num(ask("Number of weeks to keep: ", None)?, "weeks")?.or(r.weeks);
        r.months = num(ask("Number of months to keep: ", None)?, "months")?.or(r.months);
        ask("First week day (monday..sunday, saturday by default): ", None)?
    };
    if let Some(f) = first {
        let day = f.parse::<i64>().ok().filter(|d| (0..=6).contains(d)).or_else(|| config::parse_weekday(&f));
        r.first_week_day = Some(day.ok_or_else(|| anyhow!("unknown week day {f:?}; use monday..sunday or 0..6"))?);
    }
    for (k, v) in [("days", r.days), ("weeks", r.weeks), ("months", r.months)] {
        if v.is_some_and(|v| v < 0) {
            bail!("{k} must not be negative");
        }
    }
    p.rotation = Some(r);
    config.set_profile(&cli.profile, p);
    config.save()?;
    println!("saved the rotation policy of profile {} in {}", cli.profile, config.path().display());
    Ok(EXIT_OK)
}
