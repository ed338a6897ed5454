//! provision: plan, apply, destroy the seed's Datadog objects, or post a snapshot of my_metric.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use provision::api::{Api, Credentials};
use provision::apply::{self, WebApp};
use provision::resources::{self, Settings};
use provision::site;

/// The seed exercise's dashboards, monitors and downtimes, as code, applied through the Datadog API.
#[derive(Debug, Parser)]
#[command(name = "provision", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// The Agent's host name (DD_HOSTNAME): my_metric's and the host's metrics, and the downtimes,
    /// are scoped to it (MySQL's by its instance tag).
    #[arg(
        long,
        global = true,
        env = "PROVISION_HOST",
        default_value = "apm-demo-host"
    )]
    host: String,
    /// Who is notified: an email address or an @handle.
    #[arg(
        long,
        global = true,
        env = "PROVISION_NOTIFY",
        default_value = "me@example.com"
    )]
    notify: String,
    /// Time zone of the downtimes (IANA name, e.g. Europe/Paris).
    #[arg(
        long,
        global = true,
        env = "PROVISION_TIMEZONE",
        default_value = "UTC",
        value_parser = resources::time_zone
    )]
    timezone: TimeZone,
    /// The service's environment, as in DD_ENV.
    #[arg(long, global = true, env = "DD_ENV", default_value = "demo")]
    env: String,
    /// Datadog site (datadoghq.com, datadoghq.eu, us5.datadoghq.com, ...): the API is https://api.<site>.
    #[arg(
        long,
        global = true,
        env = "DD_SITE",
        default_value = "datadoghq.com",
        value_parser = site::site
    )]
    site: String,
    /// API base URL instead of https://api.<site>, for a proxy (https) or a test server (http on
    /// 127.0.0.1). On the command line only: never from the environment or .env.
    #[arg(long, global = true, value_parser = site::api_url)]
    api_url: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the exact request bodies; no network, no keys.
    Plan {
        /// One JSON document {"dashboards": [...], "monitors": [...], "downtimes": [...]}.
        #[arg(long)]
        json: bool,
    },
    /// Create what is missing, update what differs, and print each object's URL.
    Apply,
    /// Remove every object provision manages.
    Destroy,
    /// Post a graph snapshot of my_metric in an event that @-mentions --notify.
    Snapshot,
}

/// Bad configuration (a malformed .env, a key missing, DD_API_URL set) exits with 2, as clap does
/// for a bad flag or variable.
const USAGE: u8 = 2;

fn main() -> ExitCode {
    // Before parsing: flags and keys fall back on the environment, which falls back on .env.
    if let Err(error) = load_dotenv() {
        eprintln!("provision: .env: {error}");
        return ExitCode::from(USAGE);
    }
    let cli = Cli::parse();
    let settings = Settings {
        host: cli.host.clone(),
        notify: cli.notify.clone(),
        env: cli.env.clone(),
        now: Timestamp::now().to_zoned(cli.timezone.clone()),
    };
    let outcome = if let Command::Plan { json } = cli.command {
        print_plan(&settings, json)
    } else {
        match settle(&cli) {
            Ok((base, credentials)) => {
                Api::new(base, credentials).and_then(|api| run(&cli, &api, &settings))
            }
            Err(message) => {
                eprintln!("provision: {message}");
                return ExitCode::from(USAGE);
            }
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("provision: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Loads `./.env` when there is one, as docker compose reads it (.env.example is the template of
/// both): a variable the environment already has wins, and an empty value (`DD_SITE=` in the
/// template) counts as unset, as compose's `${DD_SITE:-datadoghq.com}` reads it.
fn load_dotenv() -> Result<(), dotenvy::Error> {
    let entries = match dotenvy::from_path_iter(".env") {
        Ok(entries) => entries,
        Err(dotenvy::Error::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let (name, value) = entry?;
        if !value.is_empty() && std::env::var_os(&name).is_none() {
            // SAFETY: called first thing in main, before any thread exists that could read the
            // environment concurrently.
            unsafe { std::env::set_var(name, value) };
        }
    }
    Ok(())
}

fn print_plan(settings: &Settings, json: bool) -> anyhow::Result<()> {
    let plan = resources::plan(settings);
    if json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
        return Ok(());
    }
    for (kind, bodies) in [
        ("dashboard", serde_json::to_value(&plan.dashboards)?),
        ("monitor", serde_json::to_value(&plan.monitors)?),
        ("downtime", serde_json::to_value(&plan.downtimes)?),
    ] {
        for body in bodies.as_array().into_iter().flatten() {
            println!("# {kind}\n{}\n", serde_json::to_string_pretty(body)?);
        }
    }
    Ok(())
}

/// Where every command that talks to Datadog sends its requests, and the keys, settled before any
/// request: the URL from the command line or the site. Err is a configuration error, naming the
/// variable.
fn settle(cli: &Cli) -> Result<(String, Credentials), String> {
    // Read by an earlier provision (a hidden test setting); a URL from the environment or ./.env
    // could send the keys anywhere, so it is refused rather than silently replaced by the site's.
    if std::env::var_os("DD_API_URL").is_some_and(|v| !v.is_empty()) {
        return Err(
            "DD_API_URL is not read: the keys go to https://api.<DD_SITE>, or to a URL \
                    given on the command line with --api-url; unset DD_API_URL (or remove it \
                    from .env)"
                .into(),
        );
    }
    let key = |name: &str| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| {
                format!("{name} is not set: export it or put it in .env (see .env.example)")
            })
    };
    let credentials = Credentials {
        api_key: key("DD_API_KEY")?,
        app_key: key("DD_APP_KEY")?,
    };
    let base = cli
        .api_url
        .clone()
        .unwrap_or_else(|| format!("https://api.{}", cli.site));
    Ok((base, credentials))
}

fn run(cli: &Cli, api: &Api, settings: &Settings) -> anyhow::Result<()> {
    let web = WebApp::for_site(&cli.site);
    let outcome = match cli.command {
        Command::Apply => apply::apply(api, settings, &web),
        Command::Destroy => apply::destroy(api, settings, &web),
        Command::Snapshot => {
            let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
            let (snapshot, event) = provision::snapshot::post(api, settings, now)?;
            println!("snapshot {snapshot}\nevent    {event}");
            return Ok(());
        }
        Command::Plan { .. } => unreachable!("handled in main"),
    };
    match outcome {
        Ok(report) => {
            report.print();
            Ok(())
        }
        Err(failed) => {
            failed.report.print();
            Err(failed.error.context(
                "stopped; what is listed above was done, and the next apply carries on from it",
            ))
        }
    }
}
