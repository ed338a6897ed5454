//! The `--mix` language: `[METHOD ]path[ JSON body][=weight]` entries separated by commas, with
//! `{low..high}` placeholders in paths. Every refusal names the entry and what is wrong with it.

use bytes::Bytes;
use http::Method;

use super::{Entry, Mix, Part, render, takes_a_body};

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
        Ok(Self::new(entries))
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
    // Digits are valid anywhere in a path, so if one drawing of the numbers makes a valid path, any does.
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
#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(text: &str) -> String {
        format!("{:#}", Mix::parse(text).expect_err(text))
    }

    fn only(text: &str) -> Entry {
        let mix = Mix::parse(text).unwrap();
        assert_eq!(mix.entries().len(), 1, "{text}");
        mix.entries()[0].clone()
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
    }
}
