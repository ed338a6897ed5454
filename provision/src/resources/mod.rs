//! What provision manages, as the exact API request bodies: two dashboards ([`dashboards`]), three
//! monitors ([`monitors`]), two downtimes ([`downtimes`]); here, what they share: the settings they
//! are built from, the names that tie them to the service's spans, and the plan of all seven.
//!
//! Small serde types of our own rather than the `datadog-api-client` crate (a clean build of it took
//! 8.5 minutes and 7 GiB here, for four object kinds); `make test` validates every body against
//! Datadog's official models instead (provision/tests/test_payloads.py).

pub mod dashboards;
pub mod downtimes;
pub mod monitors;

use jiff::Zoned;
use jiff::tz::TimeZone;
use serde::Serialize;

use dashboards::Dashboard;
use downtimes::{DOWNTIMES, DowntimeRequest};
use monitors::Monitor;

/// Every object carries this, so that provision finds (and only touches) its own.
pub const MANAGED_BY: &str = "managed-by:apm-demo";
/// The operation name of the service's request spans; trace metrics are named after it
/// (docs/service.md#the-span-contract).
pub const OPERATION: &str = "http.server.request";
pub const SERVICE: &str = "apm-demo";
/// The operation name of the service's database client spans (docs/service.md#the-span-contract,
/// the query span): Datadog's trace metrics of the queries are `trace.mysql.query.*`.
pub const DB_OPERATION: &str = "mysql.query";
/// The tag that scopes MySQL's metrics: agent-config/conf.d/mysql.d/conf.yaml gives it to the
/// instance, and the MySQL check puts the instance's `tags` on every metric. Not `host:`: with
/// `host: "%%host%%"` (another container) the check reports under `resolve_db_host(host)`, the
/// database's address, not the Agent's host name (DataDog/integrations-core,
/// mysql/datadog_checks/mysql/mysql.py `resolved_hostname`; provision/tests/test_query_sources.py).
pub const MYSQL_SCOPE: &str = "db:mysql";

/// The values the objects are built from.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The Agent's host name: my_metric's and the host's metrics, and the downtimes, are scoped to it.
    pub host: String,
    /// Who is notified: an email address or an @handle (`@slack-ops`).
    pub notify: String,
    /// The service's environment (`DD_ENV`).
    pub env: String,
    /// When provision runs, in the downtimes' time zone (an IANA zone, see [`time_zone`]): their
    /// first occurrences are the next ones after it there.
    pub now: Zoned,
}

impl Settings {
    /// The notification handle as it is written in a message: `@` + address or handle.
    pub fn mention(&self) -> String {
        format!("@{}", self.notify.trim_start_matches('@'))
    }

    /// The downtimes' time zone by its IANA name, as Datadog expects it ([`time_zone`] makes only
    /// named zones; UTC stands in for any other).
    pub fn timezone(&self) -> &str {
        self.now.time_zone().iana_name().unwrap_or("UTC")
    }
}

/// An IANA time zone by name (`Europe/Paris`, `UTC`), from the tz database built into provision;
/// anything else is refused rather than sent to Datadog.
pub fn time_zone(name: &str) -> Result<TimeZone, String> {
    let zone = TimeZone::get(name).map_err(|_| {
        format!("{name:?} is not an IANA time zone name (e.g. Europe/Paris, America/New_York, UTC)")
    })?;
    // Datadog takes names, in the spelling the database gives (`europe/paris` is `Europe/Paris`).
    match zone.iana_name() {
        Some(_) => Ok(zone),
        None => Err(format!("{name:?} is not an IANA time zone name")),
    }
}

/// Everything `plan --json` prints: each element the exact API body.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub dashboards: Vec<Dashboard>,
    pub monitors: Vec<Monitor>,
    pub downtimes: Vec<DowntimeRequest>,
}

/// The plan: exactly what apply sends.
pub fn plan(s: &Settings) -> Plan {
    Plan {
        dashboards: dashboards::all(s),
        monitors: monitors::all(s),
        downtimes: DOWNTIMES.iter().map(|d| d.request(s)).collect(),
    }
}

/// Settings at a local time in a zone (`at` is "YYYY-MM-DDTHH:MM" there), for the tests.
#[cfg(test)]
pub(crate) fn settings_at(zone: &str, at: &str) -> Settings {
    let now = at
        .parse::<jiff::civil::DateTime>()
        .unwrap()
        .to_zoned(time_zone(zone).unwrap())
        .unwrap();
    Settings {
        host: "demo-host".into(),
        notify: "me@example.com".into(),
        env: "demo".into(),
        now,
    }
}

/// The tests' settings: a Wednesday morning, UTC.
#[cfg(test)]
pub(crate) fn settings() -> Settings {
    settings_at("UTC", "2026-11-25T10:00")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_zones_are_iana_names_or_refused() {
        assert_eq!(
            time_zone("europe/paris").unwrap().iana_name(),
            Some("Europe/Paris")
        );
        for bad in ["Mars/Olympus", "", "+02:00", "CEST"] {
            let error = time_zone(bad).unwrap_err();
            assert!(error.contains("IANA"), "{bad}: {error}");
        }
    }

    #[test]
    fn plan_has_all_seven_objects() {
        let plan = plan(&settings());
        assert_eq!(
            (
                plan.dashboards.len(),
                plan.monitors.len(),
                plan.downtimes.len()
            ),
            (2, 3, 2)
        );
    }

    /// Each downtime silences every managed monitor, every group: by the monitors' tag, scope `*`.
    #[test]
    fn downtimes_cover_every_managed_monitor() {
        for request in plan(&settings()).downtimes {
            let attributes = request.data.attributes;
            assert_eq!(attributes.scope, "*");
            assert_eq!(attributes.monitor_identifier.monitor_tags, [MANAGED_BY]);
            assert!(
                attributes
                    .message
                    .starts_with("[managed-by:apm-demo downtime:")
            );
        }
        for monitor in monitors::all(&settings()) {
            assert!(
                monitor.tags.iter().any(|t| t == MANAGED_BY),
                "{}",
                monitor.name
            );
        }
    }
}
