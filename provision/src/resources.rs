//! What provision manages, as the exact API request bodies: two dashboards, three monitors, two
//! downtimes.
//!
//! Small serde types of our own rather than the `datadog-api-client` crate (a clean build of it took
//! 8.5 minutes and 7 GiB here, for four object kinds); `make test` validates every body against
//! Datadog's official models instead (provision/tests/test_payloads.py).

use jiff::civil::{DateTime, Weekday};
use jiff::tz::TimeZone;
use jiff::{ToSpan, Zoned};
use serde::Serialize;

/// Every object carries this, so that provision finds (and only touches) its own.
pub const MANAGED_BY: &str = "managed-by:apm-demo";
/// The operation name the service's spans carry; trace metrics are named after it (DESIGN.md).
pub const OPERATION: &str = "http.server.request";
pub const SERVICE: &str = "apm-demo";
/// The operation name of the service's database client spans (DESIGN.md, "Spans"): Datadog's trace
/// metrics of the queries are `trace.mysql.query.*`.
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

// ---------------------------------------------------------------- dashboards (v1)

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Dashboard {
    pub title: String,
    pub description: String,
    pub layout_type: &'static str,
    pub widgets: Vec<Widget>,
    pub template_variables: Vec<TemplateVariable>,
    pub default_timeframe: Timeframe,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Widget {
    pub definition: TimeseriesDefinition,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TimeseriesDefinition {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub title: String,
    pub show_legend: bool,
    pub requests: Vec<TimeseriesRequest>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TimeseriesRequest {
    pub q: String,
    pub display_type: &'static str,
}

/// A dashboard template variable: `$name` in a query stands for `prefix:<selected value>`.
/// `defaults`, not `default`, which Datadog's model marks deprecated (datadog-api-client,
/// v1/model/dashboard_template_variable.py).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TemplateVariable {
    pub name: &'static str,
    pub prefix: &'static str,
    pub defaults: Vec<String>,
}

/// The dashboard's default time frame (a dashboard-level setting; widgets have none).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Timeframe {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub unit: &'static str,
    pub value: u32,
}

fn timeseries(title: impl Into<String>, queries: &[String], display_type: &'static str) -> Widget {
    Widget {
        definition: TimeseriesDefinition {
            kind: "timeseries",
            title: title.into(),
            show_legend: true,
            requests: queries
                .iter()
                .map(|q| TimeseriesRequest {
                    q: q.clone(),
                    display_type,
                })
                .collect(),
        },
    }
}

fn description(text: &str) -> String {
    format!(
        "{text}\n\nManaged by apm-demo's `provision` ({MANAGED_BY}): changes made here are overwritten."
    )
}

/// The seed's timeboard: my_metric on the host, a MySQL metric with anomaly bounds, my_metric summed
/// per hour; live over the past 5 minutes.
pub fn timeboard(s: &Settings) -> Dashboard {
    let host = &s.host;
    Dashboard {
        title: "apm-demo: my_metric".into(),
        description: description(
            "The seed exercise's timeboard: the custom check and the MySQL integration.",
        ),
        layout_type: "ordered",
        widgets: vec![
            timeseries(
                format!("my_metric on {host}"),
                &[format!("avg:my_metric{{host:{host}}}")],
                "line",
            ),
            // The seed graphed mysql.performance.cpu_time, which the Agent reads only from a mysqld on
            // its own host; the compose demo's MySQL is another container, so: queries per second.
            timeseries(
                "MySQL queries per second, with anomaly bounds (basic, 2)",
                &[format!(
                    "anomalies(avg:mysql.performance.queries{{{MYSQL_SCOPE}}}, 'basic', 2)"
                )],
                "line",
            ),
            timeseries(
                "my_metric summed per hour (rollup)",
                &[format!("sum:my_metric{{host:{host}}}.rollup(sum, 3600)")],
                "bars",
            ),
        ],
        template_variables: Vec::new(),
        default_timeframe: Timeframe {
            kind: "live",
            unit: "minute",
            value: 5,
        },
    }
}

/// APM and infrastructure together: the service's hits, errors and latency by resource, from the
/// trace metrics of its request spans and of its database query spans, next to the host's CPU and
/// memory (the `$host` template variable, opened on `--host`) and MySQL. The trace widgets select
/// `$service` and `$env`, opened on the service and `--env`.
pub fn apm_dashboard(s: &Settings) -> Dashboard {
    let scope = "$service,$env";
    // Hits and errors are counts (`.as_count()`: per interval, not per second); latency is the
    // `trace.<operation>` distribution, whose percentiles are computed over every span (DDSketch),
    // rather than the older per-percentile `trace.<operation>.duration.by...` gauges
    // (docs.datadoghq.com/tracing/guide/ddsketch_trace_metrics/).
    let by_resource = |operation: &str, what: &str| -> [Widget; 3] {
        let trace = |suffix: &str| format!("trace.{operation}{suffix}");
        [
            timeseries(
                format!("{what}: hits by resource"),
                &[format!(
                    "sum:{}{{{scope}}} by {{resource_name}}.as_count()",
                    trace(".hits")
                )],
                "bars",
            ),
            timeseries(
                format!("{what}: errors by resource"),
                &[format!(
                    "sum:{}{{{scope}}} by {{resource_name}}.as_count()",
                    trace(".errors")
                )],
                "bars",
            ),
            timeseries(
                format!("{what}: latency p50 and p99 by resource"),
                &[
                    format!("p50:{}{{{scope}}} by {{resource_name}}", trace("")),
                    format!("p99:{}{{{scope}}} by {{resource_name}}", trace("")),
                ],
                "line",
            ),
        ]
    };
    let mut widgets = Vec::new();
    widgets.extend(by_resource(OPERATION, "Requests"));
    widgets.extend(by_resource(DB_OPERATION, "Database queries"));
    widgets.extend([
        timeseries(
            "Host CPU (user, system)",
            &[
                "avg:system.cpu.user{$host}".into(),
                "avg:system.cpu.system{$host}".into(),
            ],
            "area",
        ),
        timeseries(
            "Host memory used",
            &["avg:system.mem.used{$host}".into()],
            "area",
        ),
        timeseries(
            "MySQL queries per second",
            &[format!("avg:mysql.performance.queries{{{MYSQL_SCOPE}}}")],
            "line",
        ),
        // Open connections: Threads_connected. (mysql.net.connections is Connections as a rate:
        // new connections per second, not how many are open.)
        timeseries(
            "MySQL open connections",
            &[format!(
                "avg:mysql.performance.threads_connected{{{MYSQL_SCOPE}}}"
            )],
            "line",
        ),
    ]);
    Dashboard {
        title: "apm-demo: APM and infrastructure".into(),
        description: description(
            "The service's requests and database queries next to the host and the database that serve them.",
        ),
        layout_type: "ordered",
        widgets,
        template_variables: vec![
            TemplateVariable {
                name: "service",
                prefix: "service",
                defaults: vec![SERVICE.into()],
            },
            TemplateVariable {
                name: "env",
                prefix: "env",
                defaults: vec![s.env.clone()],
            },
            TemplateVariable {
                name: "host",
                prefix: "host",
                defaults: vec![s.host.clone()],
            },
        ],
        default_timeframe: Timeframe {
            kind: "live",
            unit: "hour",
            value: 1,
        },
    }
}

// ---------------------------------------------------------------- monitors (v1)

/// my_metric's thresholds: warning above 500, alert above 800, over the past 5 minutes.
pub const WARNING: f64 = 500.0;
pub const CRITICAL: f64 = 800.0;
/// The service's error rate per resource (5xx spans over all spans), over 5 minutes.
pub const ERROR_RATE_WARNING: f64 = 0.02;
pub const ERROR_RATE_CRITICAL: f64 = 0.05;
/// The service's p99 latency per resource, in seconds (the unit of the `trace.*` distribution).
pub const P99_WARNING: f64 = 0.25;
pub const P99_CRITICAL: f64 = 0.5;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Monitor {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub query: String,
    pub message: String,
    pub tags: Vec<String>,
    pub options: MonitorOptions,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MonitorOptions {
    pub thresholds: Thresholds,
    pub notify_no_data: bool,
    /// Minutes without data before the no-data state (only with `notify_no_data`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_data_timeframe: Option<u32>,
    pub include_tags: bool,
    pub require_full_window: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Thresholds {
    pub critical: f64,
    pub warning: f64,
}

/// The monitor's message: one text per state, Datadog's `{{#is_...}}` sections; HOST and NOTIFY are
/// filled in. The alert names the value and the host's IP, which resolve because the query is
/// grouped by host.
const MONITOR_MESSAGE: &str = "\
{{#is_alert}}my_metric averaged {{value}} over 5 minutes on {{host.name}} ({{host.ip}}), above the \
alert threshold {{threshold}}.{{/is_alert}}
{{#is_warning}}my_metric averaged {{value}} over 5 minutes on {{host.name}}, above the warning \
threshold {{warn_threshold}}.{{/is_warning}}
{{#is_no_data}}No my_metric data from HOST for 10 minutes: is the Agent's custom check running?\
{{/is_no_data}}
{{#is_recovery}}my_metric on {{host.name}} is back to normal.{{/is_recovery}}

Notify: NOTIFY";

/// Alerts on the average of my_metric over 5 minutes; grouped by host so that `{{host.ip}}` resolves.
pub fn my_metric_monitor(s: &Settings) -> Monitor {
    let host = &s.host;
    let message = MONITOR_MESSAGE
        .replace("HOST", host)
        .replace("NOTIFY", &s.mention());
    Monitor {
        name: format!("apm-demo: my_metric is high on {host}"),
        kind: "metric alert",
        query: format!("avg(last_5m):avg:my_metric{{host:{host}}} by {{host}} > {CRITICAL}"),
        message,
        tags: vec![MANAGED_BY.into(), format!("service:{SERVICE}")],
        options: MonitorOptions {
            thresholds: Thresholds {
                critical: CRITICAL,
                warning: WARNING,
            },
            notify_no_data: true,
            no_data_timeframe: Some(10),
            include_tags: true,
            require_full_window: false,
        },
    }
}

/// The message of a service monitor grouped by resource: WHAT (e.g. "p99 latency") and UNIT after
/// each value; `{{resource_name.name}}` is the group that changed state.
fn service_message(s: &Settings, what: &str, unit: &str, advice: &str) -> String {
    let env = &s.env;
    format!(
        "{{{{#is_alert}}}}{what} of {{{{resource_name.name}}}} ({SERVICE}, env {env}) was {{{{value}}}}{unit} \
over the past 5 minutes, above the alert threshold {{{{threshold}}}}{unit}. {advice}{{{{/is_alert}}}}
{{{{#is_warning}}}}{what} of {{{{resource_name.name}}}} ({SERVICE}, env {env}) was {{{{value}}}}{unit} over \
the past 5 minutes, above the warning threshold {{{{warn_threshold}}}}{unit}.{{{{/is_warning}}}}
{{{{#is_recovery}}}}{what} of {{{{resource_name.name}}}} ({SERVICE}, env {env}) is back under \
{{{{warn_threshold}}}}{unit}.{{{{/is_recovery}}}}

Notify: {}",
        s.mention()
    )
}

/// A service monitor: the service's tags, no no-data alert (a resource nobody calls is not down:
/// its group simply has no value), and an evaluation that does not wait for a full window.
fn service_monitor(
    s: &Settings,
    name: &str,
    query: String,
    message: String,
    thresholds: Thresholds,
) -> Monitor {
    Monitor {
        name: format!("{SERVICE}: {name} (env:{})", s.env),
        // "query alert", as Datadog's own monitor templates now write metric monitors; the API may
        // answer either spelling for either (apply compares them as one).
        kind: "query alert",
        query,
        message,
        tags: vec![
            MANAGED_BY.into(),
            format!("service:{SERVICE}"),
            format!("env:{}", s.env),
        ],
        options: MonitorOptions {
            thresholds,
            notify_no_data: false,
            no_data_timeframe: None,
            include_tags: true,
            require_full_window: false,
        },
    }
}

/// The trace-metric scope of the service's monitors.
fn service_scope(s: &Settings) -> String {
    format!("service:{SERVICE},env:{}", s.env)
}

/// Errors over hits of the service's request spans, per resource, over 5 minutes. Per resource,
/// not overall: a route that fails 10% of the time but takes a third of the traffic is 3% overall,
/// under the alert line, and one that takes 1% of the traffic vanishes; per resource it alerts, and
/// the alert names the route.
pub fn error_rate_monitor(s: &Settings) -> Monitor {
    let scope = service_scope(s);
    let count = |suffix: &str| {
        format!("sum:trace.{OPERATION}.{suffix}{{{scope}}} by {{resource_name}}.as_count()")
    };
    service_monitor(
        s,
        "error rate by resource",
        format!(
            "sum(last_5m):{} / {} > {ERROR_RATE_CRITICAL}",
            count("errors"),
            count("hits")
        ),
        service_message(
            s,
            "The error rate (5xx)",
            "",
            "Look at its error spans in APM (service page, the resource, Errors).",
        ),
        Thresholds {
            critical: ERROR_RATE_CRITICAL,
            warning: ERROR_RATE_WARNING,
        },
    )
}

/// The p99 of the service's request spans' duration, per resource, over 5 minutes, from the
/// `trace.<operation>` distribution (the percentile over every span in the window).
pub fn latency_monitor(s: &Settings) -> Monitor {
    service_monitor(
        s,
        "p99 latency by resource",
        format!(
            "percentile(last_5m):p99:trace.{OPERATION}{{{}}} by {{resource_name}} > {P99_CRITICAL}",
            service_scope(s)
        ),
        service_message(
            s,
            "The p99 latency",
            " s",
            "Look at its slowest traces in APM (service page, the resource, the latency distribution).",
        ),
        Thresholds {
            critical: P99_CRITICAL,
            warning: P99_WARNING,
        },
    )
}

/// Every monitor provision manages, in the order apply creates them.
pub fn monitors(s: &Settings) -> Vec<Monitor> {
    vec![
        my_metric_monitor(s),
        error_rate_monitor(s),
        latency_monitor(s),
    ]
}

// ---------------------------------------------------------------- downtimes (v2)

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
        dashboards: vec![timeboard(s), apm_dashboard(s)],
        monitors: monitors(s),
        downtimes: DOWNTIMES.iter().map(|d| d.request(s)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    /// Settings at a local time in a zone: `at` is "YYYY-MM-DDTHH:MM" there.
    fn settings_at(zone: &str, at: &str) -> Settings {
        let now = at
            .parse::<DateTime>()
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

    fn settings() -> Settings {
        settings_at("UTC", "2026-11-25T10:00") // a Wednesday morning
    }

    fn start(downtime: &PlannedDowntime, s: &Settings) -> String {
        let request = downtime.request(s);
        request.data.attributes.schedule.recurrences[0]
            .start
            .clone()
    }

    fn queries(dashboard: &Dashboard) -> Vec<&str> {
        dashboard
            .widgets
            .iter()
            .flat_map(|w| w.definition.requests.iter().map(|r| r.q.as_str()))
            .collect()
    }

    #[test]
    fn my_metric_is_scoped_to_the_host_and_mysql_to_its_instance_tag() {
        for q in queries(&timeboard(&settings())) {
            let scope = if q.contains("mysql.") {
                "{db:mysql}"
            } else {
                "{host:demo-host}"
            };
            assert!(q.contains(scope), "{q}");
        }
    }

    #[test]
    fn timeboard_has_the_three_seed_graphs() {
        let board = timeboard(&settings());
        let queries = queries(&board);
        assert_eq!(queries[0], "avg:my_metric{host:demo-host}");
        assert_eq!(
            queries[1],
            "anomalies(avg:mysql.performance.queries{db:mysql}, 'basic', 2)"
        );
        assert_eq!(
            queries[2],
            "sum:my_metric{host:demo-host}.rollup(sum, 3600)"
        );
        let timeframe = timeboard(&settings()).default_timeframe;
        assert_eq!(
            (timeframe.kind, timeframe.unit, timeframe.value),
            ("live", "minute", 5)
        );
    }

    #[test]
    fn apm_dashboard_uses_the_services_trace_metrics() {
        let dashboard = apm_dashboard(&settings());
        let queries = queries(&dashboard);
        for operation in ["http.server.request", "mysql.query"] {
            for expected in [
                format!(
                    "sum:trace.{operation}.hits{{$service,$env}} by {{resource_name}}.as_count()"
                ),
                format!(
                    "sum:trace.{operation}.errors{{$service,$env}} by {{resource_name}}.as_count()"
                ),
                format!("p50:trace.{operation}{{$service,$env}} by {{resource_name}}"),
                format!("p99:trace.{operation}{{$service,$env}} by {{resource_name}}"),
            ] {
                assert!(queries.contains(&expected.as_str()), "{expected}");
            }
        }
        for part in [
            "system.cpu.user{$host}",
            "system.mem.used{$host}",
            "mysql.performance.queries{db:mysql}",
            "mysql.performance.threads_connected{db:mysql}",
        ] {
            assert!(queries.iter().any(|q| q.contains(part)), "{part}");
        }
    }

    /// The trace widgets open on the service and `--env`, the infrastructure ones on `--host`.
    #[test]
    fn template_variables_open_on_the_service_env_and_host() {
        let s = Settings {
            env: "staging".into(),
            ..settings()
        };
        let variables: Vec<(&str, &str, Vec<String>)> = apm_dashboard(&s)
            .template_variables
            .into_iter()
            .map(|v| (v.name, v.prefix, v.defaults))
            .collect();
        assert_eq!(
            variables,
            [
                ("service", "service", vec!["apm-demo".to_owned()]),
                ("env", "env", vec!["staging".to_owned()]),
                ("host", "host", vec!["demo-host".to_owned()]),
            ]
        );
    }

    /// A dashboard says what it shows and that provision overwrites changes made in the web app.
    #[test]
    fn dashboards_say_they_are_managed() {
        for (dashboard, what) in [
            (timeboard(&settings()), "The seed exercise's timeboard"),
            (apm_dashboard(&settings()), "database queries"),
        ] {
            assert!(
                dashboard.description.contains(what),
                "{}",
                dashboard.description
            );
            assert!(
                dashboard
                    .description
                    .ends_with("(managed-by:apm-demo): changes made here are overwritten."),
                "{}",
                dashboard.description
            );
        }
    }

    #[test]
    fn mysql_connections_are_the_open_ones_not_the_rate_of_new_ones() {
        let dashboard = apm_dashboard(&settings());
        assert!(
            queries(&dashboard)
                .iter()
                .all(|q| !q.contains("mysql.net.connections"))
        );
    }

    /// Every `$variable` a query uses is declared, and every declared one is used.
    #[test]
    fn template_variables_are_declared_and_used() {
        let dashboard = apm_dashboard(&settings());
        let queries = queries(&dashboard);
        for variable in &dashboard.template_variables {
            let reference = format!("${}", variable.name);
            assert!(
                queries.iter().any(|q| q.contains(&reference)),
                "{reference} is used by no query"
            );
        }
        for q in &queries {
            for (i, _) in q.match_indices('$') {
                let name: String = q[i + 1..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                assert!(
                    dashboard.template_variables.iter().any(|v| v.name == name),
                    "${name} in {q} is not declared"
                );
            }
        }
        let json = serde_json::to_value(&dashboard.template_variables).unwrap();
        assert!(json[0].get("default").is_none(), "deprecated: {json}");
    }

    #[test]
    fn every_monitors_thresholds_match_its_query() {
        for monitor in monitors(&settings()) {
            let (_, threshold) = monitor.query.rsplit_once(" > ").expect("a `>` comparison");
            let threshold: f64 = threshold.parse().unwrap();
            assert_eq!(
                threshold, monitor.options.thresholds.critical,
                "{}: Datadog requires them equal",
                monitor.name
            );
            assert!(
                monitor.options.thresholds.warning < monitor.options.thresholds.critical,
                "{}: warning first for `>`",
                monitor.name
            );
            assert_eq!(monitor.tags[0], MANAGED_BY, "{}", monitor.name);
        }
    }

    #[test]
    fn my_metric_monitor_is_the_seeds() {
        let monitor = my_metric_monitor(&settings());
        assert_eq!(
            monitor.query,
            "avg(last_5m):avg:my_metric{host:demo-host} by {host} > 800"
        );
        assert_eq!(
            (monitor.options.thresholds.warning, monitor.kind),
            (500.0, "metric alert")
        );
        assert_eq!(
            (
                monitor.options.notify_no_data,
                monitor.options.no_data_timeframe
            ),
            (true, Some(10))
        );
    }

    #[test]
    fn the_service_monitors_are_per_resource_in_its_env() {
        let s = Settings {
            env: "staging".into(),
            ..settings()
        };
        let error_rate = error_rate_monitor(&s);
        assert_eq!(
            error_rate.query,
            "sum(last_5m):sum:trace.http.server.request.errors{service:apm-demo,env:staging} by \
             {resource_name}.as_count() / sum:trace.http.server.request.hits{service:apm-demo,env:staging} \
             by {resource_name}.as_count() > 0.05"
        );
        assert_eq!(error_rate.options.thresholds.warning, 0.02);
        let latency = latency_monitor(&s);
        assert_eq!(
            latency.query,
            "percentile(last_5m):p99:trace.http.server.request{service:apm-demo,env:staging} by \
             {resource_name} > 0.5"
        );
        assert_eq!(latency.options.thresholds.warning, 0.25);
        for monitor in [&error_rate, &latency] {
            assert_eq!(
                monitor.tags,
                ["managed-by:apm-demo", "service:apm-demo", "env:staging"]
            );
            assert!(monitor.name.ends_with("(env:staging)"), "{}", monitor.name);
            assert_eq!(monitor.kind, "query alert");
            assert!(!monitor.options.notify_no_data);
            let json = serde_json::to_value(monitor).unwrap();
            assert!(json["options"].get("no_data_timeframe").is_none(), "{json}");
        }
        assert_ne!(error_rate.name, latency.name);
        let names: Vec<String> = monitors(&s).into_iter().map(|m| m.name).collect();
        assert_eq!(names.len(), 3);
        assert!(
            names.iter().all(|n| n.starts_with("apm-demo: ")),
            "{names:?}"
        );
    }

    /// The text between `{{#section}}` and `{{/section}}`.
    fn section<'a>(message: &'a str, name: &str) -> &'a str {
        let open = format!("{{{{#{name}}}}}");
        let start = message.find(&open).unwrap_or_else(|| panic!("{name}")) + open.len();
        let end = message
            .find(&format!("{{{{/{name}}}}}"))
            .unwrap_or_else(|| panic!("{name}"));
        &message[start..end]
    }

    #[test]
    fn monitor_messages_differ_by_state_and_notify() {
        let message = my_metric_monitor(&settings()).message;
        let alert = section(&message, "is_alert");
        assert!(
            alert.contains("{{value}}") && alert.contains("{{host.ip}}"),
            "{alert}"
        );
        assert!(section(&message, "is_warning").contains("{{warn_threshold}}"));
        assert!(section(&message, "is_no_data").contains("demo-host"));
        assert!(section(&message, "is_recovery").contains("back to normal"));
        assert!(message.contains("@me@example.com"));

        for (monitor, what, unit) in [
            (error_rate_monitor(&settings()), "error rate", ""),
            (latency_monitor(&settings()), "p99 latency", " s"),
        ] {
            let message = &monitor.message;
            let alert = section(message, "is_alert");
            let warning = section(message, "is_warning");
            let recovery = section(message, "is_recovery");
            for text in [alert, warning, recovery] {
                assert!(
                    text.contains(what) && text.contains("{{resource_name.name}}"),
                    "{text}"
                );
            }
            assert!(
                alert.contains(&format!("{{{{threshold}}}}{unit}.")),
                "{alert}"
            );
            assert!(
                warning.contains(&format!("{{{{warn_threshold}}}}{unit}.")),
                "{warning}"
            );
            assert!(alert.contains("{{value}}") && warning.contains("{{value}}"));
            assert_ne!(alert, warning);
            assert!(message.ends_with("Notify: @me@example.com"), "{message}");
        }
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
        for monitor in monitors(&settings()) {
            assert!(
                monitor.tags.iter().any(|t| t == MANAGED_BY),
                "{}",
                monitor.name
            );
        }
    }
}
