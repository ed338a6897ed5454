//! The `provision` binary's command line: which time zones it takes, and where its settings and keys
//! come from (flags, the environment, `./.env`). Each run starts from an empty environment in a
//! directory of its own, so that no `.env` or variable of the machine leaks in.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

/// An empty directory for one test, holding `dotenv` as `.env` when given.
fn directory(test: &str, dotenv: Option<&str>) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("provision-cli-{test}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    if let Some(text) = dotenv {
        std::fs::write(dir.join(".env"), text).unwrap();
    }
    dir
}

fn provision(dir: &PathBuf, env: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_provision"))
        .current_dir(dir)
        .env_clear()
        .envs(env.iter().copied())
        .args(args)
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn plan(output: &Output) -> Value {
    assert!(output.status.success(), "{}", stderr(output));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn an_unknown_time_zone_is_refused_before_anything_else() {
    let dir = directory("bad-zone", None);
    let by_flag = provision(&dir, &[], &["plan", "--timezone", "Mars/Olympus"]);
    let by_env = provision(&dir, &[("PROVISION_TIMEZONE", "Mars/Olympus")], &["plan"]);
    for output in [by_flag, by_env] {
        assert!(!output.status.success());
        assert!(output.stdout.is_empty(), "no plan is printed");
        let message = stderr(&output);
        assert!(
            message.contains("Mars/Olympus") && message.contains("IANA"),
            "{message}"
        );
    }
}

#[test]
fn a_known_time_zone_is_sent_by_its_canonical_name() {
    let dir = directory("good-zone", None);
    let plan = plan(&provision(
        &dir,
        &[],
        &["plan", "--json", "--timezone", "america/new_york"],
    ));
    for downtime in plan["downtimes"].as_array().unwrap() {
        let attributes = &downtime["data"]["attributes"];
        assert_eq!(attributes["schedule"]["timezone"], "America/New_York");
        assert_eq!(attributes["display_timezone"], "America/New_York");
    }
}

/// `.env` fills what the environment does not set; the environment wins; an empty value (as in
/// .env.example) is no value.
#[test]
fn settings_come_from_dotenv_unless_the_environment_sets_them() {
    // pragma: allowlist nextline secret
    let dotenv = "PROVISION_HOST=host-from-dotenv\nPROVISION_TIMEZONE=Europe/Paris\nDD_ENV=\n";
    let dir = directory("dotenv-settings", Some(dotenv));

    let from_dotenv = plan(&provision(&dir, &[], &["plan", "--json"]));
    let query = from_dotenv["monitors"][0]["query"].as_str().unwrap();
    assert!(query.contains("{host:host-from-dotenv}"), "{query}");
    let attributes = &from_dotenv["downtimes"][0]["data"]["attributes"];
    assert_eq!(attributes["schedule"]["timezone"], "Europe/Paris");
    // DD_ENV= is empty: the built-in default, not `env:`, in the service monitors' scope and the
    // APM dashboard's `$env`.
    let error_rate = from_dotenv["monitors"][1]["query"].as_str().unwrap();
    assert!(
        error_rate.contains("{service:apm-demo,env:demo}"),
        "{error_rate}"
    );
    let variables = &from_dotenv["dashboards"][1]["template_variables"];
    assert!(
        variables
            .as_array()
            .unwrap()
            .contains(&serde_json::json!({"name": "env", "prefix": "env", "defaults": ["demo"]})),
        "{variables}"
    );

    let from_env = plan(&provision(
        &dir,
        &[("PROVISION_HOST", "host-from-env")],
        &["plan", "--json"],
    ));
    let query = from_env["monitors"][0]["query"].as_str().unwrap();
    assert!(query.contains("{host:host-from-env}"), "{query}");
}

#[test]
fn keys_are_read_from_dotenv() {
    // DD_API_KEY from .env is found, so the first key missing is DD_APP_KEY; nothing is sent.
    let dir = directory("dotenv-keys", Some("DD_API_KEY=from-dotenv\nDD_APP_KEY=\n"));
    let output = provision(&dir, &[], &["apply", "--api-url", "http://127.0.0.1:9"]);
    assert_eq!(output.status.code(), Some(2), "a configuration error");
    let message = stderr(&output);
    assert!(
        message.contains("DD_APP_KEY is not set") && !message.contains("DD_API_KEY"),
        "{message}"
    );

    // Without .env, the message says where a key may come from.
    let dir = directory("no-dotenv", None);
    let message = stderr(&provision(&dir, &[], &["apply"]));
    assert!(
        message.contains("DD_API_KEY is not set: export it or put it in .env"),
        "{message}"
    );
}

#[test]
fn a_malformed_dotenv_stops_provision() {
    let dir = directory("bad-dotenv", Some("PROVISION_HOST='unterminated\n"));
    let output = provision(&dir, &[], &["plan"]);
    assert_eq!(output.status.code(), Some(2), "a configuration error");
    assert!(stderr(&output).contains(".env"), "{}", stderr(&output));
}
