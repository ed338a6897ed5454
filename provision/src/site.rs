//! Where the keys may go. Every request carries `DD-API-KEY` and `DD-APPLICATION-KEY`, so the API's
//! address is settled before any: `https://api.<site>` for a Datadog site (`--site`, `DD_SITE`, also
//! from `./.env`), or a URL given on the command line (`--api-url`), and nothing else. A URL from the
//! environment or from a `.env` in whatever directory provision runs in could send the keys anywhere;
//! a site can only name Datadog. (The client follows no redirect either: api.rs.)

use std::net::IpAddr;

use reqwest::Url;

/// The domains of Datadog's sites: every site is one of them or a subdomain of one
/// (docs.datadoghq.com/getting_started/site/: US1 `datadoghq.com`, US3 `us3.datadoghq.com`, US5
/// `us5.datadoghq.com`, EU1 `datadoghq.eu`, US1-FED `ddog-gov.com`, US2-FED `us2.ddog-gov.com`, AP1
/// `ap1.datadoghq.com`, AP2 `ap2.datadoghq.com`). A subdomain of these is Datadog's by DNS, and the
/// API is reached over https with the certificate checked, so only Datadog can read the keys; a site
/// Datadog opens later needs no change here.
const DOMAINS: [&str; 3] = ["datadoghq.com", "datadoghq.eu", "ddog-gov.com"];

/// The sites as Datadog lists them, for the error message (and the tests).
pub const KNOWN_SITES: [&str; 8] = [
    "datadoghq.com",
    "us3.datadoghq.com",
    "us5.datadoghq.com",
    "datadoghq.eu",
    "ddog-gov.com",
    "us2.ddog-gov.com",
    "ap1.datadoghq.com",
    "ap2.datadoghq.com",
];

/// A Datadog site (`--site`, `DD_SITE`): one of Datadog's domains or a subdomain of one, in lower
/// case. Anything else is refused: the keys would go to `https://api.<site>`.
pub fn site(value: &str) -> Result<String, String> {
    let site = value.to_ascii_lowercase();
    let labels_ok = site.split('.').all(|label| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    });
    let datadogs = DOMAINS
        .iter()
        .any(|d| site == *d || site.strip_suffix(d).is_some_and(|s| s.ends_with('.')));
    if labels_ok && datadogs {
        Ok(site)
    } else {
        Err(format!(
            "{value:?} is not a Datadog site (DD_SITE): one of {}; provision sends the keys only \
             to a Datadog site's API, or to a URL given on the command line with --api-url",
            KNOWN_SITES.join(", ")
        ))
    }
}

/// The API's base URL given on the command line (`--api-url`): any https URL (a proxy, say), or
/// plain http to this machine's loopback address only (a test server): the keys never cross a
/// network in clear text.
pub fn api_url(value: &str) -> Result<String, String> {
    let url = Url::parse(value).map_err(|e| format!("{value:?} is not a URL: {e}"))?;
    let host = url.host_str().unwrap_or_default();
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match url.scheme() {
        "https" if !host.is_empty() => Ok(value.to_owned()),
        "http" if loopback => Ok(value.to_owned()),
        "http" => Err(format!(
            "{value:?}: plain http only to this machine (127.0.0.1, ::1, localhost): the keys \
             would cross the network in clear text; use https"
        )),
        _ => Err(format!("{value:?} is not an https URL")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_datadog_site_is_a_site_in_lower_case() {
        for known in KNOWN_SITES {
            assert_eq!(site(known).as_deref(), Ok(known));
        }
        assert_eq!(
            site("US5.DatadogHQ.com").as_deref(),
            Ok("us5.datadoghq.com")
        );
    }

    /// Look-alikes: Datadog's name elsewhere in the host, another top-level domain, a URL, a port,
    /// a path, a trailing dot, nothing.
    #[test]
    fn other_hosts_are_not_sites() {
        for other in [
            "evil.example",
            "datadoghq.com.evil.example",
            "evildatadoghq.com",
            "datadoghq-com.example",
            "datadoghq.co",
            "ddog-gov.com.example",
            "https://datadoghq.com",
            "datadoghq.com:8443",
            "datadoghq.com/path",
            "evil.example/.datadoghq.com",
            "evil.example#.datadoghq.com",
            "evil.example?.datadoghq.com",
            "user@datadoghq.com",
            "datadoghq.com.",
            ".datadoghq.com",
            "",
        ] {
            let error = site(other).unwrap_err();
            assert!(
                error.contains("not a Datadog site (DD_SITE)") && error.contains("--api-url"),
                "{other}: {error}"
            );
        }
    }

    #[test]
    fn an_api_url_is_https_or_loopback_http() {
        for good in [
            "https://api.datadoghq.com",
            "https://proxy.internal.example:8443/datadog",
            "http://127.0.0.1:9",
            "http://127.1.2.3:8080",
            "http://[::1]:8080",
            "http://localhost:8080",
        ] {
            assert_eq!(api_url(good).as_deref(), Ok(good));
        }
        for bad in [
            "http://api.datadoghq.com",
            "http://10.0.0.1:8080",
            "http://127.0.0.1.evil.example",
            "http://localhost.evil.example",
            "ftp://api.datadoghq.com",
            "file:///etc/passwd",
            "api.datadoghq.com",
            "",
        ] {
            assert!(api_url(bad).is_err(), "{bad}");
        }
    }
}
