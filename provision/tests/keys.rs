//! Where the keys go: only to the API provision was pointed at. A redirect is an error, never
//! followed (a local server redirects to a second one, which must see nothing); the API is a Datadog
//! site's unless a URL is given on the command line (`DD_API_URL` and a foreign `DD_SITE`, from the
//! environment or `./.env`, stop provision before any request); and the keys never print.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use provision::api::{Api, Credentials};

const API_KEY: &str = "test-api-key-0123456789"; // pragma: allowlist secret
const APP_KEY: &str = "test-app-key-9876543210"; // pragma: allowlist secret

/// A server that answers every request with `answer(its own URL)` and keeps each request's text.
fn server(answer: impl Fn(&str) -> String + Send + 'static) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (log, own) = (seen.clone(), url.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 8192];
            let n = stream.read(&mut request).unwrap_or(0);
            log.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&request[..n]).into_owned());
            let _ = stream.write_all(answer(&own).as_bytes());
        }
    });
    (url, seen)
}

/// The second server: answers like the API, and records whatever reaches it.
fn elsewhere() -> (String, Arc<Mutex<Vec<String>>>) {
    server(|_| {
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}"
            .to_owned()
    })
}

/// The first server: every request is answered `status`, pointing at `to` with the same path.
fn redirecting(status: &'static str, to: &str) -> (String, Arc<Mutex<Vec<String>>>) {
    let to = to.to_owned();
    server(move |_| {
        format!(
            "HTTP/1.1 {status}\r\nlocation: {to}/api/v1/dashboard\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        )
    })
}

fn credentials() -> Credentials {
    Credentials {
        api_key: API_KEY.into(),
        app_key: APP_KEY.into(),
    }
}

/// What reached the second server, for the assertion's message: each request, or the fact that the
/// keys were in one.
fn leaked(seen: &Arc<Mutex<Vec<String>>>) -> String {
    let seen = seen.lock().unwrap();
    let keys = seen
        .iter()
        .any(|r| r.contains(API_KEY) || r.contains(APP_KEY));
    format!(
        "{} request(s) reached the other server{}: {seen:?}",
        seen.len(),
        if keys { ", WITH THE KEYS" } else { "" }
    )
}

#[test]
fn a_redirect_is_an_error_and_the_other_server_sees_nothing() {
    let (other, reached) = elsewhere();
    for status in [
        "301 Moved Permanently",
        "302 Found",
        "303 See Other",
        "307 Temporary Redirect",
        "308 Permanent Redirect",
    ] {
        let (url, asked) = redirecting(status, &other);
        let api = Api::new(&url, credentials()).unwrap();
        let answers = [
            api.get("/api/v1/dashboard"),
            api.post("/api/v1/dashboard", &serde_json::json!({"title": "t"})),
        ];
        assert!(reached.lock().unwrap().is_empty(), "{}", leaked(&reached));
        for answer in answers {
            let error = format!("{:#}", answer.unwrap_err());
            assert!(
                error.contains(&status[..3]) && error.contains("follows no redirect"),
                "{error}"
            );
            assert!(
                error.contains(&format!("{other}/api/v1/dashboard")),
                "{error}"
            );
            assert!(
                !error.contains(API_KEY) && !error.contains(APP_KEY),
                "{error}"
            );
        }
        assert_eq!(asked.lock().unwrap().len(), 2, "one request each, no retry");
        assert!(
            asked.lock().unwrap()[0].contains(API_KEY),
            "the first server is the API"
        );
    }
}

/// An empty directory for one run of the binary, with `dotenv` as its `.env`.
fn directory(test: &str, dotenv: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("provision-keys-{test}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(".env"), dotenv).unwrap();
    dir
}

/// The binary in `dir`, from an empty environment plus the keys and `env`.
fn provision(dir: &PathBuf, env: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_provision"))
        .current_dir(dir)
        .env_clear()
        .env("DD_API_KEY", API_KEY)
        .env("DD_APP_KEY", APP_KEY)
        .envs(env.iter().copied())
        .args(args)
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn apply_stops_at_a_redirect() {
    let (other, reached) = elsewhere();
    let (url, _) = redirecting("302 Found", &other);
    let dir = directory("redirect", "");
    let output = provision(&dir, &[], &["apply", "--api-url", &url]);
    assert!(reached.lock().unwrap().is_empty(), "{}", leaked(&reached));
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("302 Found: the API redirects to"),
        "{}",
        stderr(&output)
    );
}

/// `DD_API_URL`, from `./.env` or the environment, is refused before any request: only the command
/// line names a URL.
#[test]
fn a_url_from_dotenv_or_the_environment_is_refused_before_any_request() {
    let (other, reached) = elsewhere();
    let from_dotenv = directory("url-dotenv", &format!("DD_API_URL={other}\n"));
    let clean = directory("url-env", "");
    for (dir, env) in [
        (&from_dotenv, vec![]),
        (&clean, vec![("DD_API_URL", other.as_str())]),
    ] {
        for command in ["apply", "destroy", "snapshot"] {
            let output = provision(dir, &env, &[command]);
            assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
            assert!(
                stderr(&output).contains("DD_API_URL is not read")
                    && stderr(&output).contains("--api-url"),
                "{}",
                stderr(&output)
            );
        }
    }
    assert!(reached.lock().unwrap().is_empty(), "{}", leaked(&reached));
    // The same URL on the command line is used.
    let output = provision(&clean, &[], &["destroy", "--api-url", &other]);
    assert!(output.status.success(), "{}", stderr(&output));
    let reached = reached.lock().unwrap();
    assert!(!reached.is_empty() && reached[0].contains(API_KEY));
}

/// A site that is not Datadog's, from a flag, the environment or `./.env`, stops provision at start.
#[test]
fn a_site_that_is_not_datadogs_is_refused() {
    let from_dotenv = directory("site-dotenv", "DD_SITE=datadoghq.com.evil.example\n");
    let clean = directory("site-env", "");
    for (dir, env, args) in [
        (&from_dotenv, vec![], vec!["apply"]),
        (&clean, vec![("DD_SITE", "evil.example")], vec!["apply"]),
        (&clean, vec![], vec!["apply", "--site", "evil.example"]),
        (&clean, vec![], vec!["plan", "--site", "evil.example"]),
    ] {
        let output = provision(dir, &env, &args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(output.stdout.is_empty());
        assert!(
            stderr(&output).contains("is not a Datadog site (DD_SITE)"),
            "{args:?}: {}",
            stderr(&output)
        );
    }
}

/// Plain http only to this machine, even on the command line.
#[test]
fn an_http_url_to_another_machine_is_refused() {
    let dir = directory("http-remote", "");
    let output = provision(
        &dir,
        &[],
        &["apply", "--api-url", "http://api.datadoghq.com"],
    );
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("clear text"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn credentials_never_print_the_keys() {
    for text in [
        format!("{:?}", credentials()),
        format!("{:#?}", credentials()),
    ] {
        assert!(!text.contains(API_KEY) && !text.contains(APP_KEY), "{text}");
        assert!(
            text.contains("Credentials") && text.contains("api_key") && text.contains("<redacted>"),
            "{text}"
        );
    }
}
