//! Downtimes (v2): found by the marker their message starts with, whichever monitors they name (those
//! of an earlier provision named the monitor by id); a canceled one is not ours any more. They name
//! the monitors by their tag, so they cover every managed monitor without their ids.

use reqwest::Method;
use serde_json::{Value, json};

use super::WebApp;
use super::converge::{ObjectKind, Planned, contains, text_id};
use crate::resources::Settings;
use crate::resources::downtimes::DOWNTIMES;

pub struct Downtimes;

impl ObjectKind for Downtimes {
    const NAME: &'static str = "downtime";
    const PATH: &'static str = "/api/v2/downtime";
    const UPDATE: Method = Method::PATCH;

    fn planned(s: &Settings) -> anyhow::Result<Vec<Planned>> {
        DOWNTIMES
            .iter()
            .map(|planned| {
                let request = planned.request(s);
                Ok(Planned {
                    name: format!(
                        "{} ({})",
                        planned.name, request.data.attributes.schedule.recurrences[0].rrule
                    ),
                    key: planned.marker(),
                    body: serde_json::to_value(&request)?,
                })
            })
            .collect()
    }

    fn find<'a>(listed: &'a Value, marker: &str) -> Option<&'a Value> {
        marked(listed, marker).next()
    }

    /// Every live downtime with the marker of one of the plan's, under that downtime's name.
    fn ours(listed: &Value, _s: &Settings) -> anyhow::Result<Vec<(String, String)>> {
        let mut ours = Vec::new();
        for planned in &DOWNTIMES {
            for downtime in marked(listed, &planned.marker()) {
                ours.push((planned.name.to_owned(), text_id(&downtime["id"])?));
            }
        }
        Ok(ours)
    }

    fn created_id(created: &Value) -> anyhow::Result<String> {
        text_id(&created["data"]["id"])
    }

    fn matches(current: &Value, desired: &Value) -> bool {
        contains(
            &current["attributes"],
            &comparable(&desired["data"]["attributes"]),
        )
    }

    /// The v2 update names the downtime in its body too.
    fn update_body(mut desired: Value, id: &str) -> Value {
        desired["data"]["id"] = json!(id);
        desired
    }

    fn url(web: &WebApp, id: &str, _saved: &Value) -> String {
        format!("{}/monitors/downtimes?id={id}", web.base)
    }
}

/// The listed downtimes whose message starts with `marker`
/// ([`PlannedDowntime::marker`](crate::resources::downtimes::PlannedDowntime::marker)) and that are
/// not canceled.
fn marked<'a>(listed: &'a Value, marker: &str) -> impl Iterator<Item = &'a Value> {
    listed["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(move |d| {
            let a = &d["attributes"];
            a["message"].as_str().is_some_and(|m| m.starts_with(marker))
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
