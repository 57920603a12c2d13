//! `rotate_backups`: delete backups of a name by the profile's grandfather-father-son policy, or by `--keep-*`
//! flags for one run.

use anyhow::Result;
use clap::Parser;

use super::delete::{print_plan, tombstone_password};
use super::{client, Cli, EXIT_OK};
use crate::model::Destination;
use crate::ops::{self, OpsError};
use crate::rotation::{Policy, NO_POLICY};

#[derive(Parser, Debug)]
pub(super) struct RotateArgs {
    /// The backup name whose backups to rotate (matched exactly)
    filename: String,
    /// The store to look in: local, s3, glacier or swift (default: the profile's default_destination)
    #[arg(short, long)]
    destination: Option<Destination>,
    /// Only print keep/delete with the reason for each
    #[arg(long)]
    dry_run: bool,
    /// Keep the oldest backup of each of the last N days (with any --keep-* flag, the flags are the whole policy
    /// for this run and the profile's rotation: block is not used)
    #[arg(long, value_name = "N")]
    keep_daily: Option<u32>,
    /// Keep the oldest backup of each of the last N weeks
    #[arg(long, value_name = "N")]
    keep_weekly: Option<u32>,
    /// Keep the oldest backup of each of the last N calendar months
    #[arg(long, value_name = "N")]
    keep_monthly: Option<u32>,
    /// Keep the oldest backup of each of the last N calendar years
    #[arg(long, value_name = "N")]
    keep_yearly: Option<u32>,
    /// Keep the oldest backup of each of the last N hours
    #[arg(long, value_name = "N")]
    keep_hourly: Option<u32>,
}

impl RotateArgs {
    /// The policy the `--keep-*` flags give, if any was passed; weeks start as the profile says (else Saturday).
    fn flag_policy(&self, profile_week_start: Option<i64>) -> Option<Policy> {
        let flags = [self.keep_yearly, self.keep_monthly, self.keep_weekly, self.keep_daily, self.keep_hourly];
        if flags.iter().all(Option::is_none) {
            return None;
        }
        let first_week_day = profile_week_start
            .and_then(|d| u8::try_from(d).ok())
            .and_then(|d| chrono::Weekday::try_from(d).ok())
            .unwrap_or(NO_POLICY.first_week_day);
        Some(Policy {
            years: self.keep_yearly.unwrap_or(0),
            months: self.keep_monthly.unwrap_or(0),
            weeks: self.keep_weekly.unwrap_or(0),
            days: self.keep_daily.unwrap_or(0),
            hours: self.keep_hourly.unwrap_or(0),
            first_week_day,
            ..NO_POLICY
        })
    }
}

pub(super) fn run(cli: &Cli, a: &RotateArgs) -> Result<i32> {
    let client = client(cli)?;
    let password = if a.dry_run { None } else { tombstone_password(&client, &a.filename)? };
    let week_start = client.profile().rotation.as_ref().map(|r| r.week_start());
    let mut opts = ops::RotateOptions {
        destination: a.destination,
        dry_run: a.dry_run,
        policy: a.flag_policy(week_start),
        password,
    };
    let plan = match client.rotate(&a.filename, &opts) {
        // Without a policy, a dry run shows what a sensible one would do instead of only refusing.
        Err(e) if a.dry_run && matches!(e.as_ops(), Some(OpsError::NoRotation { .. })) => {
            let p = ops::SUGGESTED_POLICY;
            eprintln!(
                "bakthat: profile {} has no rotation policy; this is what --keep-daily {} --keep-weekly {} \
                 --keep-monthly {} would do (nothing is deleted)",
                client.profile_name(),
                p.days,
                p.weeks,
                p.months
            );
            opts.policy = Some(p);
            client.rotate(&a.filename, &opts)?
        }
        other => other?,
    };
    print_plan(&plan, a.dry_run);
    Ok(EXIT_OK)
}
