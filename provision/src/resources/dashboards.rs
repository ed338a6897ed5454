//! The two dashboards (v1 API, `ordered` layout, timeseries widgets): the seed's timeboard, and
//! the service's APM metrics beside the host and MySQL.

use serde::Serialize;

use super::{DB_OPERATION, MANAGED_BY, MYSQL_SCOPE, OPERATION, SERVICE, Settings};

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

/// Both dashboards, in the order apply creates them.
pub fn all(s: &Settings) -> Vec<Dashboard> {
    vec![timeboard(s), apm_dashboard(s)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::settings;

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
}
