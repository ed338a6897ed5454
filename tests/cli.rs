//! The binary's start-up contract: a bad setting stops it with exit code 2 and names the variable.

#[path = "common/answer_once.rs"]
mod answer_once;

use std::process::{Command, Output};

use answer_once::answer_once;

fn run(env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_apm-demo"));
    command.env_clear().args(args);
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().unwrap()
}

#[test]
fn invalid_values_exit_2_naming_the_variable() {
    let cases = [
        ("PORT", "abc"),
        ("DD_TRACE_SAMPLE_RATE", "2"),
        ("DD_TRACE_AGENT_URL", "not a url"),
        ("DD_TRACE_AGENT_PORT", "70000"),
        ("DD_TRACE_ENABLED", "perhaps"),
        ("LOG_FORMAT", "xml"),
        ("HOST", "my host"),
        ("DD_AGENT_HOST", "not a host"),
        ("RUST_LOG", "info,[[["),
        ("HEADER_READ_TIMEOUT", "soon"),
        ("REQUEST_TIMEOUT", "0s"),
        ("MAX_CONNECTIONS", "0"),
        ("MAX_IN_FLIGHT", "-1"),
    ];
    for (variable, value) in cases {
        assert_refused(variable, value, variable);
    }
}

/// A refusal says what would have been accepted: LOG_FORMAT's values, HOST's kind of value.
#[test]
fn refusals_say_what_is_allowed() {
    assert_refused("LOG_FORMAT", "xml", "(allowed: text, json)");
    assert_refused("HOST", "localhost", "\"localhost\" is not an IP address");
}

/// `variable=value` stops the binary with exit code 2, serving and logging nothing, and a message
/// on stderr that contains `expected`.
fn assert_refused(variable: &str, value: &str, expected: &str) {
    let output = run(&[(variable, value)], &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(2),
        "{variable}={value}: {stderr}"
    );
    assert!(stderr.contains(expected), "{variable}={value}: {stderr}");
    assert!(
        output.stdout.is_empty(),
        "nothing is served or logged: {variable}"
    );
}

#[test]
fn help_lists_every_variable_and_exits_0() {
    let output = run(&[], &["--help"]);
    assert_eq!(output.status.code(), Some(0));
    let help = String::from_utf8_lossy(&output.stdout);
    for variable in [
        "HOST",
        "PORT",
        "DD_SERVICE",
        "DD_ENV",
        "DD_VERSION",
        "DD_AGENT_HOST",
        "DD_TRACE_AGENT_PORT",
        "DD_TRACE_AGENT_URL",
        "DD_TRACE_ENABLED",
        "DD_TRACE_SAMPLE_RATE",
        "DD_LOGS_INJECTION",
        "LOG_FORMAT",
        "HEADER_READ_TIMEOUT",
        "MAX_CONNECTIONS",
        "REQUEST_TIMEOUT",
        "MAX_IN_FLIGHT",
        "RUST_LOG",
    ] {
        assert!(
            help.contains(&format!("[env: {variable}")),
            "{variable} in --help"
        );
    }
}

/// The image's health check: exit 0 when the service answers /health with a 200, 1 otherwise.
#[test]
fn healthcheck_subcommand_exits_0_on_a_200_and_1_otherwise() {
    use std::net::TcpListener;

    let (port, server) = answer_once("HTTP/1.1 200 OK");
    let output = run(
        &[("PORT", &port.to_string()), ("HOST", "0.0.0.0")],
        &["healthcheck"],
    );
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(
        server
            .join()
            .unwrap()
            .starts_with("GET /health HTTP/1.1\r\n")
    );

    let (port, server) = answer_once("HTTP/1.1 503 Service Unavailable");
    let output = run(&[("PORT", &port.to_string())], &["healthcheck"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("503"));
    server.join().unwrap();

    // Nothing listening: a clear message, exit 1.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port().to_string();
    drop(closed);
    let output = run(&[("PORT", &port)], &["healthcheck"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot connect"));
}
