//! loadgen's exit status, summary header and note, and live view, as a user sees them: the binary
//! against in-test servers, its progress line read through a pseudo-terminal (util-linux `script`).

use std::process::{Command, Output};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;

/// A server answering 200 to everything; returns its URL.
async fn serve_ok() -> String {
    serve_after(Duration::ZERO).await
}

/// A server answering 200 to everything after `delay`; returns its URL.
async fn serve_after(delay: Duration) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let routes = Router::new().fallback(move || async move {
        tokio::time::sleep(delay).await;
        StatusCode::OK
    });
    tokio::spawn(async move { axum::serve(listener, routes).await });
    url
}

async fn run(command: Command) -> Output {
    let mut command = command;
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

fn loadgen(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_loadgen"));
    command.env_clear().args(args);
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_rate_equal_to_the_limit_exits_0_and_the_summary_names_the_trace_headers() {
    let url = serve_ok().await;
    let output = run(loadgen(&[
        &url,
        "-n",
        "20",
        "-c",
        "1",
        "--trace-headers",
        "w3c",
        "--max-error-rate",
        "0",
    ]))
    .await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(stdout.contains("trace headers: w3c"), "{stdout}");
}

/// What a terminal received from a successful `loadgen <url> <args>` run in it (util-linux `script`
/// gives it a pseudo-terminal, so the progress line is drawn).
async fn on_a_terminal(url: &str, args: &str) -> String {
    let line = format!("{} {url} {args}", env!("CARGO_BIN_EXE_loadgen"));
    let mut script = Command::new("script");
    script
        .env_clear()
        .env("TERM", "xterm")
        .args(["-q", "-e", "-c", &line, "/dev/null"]);
    let output = run(script).await;
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The rates of the progress lines (`N requests  R/s  E errors`) in what a terminal received; the
/// summary table's header (`requests    rate/s`) is not one.
fn shown_rates(screen: &str) -> Vec<String> {
    screen
        .split(" requests  ")
        .skip(1)
        .filter(|rest| !rest.starts_with(' '))
        .map(|rest| rest.split("/s").next().unwrap_or("").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_terminal_a_progress_line_shows_the_current_rate() {
    let url = serve_ok().await;
    let screen = on_a_terminal(&url, "--rate 100 --duration 2s -c 2").await;
    let rates = shown_rates(&screen);
    assert!(rates.len() >= 3, "a progress line every 250 ms: {screen}");
    for rate in &rates {
        let value: u32 = rate
            .parse()
            .unwrap_or_else(|_| panic!("{rate:?} in {screen}"));
        // 100/s is sent; a tick late or early on a busy machine moves it, not by a factor of two.
        assert!((50..=200).contains(&value), "{rates:?}");
    }
}

/// When the run ends the progress line is erased, so the summary starts on a clean line instead of
/// after the last rate shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_terminal_the_progress_line_makes_way_for_the_summary() {
    const ERASE_LINE: &str = "\x1b[2K";
    let url = serve_ok().await;
    let screen = on_a_terminal(&url, "--rate 50 --duration 1s -c 1").await;
    assert!(!shown_rates(&screen).is_empty(), "{screen}");
    let header = screen
        .find(&format!("{url}/ for "))
        .unwrap_or_else(|| panic!("no summary: {screen:?}"));
    // What the terminal shows on the header's line: the text since the last carriage return, where
    // the progress line was drawn, less its erasures.
    let line_start = screen[..header].rfind('\r').map_or(0, |at| at + 1);
    assert_eq!(
        screen[line_start..header].replace(ERASE_LINE, ""),
        "",
        "the summary follows a progress line: {screen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_falls_behind_its_rate_says_so_and_one_that_keeps_up_does_not() {
    const NOTE: &str = "could not keep up";
    // One connection to a server taking 50 ms: about 20/s of the 100/s asked.
    let slow = serve_after(Duration::from_millis(50)).await;
    let output = run(loadgen(&[&slow, "--rate", "100", "-d", "1s", "-c", "1"])).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains(NOTE), "{stdout}");

    let fast = serve_ok().await;
    let output = run(loadgen(&[&fast, "--rate", "100", "-d", "2s", "-c", "4"])).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.contains(NOTE), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_whose_connections_hang_is_refused_at_once_as_no_answer() {
    // A listener that never accepts, with a backlog of 1 already full: the next connect hangs.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let address = socket.local_addr().unwrap();
    let _listener = socket.listen(1).unwrap();
    let mut queued = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(stream)) = tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(address),
        )
        .await
        {
            queued.push(stream);
        }
    }
    let url = format!("http://{address}");
    let output = run(loadgen(&[&url, "-n", "1", "--timeout", "300ms"])).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot connect to"), "{stderr}");
    assert!(stderr.contains("no answer"), "{stderr}");
}
