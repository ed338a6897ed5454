//! A minimal HTTP server for benchmarking load generators: every path answers `hello`.
//! `cargo run --release -p loadgen --example hello_server -- 127.0.0.1:8080` prints the bound address.

use axum::Router;

#[tokio::main]
async fn main() {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let listener = tokio::net::TcpListener::bind(&address).await.expect("bind");
    println!("{}", listener.local_addr().expect("bound address"));
    let app = Router::new().fallback(|| async { "hello" });
    axum::serve(listener, app).await.expect("serve");
}
