//! When digests go out: pure functions of a given `now` (nothing here reads the clock).
//!
//! The slots are the instants of the `[digest] schedule` (cron, 6 or 7 fields, Quartz weekday
//! numbering — write names like `Mon-Fri`) in `campaign.timezone`:
//! - every instant from the start of `campaign.opens` (local midnight) up to and including the
//!   deadline is a [`SlotKind::Daily`] slot;
//! - the first instant after the deadline is the one [`SlotKind::Final`] slot (the morning
//!   after the deadline with the default `0 0 8 * * *`);
//! - after that, none.
//!
//! A slot belongs to the *digest day* of its local date. At most one digest goes out per day
//! (the store's `digest_runs` has one row per day and kind), so a schedule that fires twice a
//! day still sends once.
//!
//! Catch-up: [`Plan::due`] gives the latest slot at or before `now` when its day was not sent
//! yet. A daemon that was down for days therefore sends one digest (the latest missed slot's)
//! when it comes back, not one per missed day.

use std::str::FromStr;

use anyhow::Context as _;
use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

use crate::config::Config;

/// Which digest a slot sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SlotKind {
    /// While the call is open.
    Daily,
    /// The first slot after the deadline: the last digest.
    Final,
}

impl SlotKind {
    /// The `kind` stored in `digest_runs`: `daily` | `final`.
    pub fn as_str(self) -> &'static str {
        match self {
            SlotKind::Daily => "daily",
            SlotKind::Final => "final",
        }
    }
}

/// One scheduled digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// The instant, in the campaign's time zone.
    pub at: DateTime<Tz>,
    /// The digest day: the local date of `at`.
    pub day: NaiveDate,
    pub kind: SlotKind,
}

/// The digest schedule of one campaign.
#[derive(Debug, Clone)]
pub struct Plan {
    schedule: cron::Schedule,
    tz: Tz,
    /// Local midnight at the start of the opening day.
    start: DateTime<Tz>,
    deadline: DateTime<Tz>,
}

impl Plan {
    /// `schedule`: cron with 6 or 7 fields (sec min hour day-of-month month day-of-week
    /// [year]); `opens`: the first digest day; `deadline`: the end of the call.
    pub fn new(schedule: &str, tz: Tz, opens: NaiveDate, deadline: DateTime<FixedOffset>) -> anyhow::Result<Plan> {
        let fields = schedule.split_whitespace().count();
        anyhow::ensure!(
            fields == 6 || fields == 7,
            "[digest] schedule {schedule:?} has {fields} fields; cron here needs 6 or 7 (sec min hour day month weekday [year]), e.g. \"0 0 8 * * *\""
        );
        let schedule = cron::Schedule::from_str(schedule)
            .with_context(|| format!("[digest] schedule {schedule:?} is not a valid cron expression"))?;
        let midnight = opens.and_hms_opt(0, 0, 0).expect("midnight");
        let start = tz
            .from_local_datetime(&midnight)
            .earliest()
            .with_context(|| format!("{opens} has no local midnight in {tz}"))?;
        Ok(Plan { schedule, tz, start, deadline: deadline.with_timezone(&tz) })
    }

    pub fn from_config(config: &Config) -> anyhow::Result<Plan> {
        let tz = config.timezone()?;
        Plan::new(&config.digest.schedule, tz, config.campaign.opens, config.campaign.deadline)
    }

    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// The digest day an instant belongs to: its local date in the campaign's time zone.
    pub fn day_of<Z: TimeZone>(&self, t: &DateTime<Z>) -> NaiveDate {
        t.with_timezone(&self.tz).date_naive()
    }

    /// The first slot strictly after `t`, if any is left.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<Slot> {
        let t = t.with_timezone(&self.tz);
        // Slots start at the opening day: look from just before it when `t` is earlier.
        let from = if t < self.start { self.start - chrono::Duration::seconds(1) } else { t };
        let at = self.schedule.after(&from).next()?;
        if at <= self.deadline {
            return Some(self.slot(at, SlotKind::Daily));
        }
        // The final slot: the first one after the deadline, when `t` is before it.
        let fin = self.final_slot()?;
        (fin.at > t).then_some(fin)
    }

    /// The one slot after the deadline.
    pub fn final_slot(&self) -> Option<Slot> {
        let at = self.schedule.after(&self.deadline).next()?;
        Some(self.slot(at, SlotKind::Final))
    }

    /// The next `n` slots after `t` (fewer when the schedule ends).
    pub fn upcoming(&self, t: DateTime<Utc>, n: usize) -> Vec<Slot> {
        let mut out = Vec::new();
        let mut cursor = t;
        while out.len() < n {
            let Some(s) = self.next_after(cursor) else { break };
            cursor = s.at.with_timezone(&Utc);
            out.push(s);
        }
        out
    }

    /// The latest slot at or before `now`, if the schedule has started.
    pub fn latest_at_or_before(&self, now: DateTime<Utc>) -> Option<Slot> {
        if let Some(fin) = self.final_slot()
            && fin.at.with_timezone(&Utc) <= now
        {
            return Some(fin);
        }
        let now_local = now.with_timezone(&self.tz);
        if now_local < self.start {
            return None;
        }
        // Walk forward; a campaign has a few hundred slots at most. Look at the last 8 days
        // first so a long-running daemon does not walk the whole campaign each time, and from
        // the start when that window holds no slot (a weekly or monthly schedule).
        let before_start = self.start - chrono::Duration::seconds(1);
        let recent = (now_local - chrono::Duration::days(8)).max(before_start);
        self.last_slot_between(recent, now_local).or_else(|| {
            if recent > before_start { self.last_slot_between(before_start, now_local) } else { None }
        })
    }

    /// The last daily slot in (`from`, `to`].
    fn last_slot_between(&self, from: DateTime<Tz>, to: DateTime<Tz>) -> Option<Slot> {
        let mut best = None;
        for at in self.schedule.after(&from) {
            if at > to || at > self.deadline {
                break;
            }
            best = Some(self.slot(at, SlotKind::Daily));
        }
        best
    }

    /// The slot to send now: the latest slot at or before `now`, unless its day is at or
    /// before `last_sent` (the latest digest day already taken). Only the latest missed slot
    /// is ever due, so days missed while the daemon was down cost one digest, not one each.
    pub fn due(&self, now: DateTime<Utc>, last_sent: Option<NaiveDate>) -> Option<Slot> {
        let slot = self.latest_at_or_before(now)?;
        match last_sent {
            Some(day) if slot.day <= day => None,
            _ => Some(slot),
        }
    }

    fn slot(&self, at: DateTime<Tz>, kind: SlotKind) -> Slot {
        Slot { at, day: at.date_naive(), kind }
    }
}

/// Whole days from `now`'s local date to the deadline's local date (0 on the last day,
/// negative after it).
pub fn days_left(now: DateTime<Utc>, deadline: DateTime<FixedOffset>, tz: Tz) -> i64 {
    (deadline.with_timezone(&tz).date_naive() - now.with_timezone(&tz).date_naive()).num_days()
}
