//! The binary's life cycle, hermetic (the debug binary, tracing off, no agent, no Python): it serves
//! until a signal, then stops cleanly; its health check asks the address it is given. tests/conformance.rs proves more of the same against Datadog's
//! test agent and under load; this one runs with `cargo test` (and so under `make mutants`).

#[path = "common/answer_once.rs"]
mod answer_once;
#[path = "common/service.rs"]
mod service;

use std::time::{Duration, Instant};

use answer_once::answer_once;
use service::Service;

/// The `message` of each JSON log line, once the line `stopped` (the last one) has been read.
fn messages_until_stopped(service: &Service) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let messages: Vec<String> = service
            .json_lines()
            .iter()
            .filter_map(|line| line["message"].as_str().map(str::to_owned))
            .collect();
        if messages.iter().any(|m| m == "stopped") || Instant::now() > deadline {
            return messages;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn serves_until_sigterm_then_exits_0_saying_it_stopped_with_nothing_in_flight() {
    let mut service = Service::start("http://127.0.0.1:9", &[("DD_TRACE_ENABLED", "false")]);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        service.send("GET", "/health", &[]).status(),
        200,
        "still serving: only a signal stops it"
    );
    assert_eq!(service.child.try_wait().unwrap(), None);

    let status = service.terminate();
    assert_eq!(status.code(), Some(0));
    let messages = messages_until_stopped(&service);
    assert!(
        messages.iter().any(|m| m == "SIGTERM: shutting down"),
        "{messages:?}"
    );
    assert!(messages.iter().any(|m| m == "stopped"), "{messages:?}");
    assert!(
        !messages.iter().any(|m| m.contains("still in flight")),
        "no request was in flight: {messages:?}"
    );
}

/// The health check connects to HOST itself unless it is `0.0.0.0` or `::`: an IPv4-mapped IPv6
/// address (a specific address, not the unspecified one) reaches the IPv4 listener behind it.
#[test]
fn healthcheck_asks_a_specific_ipv6_host_itself_not_loopback() {
    use std::process::Command;

    let (port, server) = answer_once("HTTP/1.1 200 OK");
    let output = Command::new(env!("CARGO_BIN_EXE_apm-demo"))
        .env_clear()
        .env("HOST", "::ffff:127.0.0.1")
        .env("PORT", port.to_string())
        .arg("healthcheck")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    server.join().unwrap();
}

/// Out of file descriptors, accepting fails: the service says so, pauses instead of spinning, and
/// serves again once connections close.
#[test]
fn out_of_file_descriptors_it_logs_the_failed_accept_and_recovers() {
    use std::io::{BufRead, BufReader};
    use std::net::TcpStream;
    use std::process::{Command, Stdio};

    let port = service::free_port();
    let mut child = Command::new("sh")
        .args([
            "-c",
            "ulimit -n 40 && exec \"$0\"",
            env!("CARGO_BIN_EXE_apm-demo"),
        ])
        .env_clear()
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("DD_TRACE_ENABLED", "false")
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let wait_for = |text: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match lines.recv_timeout(left) {
                Ok(line) if line.contains(text) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    };
    assert!(wait_for("listening on"), "the service starts");

    let address = format!("127.0.0.1:{port}");
    let held: Vec<TcpStream> = (0..60)
        .filter_map(|_| TcpStream::connect(&address).ok())
        .collect();
    assert!(held.len() > 40, "connections wait in the backlog");
    let logged = wait_for("accept failed");
    drop(held);
    std::thread::sleep(Duration::from_millis(1500));
    let health = service::client()
        .get(format!("http://{address}/health"))
        .send()
        .map(|r| r.status().as_u16());
    let _ = child.kill();
    let _ = child.wait();
    assert!(logged, "the failed accept is logged");
    assert_eq!(health.ok(), Some(200), "it serves again");
}
