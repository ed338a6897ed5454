//! Converging Datadog to the plan: find what provision made before, create what is missing, update
//! what differs, leave the rest alone; and removing it all again.
//!
//! Dashboards are found by title, each monitor by the `managed-by:apm-demo` tag and its name,
//! downtimes by the marker their message starts with. "Differs" means a field the plan sets has
//! another value in Datadog; fields Datadog adds (ids, authors, dates) are not compared. The
//! downtimes name the monitors by their tag, so they cover every managed monitor without their ids.

use serde::Serialize;
use serde_json::{Value, json};

use crate::api::Api;
use crate::resources::{self, DOWNTIMES, MANAGED_BY, PlannedDowntime, Settings};

/// What happened to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Created,
    Updated,
    Unchanged,
    Deleted,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    pub kind: &'static str,
    pub name: String,
    pub id: String,
    pub action: Action,
    pub url: String,
}

/// What a run did, in order; on failure, what it did before failing.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Report {
    pub outcomes: Vec<Outcome>,
}

impl Report {
    pub fn print(&self) {
        for o in &self.outcomes {
            println!(
                "{:<9} {:<10} {:<45} {}",
                format!("{:?}", o.action).to_lowercase(),
                o.kind,
                o.name,
                o.url
            );
        }
        if !self.outcomes.is_empty() && self.outcomes.iter().all(|o| o.action == Action::Unchanged)
        {
            println!("nothing to change: Datadog already matches the plan");
        }
    }
}

/// A failed run: the error, and what had been done before it.
#[derive(Debug)]
pub struct Failed {
    pub report: Report,
    pub error: anyhow::Error,
}

/// Where objects are seen in Datadog's web app.
#[derive(Debug, Clone)]
pub struct WebApp {
    pub base: String,
}

impl WebApp {
    /// `datadoghq.com` and `datadoghq.eu` answer on `app.<site>`; `us3.datadoghq.com` etc. on the site.
    pub fn for_site(site: &str) -> Self {
        let base = if site.split('.').count() == 2 {
            format!("https://app.{site}")
        } else {
            format!("https://{site}")
        };
        Self { base }
    }
}

/// Creates or updates every object of the plan.
pub fn apply(api: &Api, settings: &Settings, web: &WebApp) -> Result<Report, Failed> {
    reporting(|report| apply_all(api, settings, web, report))
}

/// Runs `steps`, which record each outcome as they go; on failure, keeps what they had done.
fn reporting(steps: impl FnOnce(&mut Report) -> anyhow::Result<()>) -> Result<Report, Failed> {
    let mut report = Report::default();
    match steps(&mut report) {
        Ok(()) => Ok(report),
        Err(error) => Err(Failed { report, error }),
    }
}

fn apply_all(api: &Api, s: &Settings, web: &WebApp, report: &mut Report) -> anyhow::Result<()> {
    let listed = api.get("/api/v1/dashboard")?;
    for dashboard in [resources::timeboard(s), resources::apm_dashboard(s)] {
        let body = serde_json::to_value(&dashboard)?;
        let existing = listed["dashboards"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|d| d["title"] == dashboard.title);
        let (id, action, saved) = match existing.and_then(|d| d["id"].as_str()) {
            Some(id) => {
                let current = api.get(&format!("/api/v1/dashboard/{id}"))?;
                if contains(&current, &body) {
                    (id.to_owned(), Action::Unchanged, current)
                } else {
                    (
                        id.to_owned(),
                        Action::Updated,
                        api.put(&format!("/api/v1/dashboard/{id}"), &body)?,
                    )
                }
            }
            None => {
                let created = api.post("/api/v1/dashboard", &body)?;
                (text_id(&created["id"])?, Action::Created, created)
            }
        };
        // The dashboard's own URL, opened live over its default time frame.
        let path = saved["url"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("/dashboard/{id}"));
        report.outcomes.push(Outcome {
            kind: "dashboard",
            name: dashboard.title.clone(),
            url: format!("{}{path}?live=true", web.base),
            id,
            action,
        });
    }

    let listed = api.get(&format!("/api/v1/monitor?monitor_tags={MANAGED_BY}"))?;
    for monitor in resources::monitors(s) {
        let body = serde_json::to_value(&monitor)?;
        let existing = listed
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["name"] == monitor.name);
        let (monitor_id, action) = match existing {
            Some(current) => {
                let id = current["id"]
                    .as_i64()
                    .ok_or_else(|| anyhow::anyhow!("monitor without an id: {current}"))?;
                if contains(current, &as_saved(&body, current)) {
                    (id, Action::Unchanged)
                } else {
                    api.put(&format!("/api/v1/monitor/{id}"), &body)?;
                    (id, Action::Updated)
                }
            }
            None => {
                let created = api.post("/api/v1/monitor", &body)?;
                let id = created["id"]
                    .as_i64()
                    .ok_or_else(|| anyhow::anyhow!("created monitor without an id"))?;
                (id, Action::Created)
            }
        };
        report.outcomes.push(Outcome {
            kind: "monitor",
            name: monitor.name.clone(),
            id: monitor_id.to_string(),
            action,
            url: format!("{}/monitors/{monitor_id}", web.base),
        });
    }

    let listed = api.get("/api/v2/downtime")?;
    for planned in &DOWNTIMES {
        let request = planned.request(s);
        let mut body = serde_json::to_value(&request)?;
        let existing = find_downtimes(&listed, planned).next();
        let (id, action) = match existing {
            Some(current) => {
                let id = text_id(&current["id"])?;
                if contains(
                    &current["attributes"],
                    &comparable(&body["data"]["attributes"]),
                ) {
                    (id, Action::Unchanged)
                } else {
                    body["data"]["id"] = json!(id);
                    api.patch(&format!("/api/v2/downtime/{id}"), &body)?;
                    (id, Action::Updated)
                }
            }
            None => {
                let created = api.post("/api/v2/downtime", &body)?;
                (text_id(&created["data"]["id"])?, Action::Created)
            }
        };
        report.outcomes.push(Outcome {
            kind: "downtime",
            name: format!(
                "{} ({})",
                planned.name, request.data.attributes.schedule.recurrences[0].rrule
            ),
            url: format!("{}/monitors/downtimes?id={id}", web.base),
            id,
            action,
        });
    }
    Ok(())
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

/// Removes every object provision manages: downtimes first, then every monitor with the
/// `managed-by:apm-demo` tag (whatever its name: those of another `--host` or `--env` too), then the
/// dashboards.
pub fn destroy(api: &Api, settings: &Settings, web: &WebApp) -> Result<Report, Failed> {
    reporting(|report| destroy_all(api, settings, web, report))
}

fn destroy_all(api: &Api, s: &Settings, web: &WebApp, report: &mut Report) -> anyhow::Result<()> {
    let mut deleted = |kind, name: String, id: String| {
        report.outcomes.push(Outcome {
            kind,
            name,
            url: web.base.clone(),
            id,
            action: Action::Deleted,
        })
    };
    let downtimes = api.get("/api/v2/downtime")?;
    for planned in &DOWNTIMES {
        for downtime in find_downtimes(&downtimes, planned) {
            let id = text_id(&downtime["id"])?;
            api.delete(&format!("/api/v2/downtime/{id}"))?;
            deleted("downtime", planned.name.to_owned(), id);
        }
    }
    let monitors = api.get(&format!("/api/v1/monitor?monitor_tags={MANAGED_BY}"))?;
    for monitor in monitors.as_array().into_iter().flatten() {
        let Some(monitor_id) = monitor["id"].as_i64() else {
            continue;
        };
        api.delete(&format!("/api/v1/monitor/{monitor_id}"))?;
        deleted(
            "monitor",
            monitor["name"].as_str().unwrap_or_default().to_owned(),
            monitor_id.to_string(),
        );
    }
    let titles = [
        resources::timeboard(s).title,
        resources::apm_dashboard(s).title,
    ];
    let dashboards = api.get("/api/v1/dashboard")?;
    for dashboard in dashboards["dashboards"].as_array().into_iter().flatten() {
        if let (Some(title), Some(id)) = (dashboard["title"].as_str(), dashboard["id"].as_str())
            && titles.iter().any(|t| t == title)
        {
            api.delete(&format!("/api/v1/dashboard/{id}"))?;
            deleted("dashboard", title.to_owned(), id.to_owned());
        }
    }
    Ok(())
}

/// Our downtimes of this kind that are not canceled: those whose message starts with its marker,
/// whichever monitors they name (those of an earlier provision named the monitor by id).
fn find_downtimes<'a>(
    listed: &'a Value,
    planned: &PlannedDowntime,
) -> impl Iterator<Item = &'a Value> {
    let marker = planned.marker();
    listed["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(move |d| {
            let a = &d["attributes"];
            a["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(&marker))
                && a["status"] != "canceled"
        })
}

/// A downtime's attributes without the first occurrence's start, which moves with the day provision
/// runs on and is not a change of the schedule.
fn comparable(attributes: &Value) -> Value {
    let mut attributes = attributes.clone();
    if let Some(recurrences) = attributes["schedule"]["recurrences"].as_array_mut() {
        for recurrence in recurrences {
            if let Some(r) = recurrence.as_object_mut() {
                r.remove("start");
            }
        }
    }
    attributes
}

/// Ids are strings in some APIs and numbers in others.
fn text_id(id: &Value) -> anyhow::Result<String> {
    match id {
        Value::String(id) => Ok(id.clone()),
        Value::Number(id) => Ok(id.to_string()),
        other => anyhow::bail!("the API returned no id ({other})"),
    }
}

/// Whether `current` already holds every value `desired` sets (objects: per key; arrays: per element,
/// same length; numbers: by value, so 800 equals 800.0).
pub fn contains(current: &Value, desired: &Value) -> bool {
    match (current, desired) {
        (Value::Object(current), Value::Object(desired)) => desired
            .iter()
            .all(|(key, value)| current.get(key).is_some_and(|c| contains(c, value))),
        (Value::Array(current), Value::Array(desired)) => {
            current.len() == desired.len()
                && current.iter().zip(desired).all(|(c, d)| contains(c, d))
        }
        (Value::Number(current), Value::Number(desired)) => current.as_f64() == desired.as_f64(),
        (current, desired) => current == desired,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contains_ignores_what_the_api_adds() {
        let current = json!({"id": 1, "name": "x", "options": {"thresholds": {"critical": 800.0}, "silenced": {}}});
        assert!(contains(
            &current,
            &json!({"name": "x", "options": {"thresholds": {"critical": 800}}})
        ));
        assert!(!contains(&current, &json!({"name": "y"})));
        assert!(!contains(&json!({"a": [1, 2]}), &json!({"a": [1]})));
    }

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
                contains(&current, &as_saved(&monitor(desired), &current)),
                same,
                "{desired} saved as {saved}"
            );
        }
    }

    #[test]
    fn web_app_urls_per_site() {
        assert_eq!(
            WebApp::for_site("datadoghq.com").base,
            "https://app.datadoghq.com"
        );
        assert_eq!(
            WebApp::for_site("datadoghq.eu").base,
            "https://app.datadoghq.eu"
        );
        assert_eq!(
            WebApp::for_site("us5.datadoghq.com").base,
            "https://us5.datadoghq.com"
        );
    }
}
