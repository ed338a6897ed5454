//! The binary's start-up contract: a bad setting stops it with exit code 2 and names the variable.

use std::process::{Command, Output};

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
    ];
    for (variable, value) in cases {
        let output = run(&[(variable, value)], &[]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{variable}={value}: {stderr}"
        );
        assert!(stderr.contains(variable), "{variable}={value}: {stderr}");
        assert!(
            output.stdout.is_empty(),
            "nothing is served or logged: {variable}"
        );
    }
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
        "RUST_LOG",
    ] {
        assert!(
            help.contains(&format!("[env: {variable}")),
            "{variable} in --help"
        );
    }
}
