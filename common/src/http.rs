//! The optional HTTP endpoint of both binaries: `GET /metrics` (the Prometheus exposition of
//! [`crate::metrics`]) and `GET /health` (a check the binary provides; 404 without one). HTTP/1
//! from `hyper`, which the AWS SDK already brings; no framework.
//!
//! [`get`] is the matching minimal client, for `sluice-worker health` (the container health
//! check: the image has no curl) and the tests.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A health check: healthy or not, and a JSON body that says why.
pub type HealthCheck =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = (bool, serde_json::Value)> + Send>> + Send + Sync>;

/// A running endpoint; stops when dropped.
pub struct Server {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `addr` (`host:port`; port 0 picks one, see [`Server::addr`]) and serves until dropped.
pub async fn serve(addr: &str, health: Option<HealthCheck>) -> std::io::Result<Server> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "http endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let health = health.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let health = health.clone();
                    async move { Ok::<_, std::convert::Infallible>(answer(req, health).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(Server { addr, task })
}

async fn answer<B>(req: Request<B>, health: Option<HealthCheck>) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, content_type: &str, body: String| {
        Response::builder()
            .status(status)
            .header("content-type", content_type)
            .header("cache-control", "no-store")
            .body(Full::new(Bytes::from(body)))
            .expect("static response parts are valid")
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        );
    }
    match (req.uri().path(), health) {
        ("/metrics", _) => reply(
            StatusCode::OK,
            crate::metrics::CONTENT_TYPE,
            crate::metrics::render(),
        ),
        ("/health", Some(check)) => {
            let (ok, body) = check().await;
            let status = if ok {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            reply(status, "application/json", format!("{body}\n"))
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: /metrics or /health\n".into(),
        ),
    }
}

/// `GET path` from `addr` (`host:port`): the status code and the body. One request per
/// connection; the whole exchange is bounded by `timeout`.
pub async fn get(addr: &str, path: &str, timeout: Duration) -> std::io::Result<(u16, String)> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.take(16 << 20).read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    };
    let raw = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in time"))??;
    let text = String::from_utf8_lossy(&raw);
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP response");
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(bad)?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    Ok((status, body.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_metrics_health_and_404() {
        crate::metrics::inc(&crate::metrics::FILES_LOADED, &[], 1);
        let sick: HealthCheck =
            Arc::new(|| Box::pin(async { (false, serde_json::json!({"status": "unhealthy"})) }));
        let server = serve("127.0.0.1:0", Some(sick)).await.unwrap();
        let addr = server.addr.to_string();
        let t = Duration::from_secs(5);
        let (status, body) = get(&addr, "/metrics", t).await.unwrap();
        assert_eq!(status, 200);
        assert!(body.contains("sluice_worker_files_loaded_total"), "{body}");
        assert!(body.trim_end().ends_with("# EOF"), "{body}");
        let (status, body) = get(&addr, "/health", t).await.unwrap();
        assert_eq!(status, 503);
        assert!(body.contains("unhealthy"), "{body}");
        assert_eq!(get(&addr, "/nope", t).await.unwrap().0, 404);

        let plain = serve("127.0.0.1:0", None).await.unwrap();
        let (status, _) = get(&plain.addr.to_string(), "/health", t).await.unwrap();
        assert_eq!(status, 404);
        drop(server);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(get(&addr, "/metrics", t).await.is_err(), "stopped on drop");
    }
}
