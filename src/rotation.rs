//! Grandfather-father-son rotation as a pure function of (backup dates, now, policy).
//!
//! [`plan`] reproduces the `grandfatherson` 1.2+ library that bakthat 0.6 called from `rotate_backups`: for each
//! unit with a count `n > 0` (years, months, weeks, days, hours, minutes, seconds) it keeps the oldest backup of
//! each of the last `n` periods of that unit, ending with the period that contains `now`; backups newer than
//! `now` are always kept. On top of that, bakthat never deletes the newest backup of a set.
//!
//! Weeks start on [`Policy::first_week_day`] both for grouping backups and for the window's start (1.2+ semantics;
//! 1.1, which 0.6 shipped with, grouped by Saturday weeks whatever the setting). The two agree for the default,
//! Saturday.
//!
//! This module is not: a reader of the inventory or config (callers pass plain datetimes and a [`Policy`], which
//! [`policy_from_rotation_map`] builds from 0.6's `rotation` settings), a clock (callers pass `now`), nor a deleter
//! (it only says what to keep and why). It works on one backup set; choosing which backups form a set is the
//! caller's job. [`keep_chains`] then keeps what kept incremental backups need (also pure).

use std::collections::BTreeMap;
use std::fmt;

use chrono::{Datelike, Days, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Timelike, Weekday};
use thiserror::Error;

mod chains;
pub use chains::keep_chains;

/// How many periods of each unit to keep, and the day weeks start on.
///
/// All counts zero ([`Policy::is_empty`]) keeps only the newest backup and any backup dated after `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Keep the oldest backup of each of the last `years` calendar years.
    pub years: u32,
    /// Keep the oldest backup of each of the last `months` calendar months.
    pub months: u32,
    /// Keep the oldest backup of each of the last `weeks` weeks (starting on `first_week_day`).
    pub weeks: u32,
    /// Keep the oldest backup of each of the last `days` days.
    pub days: u32,
    /// Keep the oldest backup of each of the last `hours` hours.
    pub hours: u32,
    /// Keep the oldest backup of each of the last `minutes` minutes.
    pub minutes: u32,
    /// Keep the oldest backup of each of the last `seconds` seconds.
    pub seconds: u32,
    /// The day weeks start on. Saturday by default, as in bakthat 0.6.
    pub first_week_day: Weekday,
}

/// Every count zero, weeks from Saturday (0.6's default): [`Policy::default`], usable in a `const`.
pub const NO_POLICY: Policy =
    Policy { years: 0, months: 0, weeks: 0, days: 0, hours: 0, minutes: 0, seconds: 0, first_week_day: Weekday::Sat };

impl Default for Policy {
    fn default() -> Self {
        NO_POLICY
    }
}

impl Policy {
    /// True when every count is zero, so the policy keeps nothing but the newest backup and future ones.
    pub fn is_empty(&self) -> bool {
        Unit::ALL.iter().all(|&unit| self.count(unit) == 0)
    }

    /// The count for one unit.
    pub fn count(&self, unit: Unit) -> u32 {
        match unit {
            Unit::Years => self.years,
            Unit::Months => self.months,
            Unit::Weeks => self.weeks,
            Unit::Days => self.days,
            Unit::Hours => self.hours,
            Unit::Minutes => self.minutes,
            Unit::Seconds => self.seconds,
        }
    }

    fn count_mut(&mut self, unit: Unit) -> &mut u32 {
        match unit {
            Unit::Years => &mut self.years,
            Unit::Months => &mut self.months,
            Unit::Weeks => &mut self.weeks,
            Unit::Days => &mut self.days,
            Unit::Hours => &mut self.hours,
            Unit::Minutes => &mut self.minutes,
            Unit::Seconds => &mut self.seconds,
        }
    }
}

/// A rotation unit, from the longest to the shortest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Unit {
    /// Calendar years (January 1 to December 31).
    Years,
    /// Calendar months.
    Months,
    /// Seven-day weeks starting on [`Policy::first_week_day`].
    Weeks,
    /// Days, midnight to midnight.
    Days,
    /// Hours.
    Hours,
    /// Minutes.
    Minutes,
    /// Seconds.
    Seconds,
}

impl Unit {
    /// Every unit, longest first.
    pub const ALL: [Unit; 7] =
        [Unit::Years, Unit::Months, Unit::Weeks, Unit::Days, Unit::Hours, Unit::Minutes, Unit::Seconds];

    /// The unit's key in a 0.6 `rotation` setting: `years`, `months`, … `seconds`.
    pub fn key(self) -> &'static str {
        match self {
            Unit::Years => "years",
            Unit::Months => "months",
            Unit::Weeks => "weeks",
            Unit::Days => "days",
            Unit::Hours => "hours",
            Unit::Minutes => "minutes",
            Unit::Seconds => "seconds",
        }
    }

    /// The start of the period of this unit that contains `dt` ("mask" in grandfatherson).
    fn bucket(self, dt: NaiveDateTime, first_week_day: Weekday) -> NaiveDateTime {
        let date = dt.date();
        let time = dt.time();
        let (date, h, m, s) = match self {
            Unit::Seconds => (date, time.hour(), time.minute(), time.second()),
            Unit::Minutes => (date, time.hour(), time.minute(), 0),
            Unit::Hours => (date, time.hour(), 0, 0),
            Unit::Days => (date, 0, 0, 0),
            Unit::Weeks => {
                let back = (i64::from(date.weekday().num_days_from_monday())
                    - i64::from(first_week_day.num_days_from_monday()))
                .rem_euclid(7);
                // `back` is 0..=6; only a date in the first week chrono can represent could underflow.
                (date.checked_sub_days(Days::new(back.unsigned_abs())).unwrap_or(NaiveDate::MIN), 0, 0, 0)
            }
            Unit::Months => (date.with_day(1).unwrap_or(date), 0, 0, 0),
            Unit::Years => (NaiveDate::from_ymd_opt(date.year(), 1, 1).unwrap_or(date), 0, 0, 0),
        };
        // hour() < 24, minute() < 60 and second() < 60 always hold, so this cannot fail.
        date.and_time(NaiveTime::from_hms_opt(h, m, s).unwrap_or(NaiveTime::MIN))
    }

    /// The start of the oldest of the last `number` periods ending with the one containing `now` (`number >= 1`).
    ///
    /// Where grandfatherson would overflow (a window reaching before the earliest representable date) the window
    /// starts at [`NaiveDateTime::MIN`], i.e. it covers every backup up to `now`.
    fn window_start(self, now: NaiveDateTime, number: u32, first_week_day: Weekday) -> NaiveDateTime {
        let back = i64::from(number) - 1;
        let bucket = self.bucket(now, first_week_day);
        let step = match self {
            Unit::Seconds => TimeDelta::try_seconds(back),
            Unit::Minutes => TimeDelta::try_minutes(back),
            Unit::Hours => TimeDelta::try_hours(back),
            Unit::Days => TimeDelta::try_days(back),
            Unit::Weeks => TimeDelta::try_weeks(back),
            Unit::Months => {
                // grandfatherson's arithmetic, with Python's floor division and modulo.
                let mut year = i64::from(now.year());
                let mut month = i64::from(now.month()) - back;
                if month < 0 {
                    year += month.div_euclid(12);
                    month = month.rem_euclid(12);
                }
                if month == 0 {
                    year -= 1;
                    month = 12;
                }
                return first_of(year, month);
            }
            Unit::Years => return first_of(i64::from(now.year()) - back, 1),
        };
        step.and_then(|step| bucket.checked_sub_signed(step)).unwrap_or(NaiveDateTime::MIN)
    }
}

/// Midnight on the first of the given month, or the earliest representable datetime if the year is out of range.
fn first_of(year: i64, month: i64) -> NaiveDateTime {
    let date = i32::try_from(year)
        .ok()
        .zip(u32::try_from(month).ok())
        .and_then(|(year, month)| NaiveDate::from_ymd_opt(year, month, 1));
    date.map_or(NaiveDateTime::MIN, |date| date.and_time(NaiveTime::MIN))
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// Why a backup is kept or deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Kept: dated after `now` (grandfatherson always keeps those).
    Future,
    /// Kept: the newest backup of the set, which bakthat never deletes.
    Newest,
    /// Kept: the oldest backup of the period of `unit` starting at `bucket`, which lies in that unit's window.
    Oldest {
        /// The unit whose window keeps it.
        unit: Unit,
        /// The start of the period it is the oldest of.
        bucket: NaiveDateTime,
    },
    /// Deleted: older than the window of every unit the policy uses.
    OutsideAllWindows,
    /// Deleted: inside some unit's window, but an older backup already represents each of its periods.
    NotFirstInBucket,
    /// Kept: a kept incremental backup needs it (its parent, or its parent's parent, …); names the nearest one.
    NeededBy(String),
}

impl Reason {
    /// A short human explanation, e.g. "oldest of week starting 2013-07-13" or "outside every window".
    pub fn describe(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Future => f.write_str("newer than now"),
            Reason::Newest => f.write_str("newest backup"),
            Reason::Oldest { unit, bucket } => match unit {
                Unit::Years => write!(f, "oldest of year {}", bucket.format("%Y")),
                Unit::Months => write!(f, "oldest of month {}", bucket.format("%Y-%m")),
                Unit::Weeks => write!(f, "oldest of week starting {}", bucket.format("%Y-%m-%d")),
                Unit::Days => write!(f, "oldest of day {}", bucket.format("%Y-%m-%d")),
                Unit::Hours => write!(f, "oldest of hour {}", bucket.format("%Y-%m-%d %H:00")),
                Unit::Minutes => write!(f, "oldest of minute {}", bucket.format("%Y-%m-%d %H:%M")),
                Unit::Seconds => write!(f, "oldest of second {}", bucket.format("%Y-%m-%d %H:%M:%S")),
            },
            Reason::OutsideAllWindows => f.write_str("outside every window"),
            Reason::NotFirstInBucket => f.write_str("not the oldest of its period in any window"),
            Reason::NeededBy(name) => write!(f, "needed by {name}"),
        }
    }
}

/// The verdict on one input backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Position of the backup in the slice given to [`plan`].
    pub index: usize,
    /// Its date, as given.
    pub date: NaiveDateTime,
    /// Whether to keep it.
    pub keep: bool,
    /// Kept: every reason that keeps it, in the order [`Reason::Future`], [`Reason::Newest`], then
    /// [`Reason::Oldest`] from the longest unit to the shortest. Deleted: exactly one reason.
    pub reasons: Vec<Reason>,
}

/// Decides which backups of one backup set to keep.
///
/// `dates` are UTC wall-clock datetimes of the backups of ONE backup set; `now` is UTC. Returns one Decision per
/// input, in input order. Duplicate datetimes are all kept or all deleted together (grandfatherson works on a set).
/// The newest backup is never deleted (bakthat's rule, on top of grandfatherson), reason [`Reason::Newest`].
pub fn plan(dates: &[NaiveDateTime], now: NaiveDateTime, policy: &Policy) -> Vec<Decision> {
    // Group equal dates: `unique` is the sorted set of dates, `group[i]` the position of `dates[i]` in it.
    let mut order: Vec<usize> = (0..dates.len()).collect();
    order.sort_by_key(|&i| dates[i]);
    let mut unique: Vec<NaiveDateTime> = Vec::with_capacity(dates.len());
    let mut group = vec![0; dates.len()];
    for i in order {
        if unique.last() != Some(&dates[i]) {
            unique.push(dates[i]);
        }
        group[i] = unique.len() - 1;
    }

    // Per unique date: the Oldest reasons that keep it, and whether any window covers it.
    let mut oldest: Vec<Vec<Reason>> = vec![Vec::new(); unique.len()];
    let mut in_window = vec![false; unique.len()];
    for unit in Unit::ALL {
        let number = policy.count(unit);
        if number == 0 {
            continue;
        }
        let start = unit.window_start(now, number, policy.first_week_day);
        let first = unique.partition_point(|dt| *dt < start);
        let end = unique.partition_point(|dt| *dt <= now);
        let mut previous = None;
        for i in first..end {
            in_window[i] = true;
            let bucket = unit.bucket(unique[i], policy.first_week_day);
            if previous != Some(bucket) {
                oldest[i].push(Reason::Oldest { unit, bucket });
                previous = Some(bucket);
            }
        }
    }

    let newest = unique.last().copied();
    let verdicts: Vec<(bool, Vec<Reason>)> = unique
        .iter()
        .zip(oldest)
        .zip(in_window)
        .map(|((&date, oldest), in_window)| {
            let mut reasons = Vec::new();
            if date > now {
                reasons.push(Reason::Future);
            }
            if Some(date) == newest {
                reasons.push(Reason::Newest);
            }
            reasons.extend(oldest);
            if reasons.is_empty() {
                let why = if in_window { Reason::NotFirstInBucket } else { Reason::OutsideAllWindows };
                (false, vec![why])
            } else {
                (true, reasons)
            }
        })
        .collect();

    dates
        .iter()
        .enumerate()
        .map(|(index, &date)| {
            let (keep, reasons) = verdicts[group[index]].clone();
            Decision { index, date, keep, reasons }
        })
        .collect()
}

/// Why a 0.6-style `rotation` setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RotationError {
    /// A key that is neither a unit nor `first_week_day`.
    #[error(
        "unknown rotation setting {key}: use years, months, weeks, days, hours, minutes, seconds or first_week_day"
    )]
    UnknownKey {
        /// The key as given.
        key: String,
    },
    /// A unit count that is negative or too large.
    #[error("rotation setting {key} is {value}: give a count of periods to keep, from 0 to 4294967295")]
    BadCount {
        /// The unit key.
        key: String,
        /// The value as given.
        value: i64,
    },
    /// A `first_week_day` outside 0..=6.
    #[error("first_week_day is {value}: use 0 (monday) to 6 (sunday); 5 (saturday) is the default")]
    BadFirstWeekDay {
        /// The value as given.
        value: i64,
    },
}

/// Builds a [`Policy`] from bakthat 0.6's `rotation` profile setting.
///
/// `map` holds counts under the keys `years`, `months`, `weeks`, `days`, `hours`, `minutes` and `seconds` (missing
/// keys mean 0) and may hold `first_week_day` as 0.6 wrote it there. `first_week_day`, when given, takes precedence
/// over the map's. Weekdays are numbered as in Python: 0 is Monday, 6 is Sunday; the default is 5, Saturday.
///
/// An all-zero result is not an error here; callers that must refuse it check [`Policy::is_empty`].
pub fn policy_from_rotation_map(
    map: &BTreeMap<String, i64>,
    first_week_day: Option<i64>,
) -> Result<Policy, RotationError> {
    let mut policy = Policy::default();
    let mut week_day = None;
    for (key, &value) in map {
        if key == "first_week_day" {
            week_day = Some(value);
            continue;
        }
        let unit = Unit::ALL
            .into_iter()
            .find(|unit| unit.key() == key)
            .ok_or_else(|| RotationError::UnknownKey { key: key.clone() })?;
        *policy.count_mut(unit) =
            u32::try_from(value).map_err(|_| RotationError::BadCount { key: key.clone(), value })?;
    }
    if let Some(value) = first_week_day.or(week_day) {
        policy.first_week_day = u8::try_from(value)
            .ok()
            .and_then(|day| Weekday::try_from(day).ok())
            .ok_or(RotationError::BadFirstWeekDay { value })?;
    }
    Ok(policy)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    /// Parses `YYYY-mm-dd HH:MM:SS`.
    fn at(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").expect("test datetime")
    }

    /// `count` datetimes from `first`, `step` apart.
    fn series(first: &str, step: TimeDelta, count: i32) -> Vec<NaiveDateTime> {
        let first = at(first);
        (0..count).map(|i| first + step * i).collect()
    }

    fn all(list: &[&str]) -> Vec<NaiveDateTime> {
        list.iter().map(|s| at(s)).collect()
    }

    fn kept(decisions: &[Decision]) -> BTreeSet<NaiveDateTime> {
        decisions.iter().filter(|d| d.keep).map(|d| d.date).collect()
    }

    fn decision_for(decisions: &[Decision], date: &str) -> Decision {
        let date = at(date);
        decisions.iter().find(|d| d.date == date).cloned().expect("date in the plan")
    }

    /// The §7 example: daily 03:00 backups from 2013-01-01 for 200 days (to 2013-07-19).
    fn daily200() -> Vec<NaiveDateTime> {
        series("2013-01-01 03:00:00", TimeDelta::days(1), 200)
    }

    fn bakthat_default() -> Policy {
        Policy { days: 7, weeks: 4, months: 3, ..Policy::default() }
    }

    /// On the 15th of every month at 03:00, January 2010 to February 2013.
    fn monthly_15th() -> Vec<NaiveDateTime> {
        (2010..=2013)
            .flat_map(|year| (1..=12).map(move |month| (year, month)))
            .filter(|&(year, month)| year < 2013 || month <= 2)
            .map(|(year, month)| at(&format!("{year}-{month:02}-15 03:00:00")))
            .collect()
    }

    /// Quarterly (Jan 1, Apr 1, Jul 1, Oct 1) at 00:00, 2008-01-01 to 2013-07-01.
    fn quarterly() -> Vec<NaiveDateTime> {
        (2008..=2013)
            .flat_map(|year| [1, 4, 7, 10].map(|month| (year, month)))
            .filter(|&(year, month)| year < 2013 || month <= 7)
            .map(|(year, month)| at(&format!("{year}-{month:02}-01 00:00:00")))
            .collect()
    }

    struct Case {
        name: &'static str,
        dates: Vec<NaiveDateTime>,
        now: NaiveDateTime,
        policy: Policy,
        kept: Vec<NaiveDateTime>,
    }

    fn cases() -> Vec<Case> {
        let daily = TimeDelta::days(1);
        vec![
            Case {
                name: "daily200_bakthat_default",
                dates: daily200(),
                now: at("2013-07-19 10:00:00"),
                policy: bakthat_default(),
                kept: all(&[
                    "2013-05-01 03:00:00",
                    "2013-06-01 03:00:00",
                    "2013-06-22 03:00:00",
                    "2013-06-29 03:00:00",
                    "2013-07-01 03:00:00",
                    "2013-07-06 03:00:00",
                    "2013-07-13 03:00:00",
                    "2013-07-14 03:00:00",
                    "2013-07-15 03:00:00",
                    "2013-07-16 03:00:00",
                    "2013-07-17 03:00:00",
                    "2013-07-18 03:00:00",
                    "2013-07-19 03:00:00",
                ]),
            },
            Case {
                name: "seconds_truncate_fractions",
                dates: series("2013-07-19 10:00:00", TimeDelta::milliseconds(500), 21),
                now: at("2013-07-19 10:00:10") + TimeDelta::milliseconds(500),
                policy: Policy { seconds: 3, ..Policy::default() },
                kept: all(&["2013-07-19 10:00:08", "2013-07-19 10:00:09", "2013-07-19 10:00:10"]),
            },
            Case {
                name: "minutes",
                dates: series("2013-07-19 10:00:00", TimeDelta::seconds(20), 17),
                now: at("2013-07-19 10:05:30"),
                policy: Policy { minutes: 2, ..Policy::default() },
                kept: all(&["2013-07-19 10:04:00", "2013-07-19 10:05:00", "2013-07-19 10:05:20"]),
            },
            Case {
                name: "hours",
                dates: series("2013-07-19 00:10:00", TimeDelta::minutes(20), 31),
                now: at("2013-07-19 10:15:00"),
                policy: Policy { hours: 3, ..Policy::default() },
                kept: all(&["2013-07-19 08:10:00", "2013-07-19 09:10:00", "2013-07-19 10:10:00"]),
            },
            Case {
                name: "days_plus_newest",
                dates: series("2013-07-01 00:00:00", TimeDelta::hours(6), 20),
                now: at("2013-07-05 20:00:00"),
                policy: Policy { days: 3, ..Policy::default() },
                kept: all(&[
                    "2013-07-03 00:00:00",
                    "2013-07-04 00:00:00",
                    "2013-07-05 00:00:00",
                    "2013-07-05 18:00:00",
                ]),
            },
            Case {
                name: "weeks_saturday",
                dates: series("2013-06-01 03:00:00", daily, 49),
                now: at("2013-07-19 10:00:00"),
                policy: Policy { weeks: 3, ..Policy::default() },
                kept: all(&[
                    "2013-06-29 03:00:00",
                    "2013-07-06 03:00:00",
                    "2013-07-13 03:00:00",
                    "2013-07-19 03:00:00",
                ]),
            },
            Case {
                // 1.2+ semantics: Monday weeks for the buckets too. grandfatherson 1.1 grouped by Saturday weeks
                // and would have kept 07-01, 07-06, 07-13 (spec §14 item 13).
                name: "weeks_monday_1_2_semantics",
                dates: series("2013-06-01 03:00:00", daily, 49),
                now: at("2013-07-19 10:00:00"),
                policy: Policy { weeks: 3, first_week_day: Weekday::Mon, ..Policy::default() },
                kept: all(&[
                    "2013-07-01 03:00:00",
                    "2013-07-08 03:00:00",
                    "2013-07-15 03:00:00",
                    "2013-07-19 03:00:00",
                ]),
            },
            Case {
                name: "weeks_sunday",
                dates: series("2013-06-01 03:00:00", daily, 49),
                now: at("2013-07-19 10:00:00"),
                policy: Policy { weeks: 2, first_week_day: Weekday::Sun, ..Policy::default() },
                kept: all(&["2013-07-07 03:00:00", "2013-07-14 03:00:00", "2013-07-19 03:00:00"]),
            },
            Case {
                name: "weeks_now_on_first_week_day_later_backups_are_future",
                dates: series("2013-06-01 03:00:00", daily, 49),
                now: at("2013-07-15 10:00:00"),
                policy: Policy { weeks: 1, first_week_day: Weekday::Mon, ..Policy::default() },
                kept: all(&[
                    "2013-07-15 03:00:00",
                    "2013-07-16 03:00:00",
                    "2013-07-17 03:00:00",
                    "2013-07-18 03:00:00",
                    "2013-07-19 03:00:00",
                ]),
            },
            Case {
                // m = 2 - 3 + 1 == 0: the window starts in December of the previous year.
                name: "months_m_zero_crosses_year",
                dates: series("2012-09-01 03:00:00", daily, 163),
                now: at("2013-02-10 12:00:00"),
                policy: Policy { months: 3, ..Policy::default() },
                kept: all(&[
                    "2012-12-01 03:00:00",
                    "2013-01-01 03:00:00",
                    "2013-02-01 03:00:00",
                    "2013-02-10 03:00:00",
                ]),
            },
            Case {
                // m = 2 - 5 + 1 == -2: floor division moves to 2012, month 10.
                name: "months_m_negative",
                dates: series("2012-09-01 03:00:00", daily, 163),
                now: at("2013-02-10 12:00:00"),
                policy: Policy { months: 5, ..Policy::default() },
                kept: all(&[
                    "2012-10-01 03:00:00",
                    "2012-11-01 03:00:00",
                    "2012-12-01 03:00:00",
                    "2013-01-01 03:00:00",
                    "2013-02-01 03:00:00",
                    "2013-02-10 03:00:00",
                ]),
            },
            Case {
                // m = 2 - 14 + 1 == -11: 2012-01.
                name: "months_number_above_now_month",
                dates: monthly_15th(),
                now: at("2013-02-20 00:00:00"),
                policy: Policy { months: 14, ..Policy::default() },
                kept: monthly_15th().into_iter().filter(|d| *d >= at("2012-01-01 00:00:00")).collect(),
            },
            Case {
                // m = 2 - 15 + 1 == -12: floor division gives m == 0, which then becomes December 2011.
                name: "months_m_minus_twelve_adjusts_twice",
                dates: monthly_15th(),
                now: at("2013-02-20 00:00:00"),
                policy: Policy { months: 15, ..Policy::default() },
                kept: monthly_15th().into_iter().filter(|d| *d >= at("2011-12-01 00:00:00")).collect(),
            },
            Case {
                name: "months_more_than_history",
                dates: monthly_15th(),
                now: at("2013-02-20 00:00:00"),
                policy: Policy { months: 100, ..Policy::default() },
                kept: monthly_15th(),
            },
            Case {
                name: "years",
                dates: quarterly(),
                now: at("2013-07-19 10:00:00"),
                policy: Policy { years: 3, ..Policy::default() },
                kept: all(&[
                    "2011-01-01 00:00:00",
                    "2012-01-01 00:00:00",
                    "2013-01-01 00:00:00",
                    "2013-07-01 00:00:00",
                ]),
            },
            Case {
                name: "future_always_kept",
                dates: all(&[
                    "2013-07-18 01:00:00",
                    "2013-07-18 05:00:00",
                    "2013-07-19 01:00:00",
                    "2013-07-19 05:00:00",
                    "2013-07-20 00:00:00",
                    "2014-01-01 00:00:00",
                ]),
                now: at("2013-07-19 10:00:00"),
                policy: Policy { days: 1, ..Policy::default() },
                kept: all(&["2013-07-19 01:00:00", "2013-07-20 00:00:00", "2014-01-01 00:00:00"]),
            },
            Case {
                // A backup dated exactly `now` is inside the window (and not merely kept as the newest).
                name: "now_is_inclusive",
                dates: all(&["2013-07-19 09:30:00", "2013-07-19 10:00:00", "2013-07-19 11:00:00"]),
                now: at("2013-07-19 10:00:00"),
                policy: Policy { hours: 1, ..Policy::default() },
                kept: all(&["2013-07-19 10:00:00", "2013-07-19 11:00:00"]),
            },
            Case {
                name: "number_zero_disables_a_unit",
                dates: daily200(),
                now: at("2013-07-19 10:00:00"),
                policy: Policy { weeks: 4, ..Policy::default() },
                kept: all(&[
                    "2013-06-22 03:00:00",
                    "2013-06-29 03:00:00",
                    "2013-07-06 03:00:00",
                    "2013-07-13 03:00:00",
                    "2013-07-19 03:00:00",
                ]),
            },
            Case {
                name: "empty_policy_keeps_newest_only",
                dates: daily200(),
                now: at("2013-07-19 10:00:00"),
                policy: Policy::default(),
                kept: all(&["2013-07-19 03:00:00"]),
            },
            Case {
                name: "one_old_backup_is_kept",
                dates: all(&["2000-01-01 00:00:00"]),
                now: at("2013-07-19 10:00:00"),
                policy: Policy { days: 1, ..Policy::default() },
                kept: all(&["2000-01-01 00:00:00"]),
            },
            Case {
                // Windows reaching before the earliest representable date cover everything instead of panicking.
                name: "huge_counts_cover_all_history",
                dates: quarterly(),
                now: at("2013-07-19 10:00:00"),
                policy: Policy { years: u32::MAX, weeks: u32::MAX, seconds: u32::MAX, ..Policy::default() },
                kept: quarterly(),
            },
            Case {
                name: "empty_input",
                dates: Vec::new(),
                now: at("2013-07-19 10:00:00"),
                policy: bakthat_default(),
                kept: Vec::new(),
            },
        ]
    }

    #[test]
    fn table() {
        for case in cases() {
            let decisions = plan(&case.dates, case.now, &case.policy);
            assert_eq!(decisions.len(), case.dates.len(), "{}", case.name);
            for (i, d) in decisions.iter().enumerate() {
                assert_eq!((d.index, d.date), (i, case.dates[i]), "{}: input order", case.name);
                assert_eq!(d.keep, !d.reasons.is_empty() && !is_delete_reason(&d.reasons[0]), "{}", case.name);
            }
            let want: BTreeSet<_> = case.kept.iter().copied().collect();
            assert_eq!(kept(&decisions), want, "{}", case.name);
        }
    }

    fn is_delete_reason(reason: &Reason) -> bool {
        matches!(reason, Reason::OutsideAllWindows | Reason::NotFirstInBucket)
    }

    #[test]
    fn reasons_for_the_spec_example() {
        let decisions = plan(&daily200(), at("2013-07-19 10:00:00"), &bakthat_default());
        let oldest = |unit, bucket: &str| Reason::Oldest { unit, bucket: at(bucket) };
        let expect = [
            ("2013-07-19 03:00:00", vec![Reason::Newest, oldest(Unit::Days, "2013-07-19 00:00:00")]),
            (
                "2013-07-13 03:00:00",
                vec![oldest(Unit::Weeks, "2013-07-13 00:00:00"), oldest(Unit::Days, "2013-07-13 00:00:00")],
            ),
            ("2013-07-14 03:00:00", vec![oldest(Unit::Days, "2013-07-14 00:00:00")]),
            ("2013-07-01 03:00:00", vec![oldest(Unit::Months, "2013-07-01 00:00:00")]),
            ("2013-06-22 03:00:00", vec![oldest(Unit::Weeks, "2013-06-22 00:00:00")]),
            ("2013-05-01 03:00:00", vec![oldest(Unit::Months, "2013-05-01 00:00:00")]),
            ("2013-07-12 03:00:00", vec![Reason::NotFirstInBucket]),
            ("2013-05-02 03:00:00", vec![Reason::NotFirstInBucket]),
            ("2013-04-30 03:00:00", vec![Reason::OutsideAllWindows]),
            ("2013-01-01 03:00:00", vec![Reason::OutsideAllWindows]),
        ];
        for (date, reasons) in expect {
            assert_eq!(decision_for(&decisions, date).reasons, reasons, "{date}");
        }
    }

    #[test]
    fn future_and_newest_reasons() {
        let dates = all(&["2013-07-19 01:00:00", "2013-07-20 00:00:00", "2014-01-01 00:00:00"]);
        let decisions = plan(&dates, at("2013-07-19 10:00:00"), &Policy { days: 1, ..Policy::default() });
        assert_eq!(decisions[1].reasons, vec![Reason::Future]);
        assert_eq!(decisions[2].reasons, vec![Reason::Future, Reason::Newest]);
    }

    #[test]
    fn one_backup_is_kept_as_newest() {
        let decisions =
            plan(&all(&["2000-01-01 00:00:00"]), at("2013-07-19 10:00:00"), &Policy { days: 1, ..Policy::default() });
        assert_eq!(
            decisions,
            vec![Decision { index: 0, date: at("2000-01-01 00:00:00"), keep: true, reasons: vec![Reason::Newest] }]
        );
    }

    #[test]
    fn empty_input_gives_empty_plan() {
        assert!(plan(&[], at("2013-07-19 10:00:00"), &bakthat_default()).is_empty());
        assert!(plan(&[], at("2013-07-19 10:00:00"), &Policy::default()).is_empty());
    }

    #[test]
    fn descriptions() {
        let oldest = |unit, bucket: &str| Reason::Oldest { unit, bucket: at(bucket) }.describe();
        assert_eq!(oldest(Unit::Years, "2013-01-01 00:00:00"), "oldest of year 2013");
        assert_eq!(oldest(Unit::Months, "2013-07-01 00:00:00"), "oldest of month 2013-07");
        assert_eq!(oldest(Unit::Weeks, "2013-07-13 00:00:00"), "oldest of week starting 2013-07-13");
        assert_eq!(oldest(Unit::Days, "2013-07-13 00:00:00"), "oldest of day 2013-07-13");
        assert_eq!(oldest(Unit::Hours, "2013-07-13 10:00:00"), "oldest of hour 2013-07-13 10:00");
        assert_eq!(oldest(Unit::Minutes, "2013-07-13 10:05:00"), "oldest of minute 2013-07-13 10:05");
        assert_eq!(oldest(Unit::Seconds, "2013-07-13 10:05:03"), "oldest of second 2013-07-13 10:05:03");
        assert_eq!(Reason::Future.describe(), "newer than now");
        assert_eq!(Reason::Newest.describe(), "newest backup");
        assert_eq!(Reason::OutsideAllWindows.describe(), "outside every window");
        assert_eq!(Reason::NotFirstInBucket.describe(), "not the oldest of its period in any window");
    }

    #[test]
    fn month_window_start_arithmetic() {
        // (now, months, expected start): the m > 0, m == 0, m < 0 and m == -12 branches of grandfatherson.
        let cases = [
            ("2013-07-19 10:00:00", 1, "2013-07-01 00:00:00"),
            ("2013-07-19 10:00:00", 3, "2013-05-01 00:00:00"),
            ("2013-07-19 10:00:00", 7, "2013-01-01 00:00:00"),
            ("2013-07-19 10:00:00", 8, "2012-12-01 00:00:00"),
            ("2013-07-19 10:00:00", 9, "2012-11-01 00:00:00"),
            ("2013-07-19 10:00:00", 19, "2012-01-01 00:00:00"),
            ("2013-07-19 10:00:00", 20, "2011-12-01 00:00:00"),
            ("2013-12-31 23:59:59", 12, "2013-01-01 00:00:00"),
            ("2013-12-31 23:59:59", 13, "2012-12-01 00:00:00"),
            ("2013-01-05 00:00:00", 1, "2013-01-01 00:00:00"),
            ("2013-01-05 00:00:00", 2, "2012-12-01 00:00:00"),
            ("2013-01-05 00:00:00", 13, "2012-01-01 00:00:00"),
            ("2013-01-05 00:00:00", 14, "2011-12-01 00:00:00"),
            ("2013-02-10 12:00:00", 15, "2011-12-01 00:00:00"),
            ("2013-02-10 12:00:00", 27, "2010-12-01 00:00:00"),
        ];
        for (now, months, want) in cases {
            assert_eq!(Unit::Months.window_start(at(now), months, Weekday::Sat), at(want), "{now} months={months}");
        }
    }

    #[test]
    fn shuffled_and_duplicated_inputs_give_the_same_plan() {
        let now = at("2013-07-19 10:00:00");
        let policy = bakthat_default();
        let dates = daily200();
        let reference = kept(&plan(&dates, now, &policy));

        let mut shuffled = dates.clone();
        shuffled.reverse();
        shuffled.rotate_left(77);
        assert_eq!(kept(&plan(&shuffled, now, &policy)), reference);

        // Every third date twice more: duplicates share one verdict and the kept set does not change.
        let mut duplicated = dates.clone();
        duplicated.extend(dates.iter().step_by(3));
        duplicated.extend(dates.iter().step_by(3).rev());
        let decisions = plan(&duplicated, now, &policy);
        assert_eq!(kept(&decisions), reference);
        for d in &decisions {
            let first = decisions.iter().find(|e| e.date == d.date).expect("itself");
            assert_eq!((d.keep, &d.reasons), (first.keep, &first.reasons), "{}", d.date);
        }
        // The newest, duplicated, is kept every time.
        let newest = at("2013-07-19 03:00:00");
        let copies = [newest, newest, at("2013-07-01 03:00:00")];
        assert!(plan(&copies, now, &policy).iter().filter(|d| d.date == newest).all(|d| d.keep));
    }

    #[test]
    fn a_later_now_moves_the_windows() {
        let dates = daily200();
        let policy = bakthat_default();
        let before = kept(&plan(&dates, at("2013-07-19 10:00:00"), &policy));
        // One day later with no new backup: the week window now starts on 06-29, so 06-22 goes; 07-13 stays as
        // the oldest of its week even though the day window has moved past it.
        let after = kept(&plan(&dates, at("2013-07-20 10:00:00"), &policy));
        let dropped: Vec<_> = before.difference(&after).copied().collect();
        assert_eq!(dropped, all(&["2013-06-22 03:00:00"]));
        assert!(after.is_subset(&before));
        assert_eq!(after.len(), 12);

        // An earlier now makes later backups future, so they are all kept.
        let early = plan(&dates, at("2013-07-10 00:00:00"), &policy);
        assert!(early.iter().filter(|d| d.date > at("2013-07-10 00:00:00")).all(|d| d.keep));
    }

    #[test]
    fn rotation_map() {
        let map = |pairs: &[(&str, i64)]| -> BTreeMap<String, i64> {
            pairs.iter().map(|&(k, v)| (k.to_string(), v)).collect()
        };
        assert_eq!(
            policy_from_rotation_map(&map(&[("days", 7), ("weeks", 4), ("months", 3)]), Some(5)),
            Ok(bakthat_default())
        );
        assert_eq!(
            policy_from_rotation_map(
                &map(&[
                    ("years", 1),
                    ("months", 2),
                    ("weeks", 3),
                    ("days", 4),
                    ("hours", 5),
                    ("minutes", 6),
                    ("seconds", 7),
                    ("first_week_day", 0),
                ]),
                None
            ),
            Ok(Policy {
                years: 1,
                months: 2,
                weeks: 3,
                days: 4,
                hours: 5,
                minutes: 6,
                seconds: 7,
                first_week_day: Weekday::Mon
            })
        );
        // Default first week day is Saturday; the argument wins over the map.
        assert_eq!(policy_from_rotation_map(&map(&[]), None).map(|p| p.first_week_day), Ok(Weekday::Sat));
        assert_eq!(
            policy_from_rotation_map(&map(&[("first_week_day", 0)]), Some(6)).map(|p| p.first_week_day),
            Ok(Weekday::Sun)
        );
        assert!(policy_from_rotation_map(&map(&[]), None).expect("empty map").is_empty());
        assert!(!bakthat_default().is_empty());
        // All seven days map as in Python (MONDAY = 0).
        let days = [Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu, Weekday::Fri, Weekday::Sat, Weekday::Sun];
        for (n, day) in days.into_iter().enumerate() {
            let n = i64::try_from(n).expect("small");
            assert_eq!(policy_from_rotation_map(&map(&[]), Some(n)).map(|p| p.first_week_day), Ok(day));
        }

        let err = policy_from_rotation_map(&map(&[("day", 7)]), None).unwrap_err();
        assert_eq!(err, RotationError::UnknownKey { key: "day".into() });
        assert!(err.to_string().contains("use years, months, weeks, days"), "{err}");
        let err = policy_from_rotation_map(&map(&[("weeks", -1)]), None).unwrap_err();
        assert_eq!(err, RotationError::BadCount { key: "weeks".into(), value: -1 });
        assert_eq!(
            err.to_string(),
            "rotation setting weeks is -1: give a count of periods to keep, from 0 to 4294967295"
        );
        assert_eq!(
            policy_from_rotation_map(&map(&[("days", 1 << 32)]), None),
            Err(RotationError::BadCount { key: "days".into(), value: 1 << 32 })
        );
        for bad in [-1, 7, 255, 256, i64::MIN] {
            assert_eq!(
                policy_from_rotation_map(&map(&[]), Some(bad)),
                Err(RotationError::BadFirstWeekDay { value: bad })
            );
            assert_eq!(
                policy_from_rotation_map(&map(&[("first_week_day", bad)]), None),
                Err(RotationError::BadFirstWeekDay { value: bad })
            );
        }
    }

    /// A literal, quadratic transcription of grandfatherson's `to_keep` plus bakthat's newest rule.
    fn reference_kept(dates: &[NaiveDateTime], now: NaiveDateTime, policy: &Policy) -> BTreeSet<NaiveDateTime> {
        let set: BTreeSet<NaiveDateTime> = dates.iter().copied().collect();
        let mut keep: BTreeSet<NaiveDateTime> = set.iter().copied().filter(|d| *d > now).collect();
        for unit in Unit::ALL {
            let number = policy.count(unit);
            if number == 0 {
                continue;
            }
            let start = unit.window_start(now, number, policy.first_week_day);
            let valid: Vec<NaiveDateTime> = set.iter().copied().filter(|d| start <= *d && *d <= now).collect();
            let bucket = |d: NaiveDateTime| unit.bucket(d, policy.first_week_day);
            for &d in &valid {
                if !valid.iter().any(|&e| e < d && bucket(e) == bucket(d)) {
                    keep.insert(d);
                }
            }
        }
        keep.extend(set.last());
        keep
    }

    fn base() -> NaiveDateTime {
        at("2012-01-01 00:00:00")
    }

    fn weekday(n: u8) -> Weekday {
        Weekday::try_from(n).expect("0..=6")
    }

    prop_compose! {
        /// Dates on a 20-minute grid over ~14 months, so buckets of every unit hold several backups.
        fn arb_dates()(slots in prop::collection::vec(0i64..(420 * 72), 0..40)) -> Vec<NaiveDateTime> {
            slots.into_iter().map(|slot| base() + TimeDelta::minutes(20 * slot)).collect()
        }
    }

    prop_compose! {
        fn arb_policy()(counts in prop::array::uniform7(0u32..6), fwd in 0u8..7) -> Policy {
            let [years, months, weeks, days, hours, minutes, seconds] = counts;
            Policy { years, months, weeks, days, hours, minutes, seconds, first_week_day: weekday(fwd) }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn plan_invariants(
            dates in arb_dates(),
            now_slot in 0i64..(430 * 72),
            now_extra in prop_oneof![Just(0i64), 0i64..1_200],
            policy in arb_policy(),
            seed in any::<u64>(),
        ) {
            // On the dates' grid half the time, so `now` often equals a backup's date.
            let now = base() + TimeDelta::minutes(20 * now_slot) + TimeDelta::seconds(now_extra);
            let decisions = plan(&dates, now, &policy);
            prop_assert_eq!(decisions.len(), dates.len());
            let newest = dates.iter().max();
            for (i, d) in decisions.iter().enumerate() {
                prop_assert_eq!((d.index, d.date), (i, dates[i]));
                if Some(&d.date) == newest {
                    prop_assert!(d.keep);
                    prop_assert!(d.reasons.contains(&Reason::Newest));
                }
                if d.keep {
                    prop_assert!(!d.reasons.is_empty());
                    prop_assert!(!d.reasons.iter().any(is_delete_reason));
                } else {
                    prop_assert_eq!(d.reasons.len(), 1);
                    prop_assert!(is_delete_reason(&d.reasons[0]));
                }
            }
            let got = kept(&decisions);
            prop_assert_eq!(&got, &reference_kept(&dates, now, &policy));

            // A shuffled copy with some dates repeated gives the same kept set.
            let mut shuffled = dates.clone();
            shuffled.extend(dates.iter().step_by(2));
            let n = shuffled.len();
            for i in (1..n).rev() {
                let j = usize::try_from((seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)) % (i as u64 + 1))
                    .expect("fits");
                shuffled.swap(i, j);
            }
            prop_assert_eq!(kept(&plan(&shuffled, now, &policy)), got);
        }

        #[test]
        fn buckets_and_windows_are_aligned(
            now_secs in 0i64..(4_000 * 86_400),
            number in 1u32..60,
            fwd in 0u8..7,
        ) {
            let now = at("2000-01-01 00:00:00") + TimeDelta::seconds(now_secs);
            let fwd = weekday(fwd);
            for unit in Unit::ALL {
                let bucket = unit.bucket(now, fwd);
                prop_assert!(bucket <= now);
                prop_assert_eq!(unit.bucket(bucket, fwd), bucket);
                let start = unit.window_start(now, number, fwd);
                prop_assert_eq!(unit.bucket(start, fwd), start);
                let n = i64::from(number);
                match unit {
                    Unit::Years => prop_assert_eq!(i64::from(now.year() - start.year()), n - 1),
                    Unit::Months => {
                        let months = |d: NaiveDateTime| i64::from(d.year()) * 12 + i64::from(d.month());
                        prop_assert_eq!(start.day(), 1);
                        prop_assert_eq!(months(now) - months(start), n - 1);
                    }
                    Unit::Weeks => {
                        prop_assert_eq!(start.weekday(), fwd);
                        prop_assert!(now - bucket < TimeDelta::weeks(1));
                        prop_assert_eq!(bucket - start, TimeDelta::weeks(n - 1));
                    }
                    Unit::Days => {
                        prop_assert!(now - bucket < TimeDelta::days(1));
                        prop_assert_eq!(bucket - start, TimeDelta::days(n - 1));
                    }
                    Unit::Hours => {
                        prop_assert!(now - bucket < TimeDelta::hours(1));
                        prop_assert_eq!(bucket - start, TimeDelta::hours(n - 1));
                    }
                    Unit::Minutes => {
                        prop_assert!(now - bucket < TimeDelta::minutes(1));
                        prop_assert_eq!(bucket - start, TimeDelta::minutes(n - 1));
                    }
                    Unit::Seconds => {
                        prop_assert!(now - bucket < TimeDelta::seconds(1));
                        prop_assert_eq!(bucket - start, TimeDelta::seconds(n - 1));
                    }
                }
            }
        }
    }
}
