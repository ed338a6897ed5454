//! Converging Datadog to the plan: find what provision made before, create what is missing, update
//! what differs, leave the rest alone; and removing it all again. One loop does it for every kind
//! (`converge.rs`); each kind says how its objects are found and compared: dashboards by title
//! (`dashboards.rs`), each monitor by the `managed-by:apm-demo` tag and its name (`monitors.rs`),
//! downtimes by the marker their message starts with (`downtimes.rs`). Here: what a run reports.

mod converge;
mod dashboards;
mod downtimes;
mod monitors;

use serde::Serialize;

use crate::api::Api;
use crate::resources::Settings;
pub use converge::contains;
use converge::{converge, remove};
use dashboards::Dashboards;
use downtimes::Downtimes;
use monitors::Monitors;

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

/// Dashboards, then monitors, then downtimes: each kind through the same loop.
fn apply_all(api: &Api, s: &Settings, web: &WebApp, report: &mut Report) -> anyhow::Result<()> {
    converge::<Dashboards>(api, s, web, report)?;
    converge::<Monitors>(api, s, web, report)?;
    converge::<Downtimes>(api, s, web, report)
}

/// Removes every object provision manages: downtimes first, then every monitor with the
/// `managed-by:apm-demo` tag (whatever its name: those of another `--host` or `--env` too), then the
/// dashboards.
pub fn destroy(api: &Api, settings: &Settings, web: &WebApp) -> Result<Report, Failed> {
    reporting(|report| {
        remove::<Downtimes>(api, settings, web, report)?;
        remove::<Monitors>(api, settings, web, report)?;
        remove::<Dashboards>(api, settings, web, report)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
