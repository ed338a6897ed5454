//! The loop apply runs for each kind of object, and the one destroy runs: list what Datadog holds,
//! find each planned object in it, compare, and create, update or leave it; or delete what is ours.
//! What differs between dashboards, monitors and downtimes is an [`ObjectKind`].
//!
//! "Differs" means a field the plan sets has another value in Datadog ([`contains`]); fields Datadog
//! adds (ids, authors, dates) are not compared.

use reqwest::Method;
use serde_json::Value;

use super::{Action, Outcome, Report, WebApp};
use crate::api::Api;
use crate::resources::Settings;

/// One object of the plan: how the report names it, what finds it again, its exact body.
pub struct Planned {
    pub name: String,
    /// What identifies it among the listed objects: a title, a name, a marker.
    pub key: String,
    pub body: Value,
}

/// Where a kind of object lives in the API, and how one is recognised, compared, updated and seen.
pub trait ObjectKind {
    /// The kind as the report names it ("dashboard").
    const NAME: &'static str;
    /// The collection: created with POST here, each object at `PATH/{id}`.
    const PATH: &'static str;
    /// The method that updates an object in place.
    const UPDATE: Method;

    /// The planned objects of this kind, in the order apply writes them.
    fn planned(s: &Settings) -> anyhow::Result<Vec<Planned>>;

    /// Where the objects are listed.
    fn list_path() -> String {
        Self::PATH.to_owned()
    }

    /// The listed object that `key` identifies, if any.
    fn find<'a>(listed: &'a Value, key: &str) -> Option<&'a Value>;

    /// Every listed object provision made, whatever the plan says now: (name, id) of each.
    fn ours(listed: &Value, s: &Settings) -> anyhow::Result<Vec<(String, String)>>;

    /// A listed object's id.
    fn id(listed: &Value) -> anyhow::Result<String> {
        text_id(&listed["id"])
    }

    /// The id in the answer to a create.
    fn created_id(created: &Value) -> anyhow::Result<String> {
        Self::id(created)
    }

    /// The object whole, as Datadog holds it; the listing holds it whole unless said otherwise.
    fn fetch(_api: &Api, _id: &str, listed: &Value) -> anyhow::Result<Value> {
        Ok(listed.clone())
    }

    /// Whether Datadog's `current` already is the planned `desired`.
    fn matches(current: &Value, desired: &Value) -> bool {
        contains(current, desired)
    }

    /// The body of the update: the planned one unless said otherwise.
    fn update_body(desired: Value, _id: &str) -> Value {
        desired
    }

    /// Where the object is seen in the web app; `saved` is Datadog's copy (its answer to the write,
    /// or the current object when nothing was written).
    fn url(web: &WebApp, id: &str, saved: &Value) -> String;
}

/// Creates what is missing, updates what differs, leaves the rest; records each object's outcome.
pub fn converge<K: ObjectKind>(
    api: &Api,
    s: &Settings,
    web: &WebApp,
    report: &mut Report,
) -> anyhow::Result<()> {
    let listed = api.get(&K::list_path())?;
    for planned in K::planned(s)? {
        let (id, action, saved) = match K::find(&listed, &planned.key) {
            Some(existing) => {
                let id = K::id(existing)?;
                let current = K::fetch(api, &id, existing)?;
                if K::matches(&current, &planned.body) {
                    (id, Action::Unchanged, current)
                } else {
                    let path = format!("{}/{id}", K::PATH);
                    let body = K::update_body(planned.body, &id);
                    let saved = api.send(K::UPDATE, &path, Some(&body))?;
                    (id, Action::Updated, saved)
                }
            }
            None => {
                let created = api.post(K::PATH, &planned.body)?;
                (K::created_id(&created)?, Action::Created, created)
            }
        };
        report.outcomes.push(Outcome {
            kind: K::NAME,
            name: planned.name,
            url: K::url(web, &id, &saved),
            id,
            action,
        });
    }
    Ok(())
}

/// Deletes every object of this kind that provision made; records each.
pub fn remove<K: ObjectKind>(
    api: &Api,
    s: &Settings,
    web: &WebApp,
    report: &mut Report,
) -> anyhow::Result<()> {
    let listed = api.get(&K::list_path())?;
    for (name, id) in K::ours(&listed, s)? {
        api.delete(&format!("{}/{id}", K::PATH))?;
        report.outcomes.push(Outcome {
            kind: K::NAME,
            name,
            url: web.base.clone(),
            id,
            action: Action::Deleted,
        });
    }
    Ok(())
}

/// Ids are strings in some APIs and numbers in others.
pub fn text_id(id: &Value) -> anyhow::Result<String> {
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
    use serde_json::json;

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
}
