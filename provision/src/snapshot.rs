//! `provision snapshot`: a graph of my_metric over the past hour, posted in an event that
//! @-mentions the recipient (the seed's "take a snapshot and use the @ notation").

use serde_json::json;

use crate::api::Api;
use crate::resources::{MANAGED_BY, Settings};

/// Takes the snapshot, posts the event; returns the snapshot's URL and the event's URL.
pub fn post(api: &Api, s: &Settings, now_unix: i64) -> anyhow::Result<(String, String)> {
    let query = format!("avg:my_metric{{host:{}}}", s.host);
    let path = format!(
        "/api/v1/graph/snapshot?metric_query={}&start={}&end={now_unix}&title=my_metric",
        encode(&query),
        now_unix - 3600
    );
    let snapshot = api.get(&path)?;
    let url = snapshot["snapshot_url"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("the snapshot API returned no snapshot_url: {snapshot}"))?
        .to_owned();
    let event = api.post(
        "/api/v1/events",
        &json!({
            "title": format!("my_metric on {} over the past hour", s.host),
            "text": format!("%%% \n![my_metric]({url})\n\n{} %%%", s.mention()),
            "tags": [MANAGED_BY, format!("host:{}", s.host)],
            "alert_type": "info",
        }),
    )?;
    let event_url = event["event"]["url"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    Ok((url, event_url))
}

/// Percent-encodes a query-string value.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
