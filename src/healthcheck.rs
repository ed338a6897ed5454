//! `apm-demo healthcheck`: the container's health check, answered by the binary itself.
//!
//! The image then needs no `curl` (97 MB of the runtime image was curl and its libraries, for this
//! one request). It reads the same configuration as the service, so it asks the port the service
//! listens on, on loopback when the service listens on every address.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

use crate::config::Config;

/// How long the whole check may take; the compose and Dockerfile health checks allow 3 s.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// Asks `GET /health` of the service that `config` describes; `Ok` on a 200.
pub fn check(config: &Config, timeout: Duration) -> Result<(), String> {
    let address = SocketAddr::new(loopback_if_unspecified(config.host), config.port);
    let fail = |what: &str, error: std::io::Error| format!("{what} {address}: {error}");
    let mut stream =
        TcpStream::connect_timeout(&address, timeout).map_err(|e| fail("cannot connect to", e))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| fail("cannot set a deadline on", e))?;
    let request = format!("GET /health HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| fail("cannot send to", e))?;
    // The status line is all that is needed; 64 bytes hold it.
    let mut head = [0u8; 64];
    let mut read = 0;
    while read < head.len() {
        match stream.read(&mut head[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) => return Err(fail("no answer from", e)),
        }
        if head[..read].contains(&b'\n') {
            break;
        }
    }
    let status_line = String::from_utf8_lossy(&head[..read]);
    let status_line = status_line.lines().next().unwrap_or("").trim();
    match status_line.split(' ').nth(1) {
        Some("200") => Ok(()),
        _ => Err(format!("{address}/health answered {status_line:?}")),
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
