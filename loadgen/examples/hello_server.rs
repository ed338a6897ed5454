//! A minimal HTTP server for benchmarking load generators: every path answers `hello`, once it has
//! read the request's body (so it also stands in for a trace agent that takes every payload).
//! `cargo run --release -p loadgen --example hello_server -- 127.0.0.1:8080` prints the bound address.

use axum::Router;
use axum::body::{Body, to_bytes};

#[tokio::main]
async fn main() {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let listener = tokio::net::TcpListener::bind(&address).await.expect("bind");
    println!("{}", listener.local_addr().expect("bound address"));
    let app = Router::new().fallback(|body: Body| async move {
        // Read to the end (a server answering before it has read a body closes the connection).
        let _ = to_bytes(body, usize::MAX).await;
        "hello"
    });
    axum::serve(listener, app).await.expect("serve");
}
