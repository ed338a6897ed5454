//! The two downtimes (v2 API): weeknights and the weekend, each silencing every managed monitor
//! by its tag, out of office hours in the `--timezone` zone.

use jiff::civil::{DateTime, Weekday};
use jiff::{ToSpan, Zoned};
use serde::Serialize;

use super::{MANAGED_BY, Settings};

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DowntimeRequest {
    pub data: DowntimeData,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DowntimeData {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub attributes: DowntimeAttributes,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DowntimeAttributes {
    pub message: String,
    pub scope: String,
    pub monitor_identifier: MonitorIdentifier,
    pub display_timezone: String,
    pub schedule: Schedule,
    /// When the downtime ends (expires or is canceled), the monitor notifies at once if it is still
    /// in one of these states, rather than staying silent until its next change of state.
    pub notify_end_states: Vec<&'static str>,
    pub notify_end_types: Vec<&'static str>,
}

/// The monitors a downtime silences: every monitor that carries all these tags (v2's
/// `DowntimeMonitorIdentifierTags`), so one downtime covers each managed monitor, those added later
/// included, without knowing their ids.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MonitorIdentifier {
    pub monitor_tags: Vec<String>,
}

/// Every monitor provision manages, by its tag.
pub fn managed_monitors() -> MonitorIdentifier {
    MonitorIdentifier {
        monitor_tags: vec![MANAGED_BY.into()],
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Schedule {
    pub timezone: String,
    pub recurrences: Vec<Recurrence>,
}

/// One recurring window: RFC 5545 rule, its length, and its first start (local time in the
/// schedule's time zone, no offset).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Recurrence {
    pub rrule: String,
    pub duration: String,
    pub start: String,
}

/// A downtime as provision plans it: a name (for humans and for finding it again) and its body.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedDowntime {
    pub name: &'static str,
    pub weekdays: &'static [Weekday],
    /// Local hour of the start, in the schedule's time zone.
    pub start_hour: i8,
    pub hours: u32,
}

/// Weekday evenings 19:00 to 09:00 the next morning.
pub const WEEKNIGHTS: PlannedDowntime = PlannedDowntime {
    name: "weeknights",
    weekdays: &[
        Weekday::Monday,
        Weekday::Tuesday,
        Weekday::Wednesday,
        Weekday::Thursday,
        Weekday::Friday,
    ],
    start_hour: 19,
    hours: 14,
};

/// Saturday 00:00 through Monday 09:00: the whole weekend, and Monday's early hours, which the
/// weeknight downtimes (they start in the evening) would leave open.
pub const WEEKEND: PlannedDowntime = PlannedDowntime {
    name: "weekend",
    weekdays: &[Weekday::Saturday],
    start_hour: 0,
    hours: 57,
};

impl PlannedDowntime {
    /// The marker its message starts with, by which provision finds it again.
    pub fn marker(&self) -> String {
        format!("[{MANAGED_BY} downtime:{}]", self.name)
    }

    /// Its body. The scope is `*`: it filters the groups of the monitors it silences (the tags of
    /// their queries, not the monitors' own tags), and the monitors are grouped by different tags
    /// (my_metric's by host, the service's by resource_name): a `host:` scope would silence no group
    /// of a monitor grouped by resource_name.
    pub fn request(&self, s: &Settings) -> DowntimeRequest {
        let days: Vec<&str> = self.weekdays.iter().map(|d| rrule_day(*d)).collect();
        let first = self.next_start(&s.now);
        DowntimeRequest {
            data: DowntimeData {
                kind: "downtime",
                attributes: DowntimeAttributes {
                    message: format!(
                        "{} apm-demo's monitors are muted out of office hours ({}). {}",
                        self.marker(),
                        self.name,
                        s.mention()
                    ),
                    scope: "*".into(),
                    monitor_identifier: managed_monitors(),
                    display_timezone: s.timezone().to_owned(),
                    schedule: Schedule {
                        timezone: s.timezone().to_owned(),
                        recurrences: vec![Recurrence {
                            rrule: format!("FREQ=WEEKLY;BYDAY={}", days.join(",")),
                            duration: format!("{}h", self.hours),
                            start: first.strftime("%Y-%m-%dT%H:%M:%S").to_string(),
                        }],
                    },
                    notify_end_states: vec!["alert", "warn", "no data"],
                    notify_end_types: vec!["canceled", "expired"],
                },
            },
        }
    }

    /// The first start of this window at or after `now`, in `now`'s time zone: the local date and
    /// hour Datadog reads in the schedule's zone. Never in the past, whatever the machine's zone.
    pub fn next_start(&self, now: &Zoned) -> DateTime {
        let today = now.date();
        (0..=7)
            .map(|n| today.saturating_add(n.days()))
            .filter(|day| self.weekdays.contains(&day.weekday()))
            .map(|day| day.at(self.start_hour, 0, 0, 0))
            // A start in a DST gap counts from after the gap, as RFC 5545 reads a nonexistent time.
            .find(|start| {
                now.time_zone()
                    .to_ambiguous_zoned(*start)
                    .compatible()
                    .is_ok_and(|at| at.timestamp() >= now.timestamp())
            })
            .expect("every weekday recurs within eight days")
    }
}

pub const DOWNTIMES: [PlannedDowntime; 2] = [WEEKNIGHTS, WEEKEND];

fn rrule_day(day: Weekday) -> &'static str {
    match day {
        Weekday::Monday => "MO",
        Weekday::Tuesday => "TU",
        Weekday::Wednesday => "WE",
        Weekday::Thursday => "TH",
        Weekday::Friday => "FR",
        Weekday::Saturday => "SA",
        Weekday::Sunday => "SU",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{settings, settings_at, time_zone};
    use jiff::civil::date;
    use jiff::tz::TimeZone;

    fn start(downtime: &PlannedDowntime, s: &Settings) -> String {
        let request = downtime.request(s);
        request.data.attributes.schedule.recurrences[0]
            .start
            .clone()
    }

    #[test]
    fn downtimes_start_on_their_next_day() {
        let s = settings();
        let weeknights = WEEKNIGHTS.request(&s);
        let recurrence = &weeknights.data.attributes.schedule.recurrences[0];
        assert_eq!(recurrence.rrule, "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR");
        assert_eq!(recurrence.start, "2026-11-25T19:00:00");
        assert_eq!(recurrence.duration, "14h");
        assert_eq!(start(&WEEKEND, &s), "2026-11-28T00:00:00");
        assert_eq!(weeknights.data.attributes.schedule.timezone, "UTC");
    }

    #[test]
    fn a_window_that_already_started_today_starts_next_time() {
        // Wednesday 20:00: tonight's 19:00 is past, so Thursday's.
        let s = settings_at("Europe/Paris", "2026-11-25T20:00");
        assert_eq!(start(&WEEKNIGHTS, &s), "2026-11-26T19:00:00");
        // Saturday 00:30: this weekend's start is past, so next Saturday's.
        let s = settings_at("Europe/Paris", "2026-11-28T00:30");
        assert_eq!(start(&WEEKEND, &s), "2026-12-05T00:00:00");
        // Exactly at the start is not the past.
        let s = settings_at("Europe/Paris", "2026-11-25T19:00");
        assert_eq!(start(&WEEKNIGHTS, &s), "2026-11-25T19:00:00");
    }

    /// The start is a local time in the downtimes' zone, so "today" is the date there: at 23:30 UTC
    /// on Friday it is already Saturday 08:30 in Tokyo, where the weekend began 8.5 hours ago and
    /// the next weeknight is Monday's.
    #[test]
    fn the_date_is_the_target_zones_not_utcs() {
        let now = "2026-11-27T23:30"
            .parse::<DateTime>()
            .unwrap()
            .to_zoned(TimeZone::UTC)
            .unwrap()
            .with_time_zone(time_zone("Asia/Tokyo").unwrap());
        let s = Settings { now, ..settings() };
        assert_eq!(s.timezone(), "Asia/Tokyo");
        assert_eq!(start(&WEEKNIGHTS, &s), "2026-11-30T19:00:00");
        assert_eq!(start(&WEEKEND, &s), "2026-12-05T00:00:00");
    }

    /// Over every half hour of a year, in zones on both sides of UTC and with DST changes: each
    /// downtime's start is at or after the moment provision runs, and less than a week after
    /// (weekend) or a few days (weeknights).
    #[test]
    fn the_first_start_is_never_in_the_past() {
        for zone in [
            "UTC",
            "Europe/Paris",
            "America/New_York",
            "Pacific/Auckland",
        ] {
            let tz = time_zone(zone).unwrap();
            let mut now = date(2026, 1, 1).at(0, 0, 0, 0).to_zoned(tz).unwrap();
            while now.year() == 2026 {
                let s = Settings {
                    now: now.clone(),
                    ..settings()
                };
                for downtime in DOWNTIMES {
                    let first = downtime.next_start(&s.now);
                    let at = s.now.time_zone().to_zoned(first).unwrap();
                    let ahead = at.timestamp().duration_since(now.timestamp());
                    assert!(!ahead.is_negative(), "{zone} {now}: {first}");
                    assert!(ahead.as_hours() <= 7 * 24 + 1, "{zone} {now}: {first}");
                }
                now = now.checked_add(30.minutes()).unwrap();
            }
        }
    }

    /// Expands both recurrences over two weeks, minute by minute: silent exactly outside
    /// Monday-Friday 09:00-19:00.
    #[test]
    fn downtimes_silence_every_minute_outside_office_hours_and_none_inside() {
        let s = settings();
        const WEEK: i64 = 7 * 24 * 60;
        let monday = date(2026, 11, 30);
        let minute_of = |d: jiff::civil::Date, hour: i64| {
            i64::from((d - monday).get_days()) * 24 * 60 + hour * 60
        };
        let mut silenced = vec![false; 3 * WEEK as usize];
        for downtime in DOWNTIMES {
            let request = downtime.request(&s);
            let recurrence = &request.data.attributes.schedule.recurrences[0];
            let hours: i64 = recurrence.duration.trim_end_matches('h').parse().unwrap();
            let days = recurrence.rrule.trim_start_matches("FREQ=WEEKLY;BYDAY=");
            // Every occurrence from the week before through the week after the one examined.
            for offset in -7..21 {
                let day = monday + offset.days();
                if days.split(',').any(|d| d == rrule_day(day.weekday())) {
                    let start = minute_of(day, i64::from(downtime.start_hour)) + WEEK;
                    for m in start..start + hours * 60 {
                        if (0..3 * WEEK).contains(&m) {
                            silenced[m as usize] = true;
                        }
                    }
                }
            }
        }
        for m in WEEK..2 * WEEK {
            let day = (m - WEEK) / (24 * 60);
            let hour = ((m - WEEK) % (24 * 60)) / 60;
            let office = day < 5 && (9..19).contains(&hour);
            assert_eq!(silenced[m as usize], !office, "day {day} hour {hour}");
        }
    }
}
