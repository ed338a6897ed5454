//! `apm-demo healthcheck`: the container's health check, answered by the binary itself.
//!
//! The image then needs no `curl` (97 MB of the runtime image was curl and its libraries, for this
//! one request). It reads the same configuration as the service, so it asks the port the service
//! listens on, on loopback when the service listens on every address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use crate::config::Config;

/// How long the whole check may take; the compose and Dockerfile health checks allow 3 s.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// Asks `GET /health` of the service that `config` describes; `Ok` on a 200. With the HTTP client the
/// service already has (the exporter's): one request, once, where what it costs does not matter.
pub fn check(config: &Config, timeout: Duration) -> Result<(), String> {
    let address = SocketAddr::new(
        loopback_if_unspecified(config.server.host),
        config.server.port,
    );
    let url = format!("http://{address}/health");
    let client = reqwest::blocking::Client::builder()
        .timeout(timeout)
        // The service itself, never a proxy that HTTP_PROXY may name.
        .no_proxy()
        .build()
        .map_err(|e| format!("cannot make an HTTP client: {e}"))?;
    let response = client.get(&url).send().map_err(|error| {
        if error.is_connect() {
            format!("cannot connect to {address}: {error}")
        } else {
            format!("no answer from {url}: {error}")
        }
    })?;
    match response.status() {
        reqwest::StatusCode::OK => Ok(()),
        status => Err(format!("{url} answered {status}")),
    }
}

/// `0.0.0.0` and `::` are where the service listens, not an address to connect to.
fn loopback_if_unspecified(host: IpAddr) -> IpAddr {
    match host {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_addresses_are_asked_on_loopback() {
        assert_eq!(
            loopback_if_unspecified("0.0.0.0".parse().unwrap()),
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        );
        assert_eq!(
            loopback_if_unspecified("::".parse().unwrap()),
            IpAddr::V6(Ipv6Addr::LOCALHOST)
        );
        let specific: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(loopback_if_unspecified(specific), specific);
    }
}
