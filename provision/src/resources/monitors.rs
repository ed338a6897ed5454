//! The three monitors (v1 API): the seed's on my_metric, and the service's error rate and p99
//! latency per resource, read from its trace metrics.

use serde::Serialize;

use super::{MANAGED_BY, OPERATION, SERVICE, Settings};

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
pub fn all(s: &Settings) -> Vec<Monitor> {
    vec![
        my_metric_monitor(s),
        error_rate_monitor(s),
        latency_monitor(s),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::settings;

    #[test]
    fn every_monitors_thresholds_match_its_query() {
        for monitor in all(&settings()) {
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
        let names: Vec<String> = all(&s).into_iter().map(|m| m.name).collect();
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
}
