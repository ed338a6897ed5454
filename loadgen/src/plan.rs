//! The plan of a run: where to send, which requests in which proportions, and when to stop; and the
//! [`Schedule`] that hands each request its number and (at a fixed rate) its send time.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use url::Url;

use crate::cli::TraceHeaders;

/// Everything a run needs, validated.
#[derive(Debug, Clone)]
pub struct Plan {
    pub target: Target,
    pub mix: Mix,
    pub headers: HeaderMap,
    pub trace_headers: TraceHeaders,
    pub mode: Mode,
    pub connections: usize,
    pub stop: Stop,
    pub timeout: Duration,
    pub max_error_rate: Option<f64>,
    pub json: bool,
}

/// Open loop (a fixed rate) or closed loop (as fast as the service answers).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    Open { rate: f64 },
    Closed,
}

/// When the run ends: the first of the two that is set and reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stop {
    pub duration: Option<Duration>,
    pub requests: Option<u64>,
}

/// The service: its address for the socket, its authority for the Host header, its base path.
#[derive(Debug, Clone)]
pub struct Target {
    pub base: Url,
    /// `host:port`, to connect to.
    pub address: String,
    /// The Host header.
    pub authority: String,
}

impl Target {
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let base =
            Url::parse(text.trim()).map_err(|e| anyhow::anyhow!("{text:?} is not a URL: {e}"))?;
        anyhow::ensure!(
            base.scheme() == "http",
            "{text:?}: only http:// targets are supported"
        );
        let host = base
            .host_str()
            .ok_or_else(|| anyhow::anyhow!("{text:?} has no host"))?;
        let port = base.port_or_known_default().unwrap_or(80);
        let authority = match base.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        Ok(Self {
            address: format!("{host}:{port}"),
            authority,
            base,
        })
    }

    /// The request target for a mix path: the base URL's path, then the mix path.
    fn path_and_query(&self, path: &str) -> String {
        let base = self.base.path().trim_end_matches('/');
        format!("{base}{path}")
    }
}

/// Weighted requests, sent in a fixed interleaved cycle so that any run holds them in proportion.
///
/// The text is `entry,entry,...`, each entry `[METHOD ]path[ body][=weight]`: the method (GET when
/// left out), a path in which `{low..high}` stands for a number drawn per request from that
/// inclusive range, a JSON body (POST, PUT and PATCH only) and a weight (1 when left out). Commas,
/// `=` and spaces inside braces, brackets and JSON strings belong to the body, so a JSON body needs
/// no escaping: `/=3,POST /api/visits {"page":"/a","n":1}=1,/api/visits/{1..50}=2`.
#[derive(Debug, Clone)]
pub struct Mix {
    entries: Vec<Entry>,
    cycle: Vec<usize>,
}

/// One kind of request of the mix.
#[derive(Debug, Clone)]
pub struct Entry {
    pub method: Method,
    /// The path as written, placeholders included: how the report names the entry's row.
    pub path: String,
    /// Sent as it was written, with `content-type: application/json`.
    pub body: Option<Bytes>,
    pub weight: u32,
    parts: Vec<Part>,
}

/// A piece of a path: text as written, or a `{low..high}` placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Number { low: u64, high: u64 },
}

/// The methods a mix may name: the standard ones, which `http` stores without allocating.
const METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS";

fn method(token: &str) -> Option<Method> {
    Some(match token {
        "GET" => Method::GET,
        "HEAD" => Method::HEAD,
        "POST" => Method::POST,
        "PUT" => Method::PUT,
        "PATCH" => Method::PATCH,
        "DELETE" => Method::DELETE,
        "OPTIONS" => Method::OPTIONS,
        _ => return None,
    })
}

/// Whether a body may go with `method`: RFC 9110 gives content a meaning for these three only
/// (a GET or DELETE body "has no generally defined semantics", and servers may refuse it).
fn takes_a_body(method: &Method) -> bool {
    matches!(*method, Method::POST | Method::PUT | Method::PATCH)
}

impl Mix {
    /// Parses the `--mix` text (see [`Mix`]); the error names the entry and what is wrong with it.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let commas = top_level(text)?
            .into_iter()
            .filter(|&(_, c)| c == ',')
            .map(|(at, _)| at);
        let mut entries = Vec::new();
        let mut from = 0;
        for end in commas.chain([text.len()]) {
            let entry = text[from..end].trim();
            from = end + 1;
            if !entry.is_empty() {
                entries.push(Entry::parse(entry)?);
            }
        }
        anyhow::ensure!(!entries.is_empty(), "--mix has no entries");
        let weights: Vec<u32> = entries.iter().map(|entry| entry.weight).collect();
        let cycle = smooth_cycle(&weights);
        Ok(Self { entries, cycle })
    }

    /// The entries, in the order given.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Which entry request number `index` goes to.
    pub fn pick(&self, index: u64) -> usize {
        self.cycle[(index % self.cycle.len() as u64) as usize]
    }

    /// The entries ready to send to `target`, by entry index.
    pub fn prepare(&self, target: &Target) -> Vec<Prepared> {
        self.entries
            .iter()
            .map(|entry| Prepared {
                method: entry.method.clone(),
                body: entry.body.clone(),
                headers: match &entry.body {
                    Some(body) => vec![
                        (CONTENT_TYPE, HeaderValue::from_static("application/json")),
                        (CONTENT_LENGTH, HeaderValue::from(body.len())),
                    ],
                    None if takes_a_body(&entry.method) => {
                        vec![(CONTENT_LENGTH, HeaderValue::from_static("0"))]
                    }
                    None => Vec::new(),
                },
                uri: if entry.has_placeholders() {
                    PreparedUri::Numbered {
                        base: target.path_and_query(""),
                        parts: entry.parts.clone(),
                    }
                } else {
                    PreparedUri::Fixed(
                        target
                            .path_and_query(&entry.path)
                            .parse()
                            .expect("the mix paths were validated"),
                    )
                },
            })
            .collect()
    }
}

impl Entry {
    /// One entry, `[METHOD ]path[ body][=weight]`, already trimmed and balanced.
    fn parse(entry: &str) -> anyhow::Result<Self> {
        let (head, weight) = match top_level(entry)?.iter().rev().find(|&&(_, c)| c == '=') {
            Some(&(at, _)) => (
                entry[..at].trim_end(),
                parse_weight(&entry[at + 1..], entry)?,
            ),
            None => (entry, 1),
        };
        let (first, rest) = split_word(head)?;
        let (method, path, body) = if first.starts_with('/') {
            (Method::GET, first, rest)
        } else if rest.is_empty() {
            anyhow::bail!("--mix entry {entry:?}: the path must start with /")
        } else {
            let method = method(first).ok_or_else(|| {
                anyhow::anyhow!("--mix entry {entry:?}: {first:?} is not a method: use {METHODS}")
            })?;
            let (path, body) = split_word(rest)?;
            (method, path, body)
        };
        anyhow::ensure!(
            path.starts_with('/'),
            "--mix entry {entry:?}: the path must start with /"
        );
        let parts = parse_path(path, entry)?;
        let body = if body.is_empty() {
            None
        } else {
            anyhow::ensure!(
                body.starts_with(['{', '[']),
                "--mix entry {entry:?}: after the path only a JSON body may follow ({{...}} or [...]), not {body:?}"
            );
            serde_json::from_str::<serde::de::IgnoredAny>(body)
                .map_err(|e| anyhow::anyhow!("--mix entry {entry:?}: the body is not JSON: {e}"))?;
            anyhow::ensure!(
                takes_a_body(&method),
                "--mix entry {entry:?}: a body goes with POST, PUT or PATCH, not {method}"
            );
            Some(Bytes::copy_from_slice(body.as_bytes()))
        };
        Ok(Self {
            method,
            path: path.to_owned(),
            body,
            weight,
            parts,
        })
    }

    /// `METHOD path`, the entry's name in the report: one row per entry, whatever ids it drew.
    pub fn label(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    fn has_placeholders(&self) -> bool {
        self.parts
            .iter()
            .any(|part| matches!(part, Part::Number { .. }))
    }

    /// The path of request number `index`, its placeholders replaced by their numbers.
    pub fn path_of(&self, index: u64) -> String {
        let mut path = String::new();
        render(&self.parts, index, &mut path);
        path
    }
}

fn parse_weight(text: &str, entry: &str) -> anyhow::Result<u32> {
    let refusal = || {
        anyhow::anyhow!("--mix entry {entry:?}: the weight must be a whole number from 1 to 1000")
    };
    let weight: u32 = text.trim().parse().map_err(|_| refusal())?;
    if (1..=1000).contains(&weight) {
        Ok(weight)
    } else {
        Err(refusal())
    }
}

/// The path's text and `{low..high}` placeholders, checked to make a valid URL path.
fn parse_path(path: &str, entry: &str) -> anyhow::Result<Vec<Part>> {
    let mut parts = Vec::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        // Braces are balanced (top_level checked), so this one closes.
        let Some(length) = rest[open..].find('}') else {
            anyhow::bail!("--mix entry {entry:?}: unbalanced braces in the path");
        };
        let close = open + length;
        let inner = &rest[open + 1..close];
        let (low, high) = inner
            .split_once("..")
            .and_then(|(low, high)| Some((number(low)?, number(high)?)))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "--mix entry {entry:?}: {:?} in the path is not a number range like {{1..500}} \
                     (a JSON body goes after a space)",
                    &rest[open..=close]
                )
            })?;
        anyhow::ensure!(
            low <= high,
            "--mix entry {entry:?}: the range {{{low}..{high}}} is empty: its first number must not be above its second"
        );
        if open > 0 {
            parts.push(Part::Text(rest[..open].to_owned()));
        }
        parts.push(Part::Number { low, high });
        rest = &rest[close + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest.to_owned()));
    }
    // Digits are valid anywhere in a path, so if the lowest numbers make a valid path, any do.
    let mut example = String::new();
    render(&parts, 0, &mut example);
    http::uri::PathAndQuery::try_from(example.as_str())
        .map_err(|_| anyhow::anyhow!("--mix entry {entry:?}: not a valid URL path"))?;
    Ok(parts)
}

/// A whole number of digits only (`u64`'s parser would take a leading `+`; it refuses "").
fn number(text: &str) -> Option<u64> {
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Appends the path of request `index` to `out`.
fn render(parts: &[Part], index: u64, out: &mut String) {
    let mut placeholder = 0;
    for part in parts {
        match part {
            Part::Text(text) => out.push_str(text),
            Part::Number { low, high } => {
                let _ = write!(out, "{}", number_for(index, placeholder, *low, *high));
                placeholder += 1;
            }
        }
    }
}

/// The number placeholder `placeholder` of request `index` stands for: a hash of the two spread
/// over `low..=high`, so the same run sends the same numbers, in a scrambled but repeatable order,
/// and over many requests every number in the range equally often.
pub fn number_for(index: u64, placeholder: u32, low: u64, high: u64) -> u64 {
    // Hashed twice, so that the placeholders of one path draw unrelated numbers.
    let hash = splitmix64(splitmix64(index) ^ u64::from(placeholder));
    let span = u128::from(high - low) + 1;
    // Multiply-shift: hash / 2^64 of the span, without a division.
    low + ((u128::from(hash) * span) >> 64) as u64
}

/// SplitMix64's output for a state of `x` (Steele, Lea and Flood, 2014; `java.util.SplittableRandom`).
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The characters of `text` outside `{...}` and `[...]` (and, inside those, outside JSON strings),
/// with their byte offsets; or which brace or bracket does not pair up.
fn top_level(text: &str) -> anyhow::Result<Vec<(usize, char)>> {
    let mut open: Vec<(usize, char)> = Vec::new();
    let mut top = Vec::new();
    let (mut in_string, mut escaped) = (false, false);
    for (at, c) in text.char_indices() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '{' => open.push((at, '}')),
            '[' => open.push((at, ']')),
            '}' | ']' => match open.pop() {
                Some((_, wanted)) if wanted == c => {}
                Some((from, wanted)) => anyhow::bail!(
                    "--mix {text:?}: unbalanced braces: {c:?} closes {:?}, which {wanted:?} should close",
                    excerpt(&text[from..])
                ),
                None => anyhow::bail!(
                    "--mix {text:?}: unbalanced braces: {c:?} at {:?} closes nothing",
                    excerpt(&text[at..])
                ),
            },
            '"' if !open.is_empty() => in_string = true,
            _ if open.is_empty() => top.push((at, c)),
            _ => {}
        }
    }
    if in_string {
        anyhow::bail!("--mix {text:?}: a JSON string is never closed (no closing \")");
    }
    if let Some(&(from, wanted)) = open.last() {
        anyhow::bail!(
            "--mix {text:?}: unbalanced braces: {:?} is never closed (no {wanted:?})",
            excerpt(&text[from..])
        );
    }
    Ok(top)
}

/// The start of `text`, enough to point at a place in an error message.
fn excerpt(text: &str) -> &str {
    text.char_indices()
        .nth(24)
        .map_or(text, |(at, _)| &text[..at])
}

/// `text` split at its first top-level whitespace: the word, and the rest trimmed.
fn split_word(text: &str) -> anyhow::Result<(&str, &str)> {
    Ok(
        match top_level(text)?
            .into_iter()
            .find(|(_, c)| c.is_whitespace())
        {
            Some((at, _)) => (&text[..at], text[at..].trim()),
            None => (text, ""),
        },
    )
}

/// One entry, ready to send; built once per run, so that a request to a path without placeholders
/// only clones what is here (reference counts, no allocation).
#[derive(Debug, Clone)]
pub struct Prepared {
    pub method: Method,
    pub body: Option<Bytes>,
    /// What to say about the body: its type and length (hyper respects a content-length it is
    /// given, and would otherwise format one per request, two allocations); for a POST, PUT or
    /// PATCH without one, a length of 0 (RFC 9110, 8.6); nothing for a GET.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    uri: PreparedUri,
}

#[derive(Debug, Clone)]
enum PreparedUri {
    Fixed(Uri),
    /// The base URL's path, then the entry's parts, rendered per request.
    Numbered {
        base: String,
        parts: Vec<Part>,
    },
}

impl Prepared {
    /// The request target of request number `index`; `scratch` is a buffer the caller keeps, so
    /// that a numbered path costs one allocation, the URI's own (an exact-size copy of it).
    pub fn uri(&self, index: u64, scratch: &mut String) -> Uri {
        match &self.uri {
            PreparedUri::Fixed(uri) => uri.clone(),
            PreparedUri::Numbered { base, parts } => {
                scratch.clear();
                scratch.push_str(base);
                render(parts, index, scratch);
                Uri::try_from(scratch.as_str()).expect("the mix paths were validated")
            }
        }
    }
}

/// Smooth weighted round robin (as nginx balances upstreams): weights 3,1 give a a b a, not a a a b.
fn smooth_cycle(weights: &[u32]) -> Vec<usize> {
    let total: i64 = weights.iter().map(|&w| i64::from(w)).sum();
    let mut current = vec![0i64; weights.len()];
    (0..total)
        .map(|_| {
            for (c, &w) in current.iter_mut().zip(weights) {
                *c += i64::from(w);
            }
            let best = (0..weights.len())
                .max_by_key(|&i| (current[i], -(i as i64)))
                .unwrap_or(0);
            current[best] -= total;
            best
        })
        .collect()
}

/// Hands out request numbers to the connections, until the plan says stop.
#[derive(Debug)]
pub struct Schedule {
    start: Instant,
    deadline: Option<Instant>,
    limit: Option<u64>,
    interval: Option<Duration>,
    next: AtomicU64,
}

/// One request to send: its number, and for a fixed rate, when it is due.
#[derive(Debug, Clone, Copy)]
pub struct Slot {
    pub index: u64,
    pub due: Option<Instant>,
}

impl Schedule {
    pub fn new(plan: &Plan, start: Instant) -> Self {
        Self {
            start,
            deadline: plan.stop.duration.map(|d| start + d),
            limit: plan.stop.requests,
            interval: match plan.mode {
                Mode::Open { rate } => Some(Duration::from_secs_f64(1.0 / rate)),
                Mode::Closed => None,
            },
            next: AtomicU64::new(0),
        }
    }

    pub fn start(&self) -> Instant {
        self.start
    }

    /// The next request, or `None` when the run is over.
    pub fn claim(&self) -> Option<Slot> {
        let index = self.next.fetch_add(1, Ordering::Relaxed);
        if self.limit.is_some_and(|limit| index >= limit) {
            return None;
        }
        let due = self
            .interval
            .map(|interval| self.start + interval.mul_f64(index as f64));
        let when = due.unwrap_or_else(Instant::now);
        if self.deadline.is_some_and(|deadline| when >= deadline) {
            return None;
        }
        Some(Slot { index, due })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(text: &str) -> String {
        format!("{:#}", Mix::parse(text).expect_err(text))
    }

    fn only(text: &str) -> Entry {
        let mix = Mix::parse(text).unwrap();
        assert_eq!(mix.len(), 1, "{text}");
        mix.entries()[0].clone()
    }

    #[test]
    fn smooth_cycle_interleaves_by_weight() {
        let mix = Mix::parse("/a=3,/b=1").unwrap();
        let picks: Vec<usize> = (0..8).map(|i| mix.pick(i)).collect();
        assert_eq!(picks, [0, 0, 1, 0, 0, 0, 1, 0]);
    }

    #[test]
    fn mix_proportions_are_exact_over_whole_cycles() {
        let mix = Mix::parse("/=6,/api/apm=7,/api/trace=6,/x=1").unwrap();
        let mut counts = [0u32; 4];
        for i in 0..2000 {
            counts[mix.pick(i)] += 1;
        }
        assert_eq!(counts, [600, 700, 600, 100]);
    }

    #[test]
    fn the_default_mix_keeps_the_seed_routes_the_majority_in_a_cycle_of_20() {
        let mix = Mix::parse(crate::cli::DEFAULT_MIX).unwrap();
        let labels: Vec<String> = mix.entries().iter().map(Entry::label).collect();
        assert_eq!(
            labels,
            [
                "GET /",
                "GET /api/apm",
                "GET /api/trace",
                "GET /no-such-page",
                "POST /api/visits",
                "GET /api/visits/{1..50}",
                "GET /api/visits",
            ]
        );
        let mut counts = [0u32; 7];
        for i in 0..20 {
            counts[mix.pick(i)] += 1;
        }
        assert_eq!(
            counts,
            [5, 5, 5, 1, 1, 2, 1],
            "each entry its weight in every 20"
        );
        let post = &mix.entries()[4];
        assert_eq!(post.body.as_deref(), Some(&br#"{"page":"/"}"#[..]));
    }

    #[test]
    fn an_entry_without_a_method_is_a_get_without_a_body() {
        let entry = only("/api/apm=2");
        assert_eq!(
            (entry.method, entry.path.as_str(), entry.weight, entry.body),
            (Method::GET, "/api/apm", 2, None)
        );
        assert_eq!(only(" /a ").weight, 1);
        assert_eq!(
            only("/search?q=1=3").path,
            "/search?q=1",
            "the last = is the weight's"
        );
    }

    #[test]
    fn methods_weights_and_proportions_together() {
        let mix = Mix::parse(
            "GET /a=2, POST /a=1 ,DELETE /a/{1..9}=1,PUT /b,PATCH /c,HEAD /d,OPTIONS /e",
        )
        .unwrap();
        let methods: Vec<&str> = mix.entries().iter().map(|e| e.method.as_str()).collect();
        assert_eq!(
            methods,
            ["GET", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS"]
        );
        let mut counts = [0u32; 7];
        for i in 0..800 {
            counts[mix.pick(i)] += 1;
        }
        assert_eq!(counts, [200, 100, 100, 100, 100, 100, 100]);
    }

    #[test]
    fn an_unknown_method_is_refused_with_the_known_ones() {
        for bad in ["FETCH /a=1", "post /a", "GET/a /b"] {
            let message = refusal(bad);
            assert!(message.contains("is not a method"), "{bad}: {message}");
            assert!(message.contains(METHODS), "{bad}: {message}");
        }
        assert!(refusal("POST").contains("must start with /"));
        assert!(refusal("POST api").contains("must start with /"));
    }

    #[test]
    fn a_json_body_keeps_its_commas_equals_and_spaces() {
        let mix = Mix::parse(
            r#"/,POST /v {"page": "/a=b,c", "n": [1, {"x": "}]"}], "q": "say \"hi\", {"}=3,/z"#,
        )
        .unwrap();
        let labels: Vec<String> = mix.entries().iter().map(Entry::label).collect();
        assert_eq!(labels, ["GET /", "POST /v", "GET /z"]);
        let post = &mix.entries()[1];
        assert_eq!(post.weight, 3);
        assert_eq!(
            post.body.as_deref(),
            Some(&br#"{"page": "/a=b,c", "n": [1, {"x": "}]"}], "q": "say \"hi\", {"}"#[..])
        );
        assert_eq!(only("PUT /v [1,2]").body.as_deref(), Some(&b"[1,2]"[..]));
        assert_eq!(only(r#"PATCH /v {"a":1}"#).weight, 1);
        // An escaped quote does not end a string: the brace and comma after it are the string's.
        let entry = only(r#"PATCH /v {"q":"a\"}, {"}=2"#);
        assert_eq!(entry.body.as_deref(), Some(&br#"{"q":"a\"}, {"}"#[..]));
        assert_eq!(entry.weight, 2);
    }

    #[test]
    fn a_body_goes_with_post_put_and_patch_only() {
        for bad in [
            r#"GET /a {"x":1}"#,
            r#"/a {"x":1}=2"#,
            "DELETE /a {}",
            "HEAD /a []",
        ] {
            assert!(
                refusal(bad).contains("a body goes with POST, PUT or PATCH"),
                "{bad}"
            );
        }
        assert!(refusal("POST /a b=1").contains("only a JSON body"));
        assert!(refusal("/a b=1").contains("only a JSON body"));
        let message = refusal(r#"POST /a {"x":}"#);
        assert!(message.contains("the body is not JSON"), "{message}");
        assert!(refusal(r#"POST /a {"x":1} {"y":2}"#).contains("not JSON"));
    }

    #[test]
    fn unbalanced_braces_are_refused_and_pointed_at() {
        let message = refusal(r#"/b,POST /a {"page":"/", "n":[1,2], "more":"words"=1"#);
        assert!(message.contains("unbalanced braces"), "{message}");
        // The opening brace and what follows it, 24 characters.
        assert!(
            message.contains(r#": "{\"page\":\"/\", \"n\":[1,2], " is never closed (no '}')"#),
            "{message}"
        );
        let message = refusal("/a}=1");
        assert!(
            message.contains("'}' at \"}=1\" closes nothing"),
            "{message}"
        );
        let message = refusal(r#"POST /a {"n":[1}]"#);
        assert!(
            message.contains("'}' closes \"[1}]\", which ']' should close"),
            "{message}"
        );
        assert!(refusal(r#"POST /a {"n":"x}"#).contains("never closed"));
        assert!(refusal("/a/{1..5").contains("unbalanced braces"));
    }

    #[test]
    fn placeholders_are_number_ranges() {
        let message = refusal("/a/{5..1}");
        assert!(message.contains("the range {5..1} is empty"), "{message}");
        for bad in [
            "/a/{x..2}",
            "/a/{1-5}",
            "/a/{+1..5}",
            "/a/{1..}",
            "/a/{}",
            "/a/{{1..2}}",
            "POST /a{\"x\":1}",
        ] {
            let message = refusal(bad);
            assert!(
                message.contains("is not a number range like {1..500}"),
                "{bad}: {message}"
            );
        }
        let entry = only("/a/{7..7}/b");
        assert!((0..50).all(|i| entry.path_of(i) == "/a/7/b"));
        assert_eq!(
            only("/a/{1..2}{3..4}x").parts,
            [
                Part::Text("/a/".to_owned()),
                Part::Number { low: 1, high: 2 },
                Part::Number { low: 3, high: 4 },
                Part::Text("x".to_owned()),
            ]
        );
        assert_eq!(
            only("/a/{1..2}").parts.len(),
            2,
            "no empty text after the last placeholder"
        );
    }

    #[test]
    fn placeholder_numbers_are_in_range_deterministic_and_even() {
        let entry = only("/visits/{100..109}");
        let again = only("/visits/{100..109}");
        let mut counts = [0u32; 10];
        for i in 0..10_000 {
            let path = entry.path_of(i);
            assert_eq!(
                path,
                again.path_of(i),
                "the same request number, the same id"
            );
            let id: u64 = path.strip_prefix("/visits/").unwrap().parse().unwrap();
            assert!((100..=109).contains(&id), "{path}");
            counts[(id - 100) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&n| (850..=1150).contains(&n)),
            "{counts:?}"
        );
        let picks: Vec<String> = (0..8).map(|i| entry.path_of(i)).collect();
        assert!(picks.windows(2).any(|w| w[0] != w[1]), "{picks:?}");
    }

    #[test]
    fn two_placeholders_draw_their_own_numbers() {
        let entry = only("/{1..1000}/{1..1000}");
        let same = (0..1000)
            .filter(|&i| {
                let path = entry.path_of(i);
                let (a, b) = path[1..].split_once('/').unwrap();
                a == b
            })
            .count();
        assert!(
            same < 10,
            "{same} of 1000 requests drew the same number twice"
        );
    }

    #[test]
    fn numbers_cover_the_whole_u64_range_without_overflow() {
        assert_eq!(number_for(5, 0, 42, 42), 42);
        let n = number_for(5, 0, 0, u64::MAX);
        assert_eq!(
            n,
            splitmix64(splitmix64(5)),
            "the whole range is the hash itself"
        );
        assert!(number_for(5, 0, u64::MAX - 1, u64::MAX) >= u64::MAX - 1);
    }

    #[test]
    fn splitmix64_matches_the_reference_sequence() {
        // The first outputs of SplitMix64 seeded with 0 (its state advances by the golden gamma).
        const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;
        assert_eq!(splitmix64(0), 0xe220_a839_7b1d_cdaf);
        assert_eq!(splitmix64(GAMMA), 0x6e78_9e6a_a1b9_65f4);
        assert_eq!(splitmix64(GAMMA.wrapping_mul(2)), 0x06c4_5d18_8009_454f);
    }

    #[test]
    fn mix_refuses_malformed_entries() {
        for bad in [
            "",
            " , ",
            "api=1",
            "/a=0",
            "/a=-1",
            "/a=1001",
            "/a=x",
            "/a b=1",
            "/a\u{7f}b",
        ] {
            assert!(Mix::parse(bad).is_err(), "{bad:?}");
        }
        assert!(refusal("/a=0").contains("the weight must be a whole number from 1 to 1000"));
        assert!(refusal(",").contains("no entries"));
        assert!(refusal("/a\u{7f}b").contains("not a valid URL path"));
        // A quote outside braces is the path's (valid in a URL path), not the start of a string.
        let labels: Vec<String> = Mix::parse(r#"/a"b,/c"#)
            .unwrap()
            .entries()
            .iter()
            .map(Entry::label)
            .collect();
        assert_eq!(labels, [r#"GET /a"b"#, "GET /c"]);
        let mix = Mix::parse("/a").unwrap();
        assert_eq!(mix.len(), 1);
        assert!(!mix.is_empty(), "a mix that parses has a path");
    }

    #[test]
    fn prepared_requests_carry_the_base_path_method_body_and_ids() {
        let target = Target::parse("http://localhost:5050/prefix/").unwrap();
        let mix = Mix::parse(r#"/api/apm,POST /v {"a":1},POST /v,GET /v/{1..3}"#).unwrap();
        let prepared = mix.prepare(&target);
        assert!(
            matches!(prepared[0].uri, PreparedUri::Fixed(_)),
            "no placeholder: parsed once"
        );
        assert!(matches!(prepared[3].uri, PreparedUri::Numbered { .. }));
        let scratch = &mut String::new();
        assert_eq!(prepared[0].uri(7, scratch), "/prefix/api/apm");
        let headers = |p: &Prepared| -> Vec<String> {
            p.headers
                .iter()
                .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap()))
                .collect()
        };
        assert_eq!(prepared[0].method, Method::GET);
        assert!(
            headers(&prepared[0]).is_empty(),
            "a GET says nothing of a body"
        );
        assert_eq!(prepared[1].method, Method::POST);
        assert_eq!(prepared[1].body.as_deref(), Some(&br#"{"a":1}"#[..]));
        assert_eq!(
            headers(&prepared[1]),
            ["content-type: application/json", "content-length: 7"]
        );
        assert_eq!(prepared[2].body, None);
        assert_eq!(headers(&prepared[2]), ["content-length: 0"]);
        for i in 0..30 {
            let uri = prepared[3].uri(i, scratch);
            assert_eq!(
                uri,
                format!("/prefix{}", mix.entries()[3].path_of(i)).as_str()
            );
            assert!(
                ["/prefix/v/1", "/prefix/v/2", "/prefix/v/3"].contains(&uri.path()),
                "{uri}"
            );
        }
    }

    #[test]
    fn target_keeps_the_base_path_and_host_header() {
        let target = Target::parse("http://localhost:5050/prefix/").unwrap();
        assert_eq!(target.address, "localhost:5050");
        assert_eq!(target.authority, "localhost:5050");
        assert_eq!(target.path_and_query("/api/apm"), "/prefix/api/apm");
        let target = Target::parse("http://example").unwrap();
        assert_eq!(
            (target.address.as_str(), target.authority.as_str()),
            ("example:80", "example")
        );
    }
}
