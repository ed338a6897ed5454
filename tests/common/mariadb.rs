//! A private MariaDB server for the database suite: Debian's real `mariadbd` on its own data
//! directory, socket and free loopback port, started with the server options Database Monitoring
//! needs (agent-config/mysql-conf/datadog-dbm.cnf, as compose mounts it) and set up by the same
//! scripts the MySQL container runs at its first start (agent-config/mysql/*.sh). It can be stopped
//! and started again on the same port and data, to play a database that goes away and comes back.
#![allow(dead_code)] // each test binary uses part of it

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::service::free_port;

/// The app user's and the Agent user's passwords in the tests: quotes and a backslash, which the
/// setup scripts must quote rather than paste.
pub const APP_PASSWORD: &str = "app-'pw\\1";
pub const DATADOG_PASSWORD: &str = "dd-'pw\\2";

pub struct MariaDb {
    pub port: u16,
    base: PathBuf,
    child: Option<Child>,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn program(names: &[&str]) -> PathBuf {
    for name in names {
        for dir in ["/usr/sbin", "/usr/bin", "/usr/local/bin"] {
            let path = Path::new(dir).join(name);
            if path.exists() {
                return path;
            }
        }
    }
    panic!("none of {names:?} is installed: `make mariadb` installs mariadb-server")
}

impl MariaDb {
    /// A new server, its users and the app's database made by agent-config/mysql/*.sh.
    pub fn start() -> Self {
        let base = std::env::temp_dir().join(format!(
            "apm-demo-db-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&base).unwrap();
        let installed = Command::new(program(&["mariadb-install-db", "mysql_install_db"]))
            .arg(format!("--datadir={}", base.join("data").display()))
            .args([
                "--user=root",
                "--auth-root-authentication-method=socket",
                "--skip-test-db",
            ])
            .output()
            .unwrap();
        assert!(
            installed.status.success(),
            "mariadb-install-db failed ({}):\n{}\n{}",
            installed.status,
            String::from_utf8_lossy(&installed.stdout),
            String::from_utf8_lossy(&installed.stderr)
        );
        let mut options =
            std::fs::read_to_string(repo().join("agent-config/mysql-conf/datadog-dbm.cnf"))
                .unwrap();
        let port = free_port();
        options.push_str(&format!(
            "\n[mysqld]\ndatadir = {data}\nuser = root\nsocket = {base}/mysqld.sock\nport = {port}\n\
             bind-address = 127.0.0.1\npid-file = {base}/mysqld.pid\ninnodb_buffer_pool_size = 16M\n",
            data = base.join("data").display(),
            base = base.display(),
        ));
        std::fs::write(base.join("my.cnf"), options).unwrap();
        let mut server = Self {
            port,
            base,
            child: None,
        };
        server.resume();
        // In the order the MySQL image runs /docker-entrypoint-initdb.d: sorted (the explain procedure
        // datadog-user.sh makes in apm_demo needs the database apm-demo-user.sh creates).
        for script in ["apm-demo-user.sh", "datadog-user.sh"] {
            let output = Command::new("sh")
                .arg(repo().join("agent-config/mysql").join(script))
                .env("MYSQL", server.client_command())
                .env("MYSQL_DATADOG_PASSWORD", DATADOG_PASSWORD)
                .env("MYSQL_APP_PASSWORD", APP_PASSWORD)
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "{script}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        server
    }

    /// The `mysql` command line of root over the socket, as the setup scripts expect in MYSQL.
    fn client_command(&self) -> String {
        format!(
            "{} --no-defaults --socket={}/mysqld.sock -uroot --comments",
            program(&["mariadb", "mysql"]).display(),
            self.base.display()
        )
    }

    /// Starts the server (again), on the same port and data, and waits until it answers.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::File::create(self.base.join("mariadbd.log")).unwrap();
        self.child = Some(
            Command::new(program(&["mariadbd", "mysqld"]))
                .arg(format!(
                    "--defaults-file={}",
                    self.base.join("my.cnf").display()
                ))
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.root_query("SELECT 1").is_err() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("mariadbd exited ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "mariadbd did not start:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the server (SIGTERM, then waits for it to exit).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.base.join("mariadbd.log")).unwrap_or_default()
    }

    /// Runs `sql` as root; the rows, tab-separated, one per line.
    pub fn root_query(&self, sql: &str) -> Result<String, String> {
        self.query(
            &[
                "--socket",
                &format!("{}/mysqld.sock", self.base.display()),
                "-uroot",
            ],
            sql,
        )
    }

    /// Runs `sql` as the Datadog Agent's `datadog` user, over TCP as the Agent connects.
    pub fn datadog_query(&self, sql: &str) -> Result<String, String> {
        self.query(
            &[
                "-h127.0.0.1",
                &format!("-P{}", self.port),
                "-udatadog",
                &format!("-p{DATADOG_PASSWORD}"),
            ],
            sql,
        )
    }

    fn query(&self, login: &[&str], sql: &str) -> Result<String, String> {
        let output = Command::new(program(&["mariadb", "mysql"]))
            .arg("--no-defaults")
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
        self.stop();
        let _ = std::fs::remove_dir_all(&self.base);
    }
}
