//! Keeping incremental chains whole: a pure pass over a plan (from [`super::plan`], or any keep/delete list) that
//! keeps every backup a kept backup needs. Not here: where parents come from (the caller maps its rows' parents to
//! positions).

use super::{Decision, Reason};

/// Keeps every backup that a kept backup needs. `parents[i]` is the position (in `decisions`, which are in input
/// order as [`super::plan`] returns them) of the backup the `i`-th was made against: `None` for a full backup, or
/// when its parent is not in the set. A backup that was to be deleted and that a kept one needs becomes kept with
/// the single reason [`Reason::NeededBy`], naming (from `names`) the nearest kept backup that needs it.
pub fn keep_chains(decisions: &mut [Decision], parents: &[Option<usize>], names: &[&str]) {
    let mut todo: Vec<usize> = (0..decisions.len()).filter(|&i| decisions[i].keep).collect();
    while let Some(i) = todo.pop() {
        let Some(p) = parents.get(i).copied().flatten() else { continue };
        if p < decisions.len() && !decisions[p].keep {
            decisions[p].keep = true;
            decisions[p].reasons = vec![Reason::NeededBy(names.get(i).copied().unwrap_or_default().to_string())];
            todo.push(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDateTime, TimeDelta};
    use proptest::prelude::*;

    use super::super::{plan, Policy};
    use super::*;

    fn day(n: i64) -> NaiveDateTime {
        NaiveDateTime::parse_from_str("2026-11-01 03:00:00", "%Y-%m-%d %H:%M:%S").unwrap() + TimeDelta::days(n)
    }

    /// Daily backups for `days` days, a full every `full_every` days and an incremental of the day before between.
    fn daily_chains(days: usize, full_every: usize) -> (Vec<NaiveDateTime>, Vec<Option<usize>>, Vec<String>) {
        let dates = (0..days).map(|d| day(d as i64)).collect();
        let parents = (0..days).map(|d| (d % full_every != 0).then(|| d - 1)).collect();
        let names = (0..days)
            .map(|d| format!("site.202611{:02}030000{}.tgz", d + 1, if d % full_every != 0 { ".inc" } else { "" }))
            .collect();
        (dates, parents, names)
    }

    struct Case {
        name: &'static str,
        days: usize,
        full_every: usize,
        policy: Policy,
        /// Days (0-based) kept, and which of them only because a kept backup needs them.
        kept: Vec<usize>,
        needed: Vec<usize>,
    }

    #[test]
    fn rotation_tables_with_chains() {
        let cases = [
            Case {
                // 3 daily backups kept (days 27..29); their chain starts at the full of day 21: 21..26 needed.
                name: "three_days_of_weekly_chains",
                days: 30,
                full_every: 7,
                policy: Policy { days: 3, ..Policy::default() },
                kept: (21..30).collect(),
                needed: (21..27).collect(),
            },
            Case {
                // A full every day: nothing is needed beyond the policy's own choice.
                name: "all_full",
                days: 10,
                full_every: 1,
                policy: Policy { days: 2, ..Policy::default() },
                kept: vec![8, 9],
                needed: vec![],
            },
            Case {
                // Weeks from Sunday, 2026-11-01: the oldest of the weeks of Nov 22 and Nov 29 (days 21 and 28) and
                // the newest (29) are kept; all three are incrementals of the full of day 20, which is needed, and
                // so is every incremental between.
                name: "weekly_over_ten_day_chains",
                days: 30,
                full_every: 10,
                policy: Policy { weeks: 2, first_week_day: chrono::Weekday::Sun, ..Policy::default() },
                kept: (20..30).collect(),
                needed: vec![20, 22, 23, 24, 25, 26, 27],
            },
        ];
        for c in cases {
            let (dates, parents, names) = daily_chains(c.days, c.full_every);
            let mut decisions = plan(&dates, day(c.days as i64 - 1) + TimeDelta::hours(1), &c.policy);
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            keep_chains(&mut decisions, &parents, &names);
            let kept: Vec<usize> = decisions.iter().filter(|d| d.keep).map(|d| d.index).collect();
            assert_eq!(kept, c.kept, "{}", c.name);
            let needed: Vec<usize> = decisions
                .iter()
                .filter(|d| matches!(d.reasons.as_slice(), [Reason::NeededBy(_)]))
                .map(|d| d.index)
                .collect();
            assert_eq!(needed, c.needed, "{}", c.name);
            for d in &decisions {
                if let [Reason::NeededBy(by)] = d.reasons.as_slice() {
                    let child = names.iter().position(|n| n == by).unwrap();
                    assert_eq!(parents[child], Some(d.index), "{}: named by its nearest dependent", c.name);
                }
            }
        }
    }

    proptest! {
        /// Whatever the policy and chain shape, every kept backup's parent is kept, and only needed backups change.
        #[test]
        fn kept_backups_always_have_their_parents(days in 1usize..60, full_every in 1usize..10, keep in 0u32..5, weeks in 0u32..3) {
            let (dates, parents, names) = daily_chains(days, full_every);
            let policy = Policy { days: keep, weeks, ..Policy::default() };
            let before = plan(&dates, day(days as i64), &policy);
            let mut after = before.clone();
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            keep_chains(&mut after, &parents, &names);
            for d in &after {
                if d.keep {
                    if let Some(p) = parents[d.index] {
                        prop_assert!(after[p].keep);
                    }
                }
                if before[d.index].keep {
                    prop_assert_eq!(&before[d.index], d);
                }
            }
        }
    }
}
