//! The mix's entries made ready to send to the target, once per run: a request to a fixed path then
//! clones what is here (reference counts, no allocation), and a numbered path costs one allocation.

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderName, HeaderValue, Method, Uri};

use crate::mix::{Mix, Part, render, takes_a_body};
use crate::plan::Target;

/// One entry, ready to send.
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
    /// The entries of `mix` ready to send to `target`, by entry index.
    pub fn all(mix: &Mix, target: &Target) -> Vec<Self> {
        mix.entries()
            .iter()
            .map(|entry| Self {
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
                        parts: entry.parts().to_vec(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepared_requests_carry_the_base_path_method_body_and_ids() {
        let target = Target::parse("http://localhost:5050/prefix/").unwrap();
        let mix = Mix::parse(r#"/api/apm,POST /v {"a":1},POST /v,GET /v/{1..3}"#).unwrap();
        let prepared = Prepared::all(&mix, &target);
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
}
