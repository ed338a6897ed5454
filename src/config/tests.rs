use super::*;

fn parse(args: &[&str]) -> Result<Config, ConfigError> {
    Config::parse_from_args(std::iter::once("apm-demo").chain(args.iter().copied()))
}

fn refusal(args: &[&str]) -> String {
    match parse(args) {
        Err(ConfigError::Invalid(message)) => message,
        other => panic!("expected an invalid configuration, got {other:?}"),
    }
}

#[test]
fn defaults_match_the_flask_app_and_datadog() {
    // The environment of `cargo test` may set RUST_LOG etc.; flags win over it, so pin them.
    let config = parse(&["--host", "0.0.0.0", "--port", "5050"]).unwrap();
    assert_eq!(config.server.listen_addr().to_string(), "0.0.0.0:5050");
    assert_eq!(config.datadog.dd_trace_agent_port, 8126);
}

#[test]
fn agent_url_is_built_from_host_and_port() {
    let config = parse(&["--dd-agent-host", "agent", "--dd-trace-agent-port", "9126"]).unwrap();
    if config.datadog.dd_trace_agent_url.is_none() {
        assert_eq!(config.datadog.agent_url().as_str(), "http://agent:9126/");
    }
    let config = parse(&["--dd-trace-agent-url", "http://127.0.0.1:1/"]).unwrap();
    assert_eq!(config.datadog.agent_url().as_str(), "http://127.0.0.1:1/");
}

#[test]
fn bad_port_names_the_variable() {
    let message = refusal(&["--port", "abc"]);
    assert!(message.contains("PORT"), "{message}");
    assert!(message.contains("abc"), "{message}");
}

#[test]
fn refusals_start_with_the_variable_behind_the_flag() {
    // clap's own wording names the flag's value (`<PORT>`), so check the prefix this code adds.
    for (args, variable) in [
        (&["--port", "abc"][..], "PORT"),
        (&["--host", "nowhere"], "HOST"),
        (&["--dd-trace-sample-rate", "2"], "DD_TRACE_SAMPLE_RATE"),
        (&["--dd-trace-agent-url=ftp://agent"], "DD_TRACE_AGENT_URL"),
        (&["--dd-service", " "], "DD_SERVICE"),
    ] {
        let message = refusal(args);
        let prefix = format!("invalid configuration: {variable}: ");
        assert!(message.starts_with(&prefix), "{args:?}: {message}");
    }
}

#[test]
fn refusals_without_a_flag_name_no_variable() {
    let message = refusal(&["--no-such-flag"]);
    assert!(
        message.starts_with("invalid configuration: unexpected argument"),
        "{message}"
    );
}

#[test]
fn sample_rate_above_one_is_refused() {
    let message = refusal(&["--dd-trace-sample-rate", "2"]);
    assert!(message.contains("DD_TRACE_SAMPLE_RATE"), "{message}");
}

#[test]
fn url_that_does_not_parse_is_refused() {
    let message = refusal(&["--dd-trace-agent-url", "not a url"]);
    assert!(message.contains("DD_TRACE_AGENT_URL"), "{message}");
    let message = refusal(&["--dd-trace-agent-url", "unix:///var/run/datadog/apm.socket"]);
    assert!(message.contains("unix sockets"), "{message}");
}

#[test]
fn agent_host_must_be_a_host() {
    assert!(refusal(&["--dd-agent-host", "not a host"]).contains("DD_AGENT_HOST"));
    assert!(refusal(&["--dd-agent-host", "host/path"]).contains("DD_AGENT_HOST"));
    let config = parse(&["--dd-agent-host", "::1", "--dd-trace-agent-port", "9"]).unwrap();
    if config.datadog.dd_trace_agent_url.is_none() {
        assert_eq!(config.datadog.agent_url().as_str(), "http://[::1]:9/");
    }
}

#[test]
fn bad_boolean_and_log_filter_are_refused() {
    assert!(refusal(&["--dd-trace-enabled", "maybe"]).contains("DD_TRACE_ENABLED"));
    assert!(refusal(&["--rust-log", "info,[[["]).contains("RUST_LOG"));
    assert!(refusal(&["--log-format", "xml"]).contains("LOG_FORMAT"));
}

#[test]
fn a_refused_choice_lists_the_allowed_values() {
    let message = refusal(&["--log-format", "xml"]);
    assert!(message.contains("'xml'"), "{message}");
    assert!(message.ends_with("(allowed: text, json)"), "{message}");
}

#[test]
fn host_must_be_an_ip_address_and_the_refusal_says_so() {
    let message = refusal(&["--host", "localhost"]);
    assert!(
        message.starts_with("invalid configuration: HOST: "),
        "{message}"
    );
    assert!(
        message.contains("\"localhost\" is not an IP address"),
        "{message}"
    );
    assert!(message.contains("127.0.0.1"), "{message}");
    for address in ["127.0.0.1", "0.0.0.0", "::1", "::"] {
        let config = parse(&["--host", address, "--port", "1"]).unwrap();
        assert_eq!(config.server.host.to_string(), address);
    }
}

#[test]
fn the_database_is_off_unless_a_host_is_given_and_then_needs_a_password() {
    let off = parse(&["--mysql-host", ""]).unwrap();
    assert_eq!(off.mysql.host(), None);
    let message = refusal(&["--mysql-host", "db"]);
    assert!(
        message.starts_with("invalid configuration: MYSQL_PASSWORD: "),
        "{message}"
    );
    let mut on = parse(&["--mysql-host", ""]).unwrap();
    on.mysql.mysql_host = Some(OptionalHost(Some("db".to_owned())));
    on.mysql.mysql_password = Some(Secret("x".to_owned()));
    assert!(on.check_combinations().is_ok());
    assert_eq!(on.mysql.host(), Some("db"));
    assert!(refusal(&["--mysql-host", "a b"]).starts_with("invalid configuration: MYSQL_HOST: "));
    let message = refusal(&["--dd-dbm-propagation-mode", "all"]);
    assert!(
        message.ends_with("(allowed: disabled, service, full)"),
        "{message}"
    );
    assert!(refusal(&["--mysql-timeout", "0s"]).contains("MYSQL_TIMEOUT"));
    assert!(refusal(&["--mysql-pool-size", "0"]).contains("MYSQL_POOL_SIZE"));
}

#[test]
fn the_database_password_is_refused_on_the_command_line() {
    let message = refusal(&["--mysql-host", "db", "--mysql-password", "hunter2"]);
    assert!(
        message.starts_with("invalid configuration: MYSQL_PASSWORD: set it in the environment"),
        "{message}"
    );
    assert!(!message.contains("hunter2"), "{message}");
}

#[test]
fn the_database_password_may_come_from_a_file() {
    let dir = std::env::temp_dir().join(format!("apm-demo-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("password");
    std::fs::write(&file, "s3cret\n").unwrap();
    let path = file.to_str().unwrap();
    let config = parse(&["--mysql-host", "db", "--mysql-password-file", path]).unwrap();
    assert_eq!(config.mysql.mysql_password.unwrap().expose(), "s3cret");
    let missing = dir.join("missing");
    let message = refusal(&["--mysql-password-file", missing.to_str().unwrap()]);
    assert!(
        message.starts_with("invalid configuration: MYSQL_PASSWORD_FILE: cannot read"),
        "{message}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn debug_output_never_shows_the_password() {
    let mut config = parse(&[]).unwrap();
    config.mysql.mysql_password = Some(Secret("hunter2".to_owned()));
    let printed = format!("{config:?}");
    assert!(!printed.contains("hunter2"), "{printed}");
    assert!(
        printed.contains("mysql_password: Some(Secret(***))"),
        "{printed}"
    );
}

#[test]
fn the_exporter_is_one_of_two_and_a_refusal_lists_them() {
    if std::env::var_os("TRACE_EXPORTER").is_none() {
        assert_eq!(
            parse(&[]).unwrap().datadog.trace_exporter,
            TraceExporter::OpentelemetryDatadog
        );
    }
    if cfg!(feature = "datadog-opentelemetry") {
        let config = parse(&["--trace-exporter", "datadog-opentelemetry"]).unwrap();
        assert_eq!(
            config.datadog.trace_exporter,
            TraceExporter::DatadogOpentelemetry
        );
        assert_eq!(
            config.datadog.trace_exporter.as_str(),
            "datadog-opentelemetry"
        );
    } else {
        let message = refusal(&["--trace-exporter", "datadog-opentelemetry"]);
        assert!(
            message.starts_with("invalid configuration: TRACE_EXPORTER: "),
            "{message}"
        );
    }
    let message = refusal(&["--trace-exporter", "dd-trace-rs"]);
    assert!(
        message.starts_with("invalid configuration: TRACE_EXPORTER: "),
        "{message}"
    );
    assert!(
        message.ends_with("(allowed: opentelemetry-datadog, datadog-opentelemetry)"),
        "{message}"
    );
}

#[test]
fn booleans_accept_the_usual_spellings() {
    for (text, value) in [
        ("false", false),
        ("0", false),
        ("no", false),
        ("true", true),
        ("1", true),
    ] {
        let config = parse(&["--dd-trace-enabled", text]).unwrap();
        assert_eq!(config.datadog.dd_trace_enabled, value, "{text}");
    }
}
