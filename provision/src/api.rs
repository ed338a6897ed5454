//! The Datadog API over HTTPS: keys in headers, JSON in and out, and the retry policy.
//!
//! 429 waits as long as the API asks (Retry-After or X-RateLimit-Reset, at most a minute) and tries
//! again; a 5xx or a broken connection is tried again a bounded number of times with backoff; 401/403
//! and other 4xx fail at once with the API's own error text.
//!
//! No redirect is followed: a 3xx is an error. reqwest's default policy follows up to ten, and on a
//! redirect to another host drops only `Authorization`, `Cookie`, `Proxy-Authorization` and
//! `WWW-Authenticate` (reqwest 0.13, src/redirect.rs, `remove_sensitive_headers`): `DD-API-KEY` and
//! `DD-APPLICATION-KEY` would go wherever the answer points. Datadog's API does not redirect.

use std::fmt;
use std::time::Duration;

use reqwest::blocking::{Client, Response};
use reqwest::header::LOCATION;
use reqwest::{Method, redirect};
use serde_json::Value;

/// Attempts for a request answered 5xx, or not answered.
const SERVER_ERROR_ATTEMPTS: u32 = 3;
/// Attempts for a request answered 429.
const RATE_LIMIT_ATTEMPTS: u32 = 5;
const LONGEST_RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);

/// The keys. Their `Debug` shows neither, so that no log line or error can print them.
#[derive(Clone)]
pub struct Credentials {
    pub api_key: String,
    pub app_key: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("api_key", &format_args!("<redacted>"))
            .field("app_key", &format_args!("<redacted>"))
            .finish()
    }
}

pub struct Api {
    http: Client,
    base: String,
    credentials: Credentials,
    /// First pause after a 5xx; doubled for each further attempt.
    backoff: Duration,
}

impl Api {
    /// `base` is `https://api.<site>`, or the URL given with `--api-url` (site.rs checks both).
    pub fn new(base: impl Into<String>, credentials: Credentials) -> anyhow::Result<Self> {
        let http = Client::builder()
            .redirect(redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("apm-demo-provision/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            base: base.into().trim_end_matches('/').to_owned(),
            credentials,
            backoff: Duration::from_millis(500),
        })
    }

    /// Shorter pauses between retries (tests).
    pub fn with_backoff(mut self, backoff: Duration) -> Self {
        self.backoff = backoff;
        self
    }

    pub fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(Method::GET, path, None)
    }

    pub fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(Method::POST, path, Some(body))
    }

    pub fn put(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(Method::PUT, path, Some(body))
    }

    pub fn patch(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(Method::PATCH, path, Some(body))
    }

    pub fn delete(&self, path: &str) -> anyhow::Result<Value> {
        self.send(Method::DELETE, path, None)
    }

    /// `method` on `path`, with `body` as JSON; the answer's JSON (null when empty).
    pub fn send(&self, method: Method, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let (mut server_errors, mut rate_limits) = (0, 0);
        loop {
            let mut request = self
                .http
                .request(method.clone(), format!("{}{path}", self.base))
                .header("DD-API-KEY", &self.credentials.api_key)
                .header("DD-APPLICATION-KEY", &self.credentials.app_key)
                .header("Accept", "application/json");
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = match request.send() {
                Ok(response) => response,
                Err(error) => {
                    server_errors += 1;
                    anyhow::ensure!(
                        server_errors < SERVER_ERROR_ATTEMPTS,
                        "{method} {path}: no answer after {server_errors} attempts: {error}"
                    );
                    std::thread::sleep(self.backoff * 2u32.pow(server_errors - 1));
                    continue;
                }
            };
            let status = response.status();
            if status.is_success() {
                let text = response.text()?;
                return Ok(if text.trim().is_empty() {
                    Value::Null
                } else {
                    serde_json::from_str(&text)?
                });
            }
            if status.as_u16() == 429 {
                rate_limits += 1;
                let wait = rate_limit_wait(&response);
                anyhow::ensure!(
                    rate_limits < RATE_LIMIT_ATTEMPTS,
                    "{method} {path}: still rate limited (429) after {rate_limits} attempts"
                );
                eprintln!("rate limited (429): waiting {wait:?} as the API asks");
                std::thread::sleep(wait);
                continue;
            }
            if status.is_redirection() {
                let location = response
                    .headers()
                    .get(LOCATION)
                    .map(|l| {
                        String::from_utf8_lossy(l.as_bytes())
                            .chars()
                            .take(200)
                            .collect::<String>()
                    })
                    .unwrap_or_default();
                anyhow::bail!(
                    "{method} {path}: {status}: the API redirects to {location:?}; provision follows \
                     no redirect (the keys would go with it): check DD_SITE or --api-url"
                );
            }
            let text = response.text().unwrap_or_default();
            if status.is_server_error() {
                server_errors += 1;
                anyhow::ensure!(
                    server_errors < SERVER_ERROR_ATTEMPTS,
                    "{method} {path}: {status} after {server_errors} attempts: {}",
                    api_errors(&text)
                );
                std::thread::sleep(self.backoff * 2u32.pow(server_errors - 1));
                continue;
            }
            if matches!(status.as_u16(), 401 | 403) {
                anyhow::bail!(
                    "{method} {path}: {status}: the keys were refused; check DD_API_KEY, DD_APP_KEY (and its \
                     scopes) and DD_SITE: {}",
                    api_errors(&text)
                );
            }
            anyhow::bail!("{method} {path}: {status}: {}", api_errors(&text));
        }
    }
}

/// How long a 429 asks to wait: Retry-After (seconds), else X-RateLimit-Reset, else a second.
fn rate_limit_wait(response: &Response) -> Duration {
    ["retry-after", "x-ratelimit-reset"]
        .iter()
        .filter_map(|name| {
            response
                .headers()
                .get(*name)?
                .to_str()
                .ok()?
                .trim()
                .parse::<f64>()
                .ok()
        })
        .find(|seconds| seconds.is_finite() && *seconds >= 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(Duration::from_secs(1))
        .min(LONGEST_RATE_LIMIT_WAIT)
}

/// The API's `{"errors": [...]}` as one line, or the body as it is.
fn api_errors(body: &str) -> String {
    match serde_json::from_str::<Value>(body) {
        Ok(Value::Object(map)) if map.contains_key("errors") => map["errors"].to_string(),
        _ => body.chars().take(500).collect(),
    }
}
