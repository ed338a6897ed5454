//! Monitors (v1): each found by the `managed-by:apm-demo` tag (the listing is filtered by it) and its
//! name.

use reqwest::Method;
use serde_json::Value;

use super::WebApp;
use super::converge::{ObjectKind, Planned, contains};
use crate::resources::{MANAGED_BY, Settings, monitors};

pub struct Monitors;

impl ObjectKind for Monitors {
    const NAME: &'static str = "monitor";
    const PATH: &'static str = "/api/v1/monitor";
    const UPDATE: Method = Method::PUT;

    fn planned(s: &Settings) -> anyhow::Result<Vec<Planned>> {
        monitors::all(s)
            .into_iter()
            .map(|monitor| {
                Ok(Planned {
                    body: serde_json::to_value(&monitor)?,
                    key: monitor.name.clone(),
                    name: monitor.name,
                })
            })
            .collect()
    }

    fn list_path() -> String {
        format!("{}?monitor_tags={MANAGED_BY}", Self::PATH)
    }

    fn find<'a>(listed: &'a Value, name: &str) -> Option<&'a Value> {
        listed
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["name"] == name)
    }

    /// Every monitor with the tag, whatever its name: those of another `--host` or `--env` too.
    fn ours(listed: &Value, _s: &Settings) -> anyhow::Result<Vec<(String, String)>> {
        Ok(listed
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| {
                let id = m["id"].as_i64()?;
                Some((
                    m["name"].as_str().unwrap_or_default().to_owned(),
                    id.to_string(),
                ))
            })
            .collect())
    }

    fn matches(current: &Value, desired: &Value) -> bool {
        contains(current, &as_saved(desired, current))
    }

    fn url(web: &WebApp, id: &str, _saved: &Value) -> String {
        format!("{}/monitors/{id}", web.base)
    }
}

/// The monitor body as Datadog would hold it: "metric alert" and "query alert" are one type, and the
/// API answers either for either (terraform-provider-datadog suppresses the same difference, pull
/// requests #242 and #1099), so the planned type counts as the saved one when both are of the two.
fn as_saved(desired: &Value, current: &Value) -> Value {
    let metric = |v: &Value| matches!(v.as_str(), Some("metric alert" | "query alert"));
    let mut desired = desired.clone();
    if metric(&desired["type"]) && metric(&current["type"]) {
        desired["type"] = current["type"].clone();
    }
    desired
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// "metric alert" and "query alert" are one type; any other type is a type of its own.
    #[test]
    fn metric_and_query_alert_are_one_monitor_type() {
        let monitor = |kind: &str| json!({"type": kind, "query": "q"});
        for (desired, saved, same) in [
            ("metric alert", "query alert", true),
            ("query alert", "metric alert", true),
            ("query alert", "query alert", true),
            ("metric alert", "service check", false),
            ("service check", "metric alert", false),
            ("log alert", "query alert", false),
        ] {
            let current = monitor(saved);
            assert_eq!(
                Monitors::matches(&current, &monitor(desired)),
                same,
                "{desired} saved as {saved}"
            );
        }
    }
}
