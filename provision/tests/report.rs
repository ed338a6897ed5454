//! What `provision destroy` prints, against a minimal local stand-in for the Datadog API: a line per
//! object it removed, and never "nothing to change" (that is for an apply that found all as planned).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output};

/// An account holding `monitors` (the JSON list the monitor search answers), no downtime and no
/// dashboard; every DELETE succeeds. Returns the API's URL.
fn account(monitors: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 8192];
            let n = stream.read(&mut request).unwrap_or(0);
            let head = String::from_utf8_lossy(&request[..n]).into_owned();
            let line = head.lines().next().unwrap_or("").to_owned();
            let body = if line.starts_with("GET /api/v1/monitor") {
                monitors
            } else if line.starts_with("GET /api/v2/downtime") {
                r#"{"data":[]}"#
            } else if line.starts_with("GET /api/v1/dashboard") {
                r#"{"dashboards":[]}"#
            } else {
                "{}"
            };
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

fn destroy(test: &str, api_url: &str) -> Output {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("provision-report-{test}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Command::new(env!("CARGO_BIN_EXE_provision"))
        .current_dir(&dir)
        .env_clear()
        .env("DD_API_KEY", "test-api-key") // pragma: allowlist secret
        .env("DD_APP_KEY", "test-app-key") // pragma: allowlist secret
        .args(["destroy", "--api-url", api_url])
        .output()
        .unwrap()
}

#[test]
fn destroy_prints_a_line_per_removed_object_and_no_nothing_to_change() {
    let url = account(r#"[{"id":5,"name":"apm-demo latency"}]"#);
    let output = destroy("one-monitor", &url);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    let words: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(words[..3], ["deleted", "monitor", "apm-demo"], "{stdout}");
}

#[test]
fn destroy_on_an_empty_account_prints_nothing() {
    let url = account("[]");
    let output = destroy("empty", &url);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "");
}
