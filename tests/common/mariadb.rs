//! A private MariaDB server for the database suite, from the project's one launcher
//! (local/mariadb_server.py): Debian's real `mariadbd` on its own directory, socket and free loopback
//! port, with agent-config/mysql-conf/ included as the MySQL image includes conf.d, and set up at its
//! first start by agent-config/mysql/*.sh as the image's entrypoint runs them. The launcher stays in
//! the foreground while the server runs and stops it when its standard input closes, so a test that
//! panics, or a test binary that is killed, leaves no server behind. It can be stopped and started
//! again on the same port and data, to play a database that goes away and comes back.
#![allow(dead_code)] // each test binary uses part of it

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use super::service::free_port;

/// The app user's and the Agent user's passwords in the tests: quotes and a backslash, which the
/// setup scripts must quote rather than paste.
pub const APP_PASSWORD: &str = "app-'pw\\1";
pub const DATADOG_PASSWORD: &str = "dd-'pw\\2";

pub struct MariaDb {
    pub port: u16,
    base: PathBuf,
    root_defaults_file: String,
    launcher: Option<Child>,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn client() -> PathBuf {
    for name in ["mariadb", "mysql"] {
        for dir in ["/usr/bin", "/usr/local/bin"] {
            let path = Path::new(dir).join(name);
            if path.exists() {
                return path;
            }
        }
    }
    panic!("no mariadb client is installed: `make mariadb` installs mariadb-server")
}

impl MariaDb {
    /// A new server, its users and the app's database made by agent-config/mysql/*.sh.
    pub fn start() -> Self {
        let base = std::env::temp_dir().join(format!(
            "apm-demo-db-{}-{}",
            std::process::id(),
            free_port()
        ));
        let mut server = Self {
            port: 0,
            base,
            root_defaults_file: String::new(),
            launcher: None,
        };
        server.resume();
        server
    }

    /// Starts the server (again: on the same port and data) and waits until it answers.
    pub fn resume(&mut self) {
        assert!(self.launcher.is_none(), "already running");
        let mut launcher = Command::new("python3")
            .arg(repo().join("local/mariadb_server.py"))
            .arg(&self.base)
            .env("MYSQL_DATADOG_PASSWORD", DATADOG_PASSWORD)
            .env("MYSQL_APP_PASSWORD", APP_PASSWORD)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs local/mariadb_server.py");
        let mut line = String::new();
        BufReader::new(launcher.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        if line.is_empty() {
            let status = launcher.wait().unwrap();
            panic!("local/mariadb_server.py failed ({status}): its message is above");
        }
        let report: Value = serde_json::from_str(&line).unwrap();
        self.port = u16::try_from(report["port"].as_u64().unwrap()).unwrap();
        self.root_defaults_file = report["root_defaults_file"].as_str().unwrap().to_owned();
        self.launcher = Some(launcher);
    }

    /// Stops the server: the launcher's standard input closed, it shuts the server down and exits.
    pub fn stop(&mut self) {
        if let Some(mut launcher) = self.launcher.take() {
            drop(launcher.stdin.take());
            let status = launcher.wait().unwrap();
            assert!(status.success(), "local/mariadb_server.py: {status}");
        }
    }

    /// Runs `sql` as root; the rows, tab-separated, one per line.
    pub fn root_query(&self, sql: &str) -> Result<String, String> {
        self.query(
            &format!("--defaults-file={}", self.root_defaults_file),
            &[],
            sql,
        )
    }

    /// Runs `sql` as the Datadog Agent's `datadog` user, over TCP as the Agent connects.
    pub fn datadog_query(&self, sql: &str) -> Result<String, String> {
        self.query(
            "--no-defaults",
            &[
                "-h127.0.0.1",
                &format!("-P{}", self.port),
                "-udatadog",
                &format!("-p{DATADOG_PASSWORD}"),
            ],
            sql,
        )
    }

    fn query(&self, defaults: &str, login: &[&str], sql: &str) -> Result<String, String> {
        let output = Command::new(client())
            .arg(defaults)
            .args(login)
            .args(["--batch", "--skip-column-names", "--raw", "-e", sql])
            .output()
            .map_err(|e| e.to_string())?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    }

    /// The service's environment for this server.
    pub fn service_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("MYSQL_HOST", "127.0.0.1".to_owned()),
            ("MYSQL_PORT", self.port.to_string()),
            ("MYSQL_PASSWORD", APP_PASSWORD.to_owned()),
        ]
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        if let Some(mut launcher) = self.launcher.take() {
            drop(launcher.stdin.take());
            let _ = launcher.wait();
        }
        let _ = std::fs::remove_dir_all(&self.base);
    }
}
