//! Dashboards (v1): found by title. The listing holds only summaries, so a found dashboard is fetched
//! whole before it is compared.

use reqwest::Method;
use serde_json::Value;

use super::WebApp;
use super::converge::{ObjectKind, Planned};
use crate::api::Api;
use crate::resources::{Settings, dashboards};

pub struct Dashboards;

impl ObjectKind for Dashboards {
    const NAME: &'static str = "dashboard";
    const PATH: &'static str = "/api/v1/dashboard";
    const UPDATE: Method = Method::PUT;

    fn planned(s: &Settings) -> anyhow::Result<Vec<Planned>> {
        dashboards::all(s)
            .into_iter()
            .map(|dashboard| {
                Ok(Planned {
                    body: serde_json::to_value(&dashboard)?,
                    key: dashboard.title.clone(),
                    name: dashboard.title,
                })
            })
            .collect()
    }

    fn find<'a>(listed: &'a Value, title: &str) -> Option<&'a Value> {
        listed["dashboards"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|d| d["title"] == title)
    }

    /// Those with a title of the plan (another --host's or --env's have the same titles).
    fn ours(listed: &Value, s: &Settings) -> anyhow::Result<Vec<(String, String)>> {
        let titles: Vec<String> = dashboards::all(s).into_iter().map(|d| d.title).collect();
        Ok(listed["dashboards"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| Some((d["title"].as_str()?, d["id"].as_str()?)))
            .filter(|(title, _)| titles.iter().any(|t| t == title))
            .map(|(title, id)| (title.to_owned(), id.to_owned()))
            .collect())
    }

    fn fetch(api: &Api, id: &str, _listed: &Value) -> anyhow::Result<Value> {
        api.get(&format!("{}/{id}", Self::PATH))
    }

    /// The dashboard's own URL, opened live over its default time frame.
    fn url(web: &WebApp, id: &str, saved: &Value) -> String {
        let path = saved["url"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("/dashboard/{id}"));
        format!("{}{path}?live=true", web.base)
    }
}
