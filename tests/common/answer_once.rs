//! A loopback server that answers one connection with a fixed status line: what the health check's
//! tests point `apm-demo healthcheck` at. Bounded: no connection within 10 s fails the test (a
//! health check that never asks must not hang the suite).

use std::io::{ErrorKind, Read, Write};
use std::net::TcpListener;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(10);

/// The port, and the server's thread, which returns the request it read.
pub fn answer_once(status_line: &'static str) -> (u16, JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let server = std::thread::spawn(move || {
        let deadline = Instant::now() + WAIT;
        let mut stream = loop {
            match listener.accept() {
                Ok((stream, _)) => break stream,
                Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("no connection within {WAIT:?}: {e}"),
            }
        };
        stream.set_nonblocking(false).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut request = [0u8; 1024];
        let n = stream.read(&mut request).unwrap();
        write!(stream, "{status_line}\r\ncontent-length: 0\r\n\r\n").unwrap();
        String::from_utf8_lossy(&request[..n]).into_owned()
    });
    (port, server)
}
