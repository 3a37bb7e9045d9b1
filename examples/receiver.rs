//! A local HTTP receiver for trying herald: prints each request's body on its
//! own line and answers 200. `cargo run --example receiver -- 127.0.0.1:8080`

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, Uri};
use axum::Router;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let app = Router::new().fallback(
        |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| async move {
            let ctype = headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            println!("{method} {uri} ({ctype}, {} bytes)", body.len());
            println!("{}", String::from_utf8_lossy(&body));
            "ok"
        },
    );
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("receiver listening on http://{addr}");
    axum::serve(listener, app).await
}
