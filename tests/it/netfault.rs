//! A TCP proxy that tests put between a component and a service to inject network faults:
//! refuse connections, answer HTTP 503 to every request, cut every open connection, or (for
//! PostgreSQL) let a `COMMIT` through and cut the connection before its answer comes back.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Pass bytes both ways.
    Forward,
    /// Accept and close at once: the service is down.
    Refuse,
    /// Answer every HTTP request with 503 Service Unavailable and close.
    Unavailable,
    /// PostgreSQL without TLS: forward, but once a `COMMIT` that ends a `COPY` (a file's load,
    /// not the worker's set-up) has gone to the server, cut the connection before the server's
    /// answer reaches the client. One-shot: back to Forward.
    CutAtCommit,
}

pub struct Proxy {
    pub addr: SocketAddr,
    mode: Arc<Mutex<Mode>>,
    /// Cancelled to cut every open connection; replaced after each cut.
    live: Arc<Mutex<CancellationToken>>,
    /// Connections or requests answered with a fault.
    pub faults: Arc<AtomicU64>,
    /// Whether a `COMMIT` was cut.
    pub cut: Arc<AtomicBool>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = Proxy {
            addr: listener.local_addr().unwrap(),
            mode: Arc::new(Mutex::new(Mode::Forward)),
            live: Arc::new(Mutex::new(CancellationToken::new())),
            faults: Arc::new(AtomicU64::new(0)),
            cut: Arc::new(AtomicBool::new(false)),
            task: Mutex::new(None),
        };
        let (mode, live, faults, cut) = (
            proxy.mode.clone(),
            proxy.live.clone(),
            proxy.faults.clone(),
            proxy.cut.clone(),
        );
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let current = *mode.lock().unwrap();
                let token = live.lock().unwrap().clone();
                let (faults, cut, mode) = (faults.clone(), cut.clone(), mode.clone());
                tokio::spawn(async move {
                    match current {
                        Mode::Refuse => {
                            faults.fetch_add(1, Ordering::SeqCst);
                            drop(client);
                        }
                        Mode::Unavailable => unavailable(client, &faults).await,
                        Mode::Forward | Mode::CutAtCommit => {
                            let Ok(server) = TcpStream::connect(upstream).await else {
                                return;
                            };
                            let watch = (current == Mode::CutAtCommit).then_some((cut, mode));
                            tokio::select! {
                                _ = pipe(client, server, watch) => {}
                                _ = token.cancelled() => {}
                            }
                        }
                    }
                });
            }
        });
        *proxy.task.lock().unwrap() = Some(task);
        proxy
    }

    /// Changes the mode for new connections; a fault mode also cuts the open ones.
    pub fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
        if matches!(mode, Mode::Refuse | Mode::Unavailable) {
            self.cut_all();
        }
    }

    /// Cuts every open connection (as a crashed or restarted server would).
    pub fn cut_all(&self) {
        let mut live = self.live.lock().unwrap();
        live.cancel();
        *live = CancellationToken::new();
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A PostgreSQL URL (`postgres://user:password@host:port/db...`) through the proxy.
    pub fn pg_url(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").expect("a URL");
        let (creds, after) = rest.rsplit_once('@').expect("a URL with credentials");
        let tail = after.find('/').map(|i| &after[i..]).unwrap_or("");
        format!("{scheme}://{creds}@{}{tail}", self.addr)
    }

    /// Down: refuse new connections and cut the open ones. Up: forward again.
    pub fn set_down(&self, down: bool) {
        self.set(if down { Mode::Refuse } else { Mode::Forward });
    }

    /// Connections or requests answered with a fault so far.
    pub fn refused(&self) -> u64 {
        self.faults.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut_all();
        if let Some(task) = self.task.lock().unwrap().take() {
            task.abort();
        }
    }
}

/// Reads HTTP requests (head and `Content-Length` body) and answers each with 503.
async fn unavailable(mut sock: TcpStream, faults: &AtomicU64) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    continue;
                }
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + 4 + length {
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        faults.fetch_add(1, Ordering::SeqCst);
        let body = "<Error><Code>ServiceUnavailable</Code><Message>injected</Message></Error>";
        let response = format!(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = sock.write_all(response.as_bytes()).await;
        return;
    }
}

/// Copies both ways. With `watch`, parses the client's PostgreSQL messages and, after passing a
/// `COMMIT` on, stops the server's answers and closes.
async fn pipe(
    client: TcpStream,
    server: TcpStream,
    watch: Option<(Arc<AtomicBool>, Arc<Mutex<Mode>>)>,
) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let stop = CancellationToken::new();
    let up = {
        let stop = stop.clone();
        let watch = watch.clone();
        async move {
            let mut pending: Vec<u8> = Vec::new();
            let mut started = false;
            let mut copied = false;
            let mut chunk = vec![0u8; 65536];
            loop {
                let n = match cr.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let Some((cut, mode)) = &watch else {
                    if sw.write_all(&chunk[..n]).await.is_err() {
                        return;
                    }
                    continue;
                };
                pending.extend_from_slice(&chunk[..n]);
                // Forward whole messages; look at each.
                loop {
                    let (header, len) = if started {
                        if pending.len() < 5 {
                            break;
                        }
                        (
                            1,
                            u32::from_be_bytes(pending[1..5].try_into().unwrap()) as usize,
                        )
                    } else {
                        if pending.len() < 4 {
                            break;
                        }
                        (
                            0,
                            u32::from_be_bytes(pending[0..4].try_into().unwrap()) as usize,
                        )
                    };
                    if pending.len() < header + len {
                        break;
                    }
                    let message: Vec<u8> = pending.drain(..header + len).collect();
                    copied |= started && message[0] == b'd';
                    let is_commit = started
                        && copied
                        && message[0] == b'Q'
                        && message[5..].starts_with(b"COMMIT");
                    if !started {
                        // The startup message (or an SSL request, which this test setup avoids).
                        started = true;
                    }
                    if is_commit && !cut.load(Ordering::SeqCst) {
                        cut.store(true, Ordering::SeqCst);
                        *mode.lock().unwrap() = Mode::Forward;
                        stop.cancel();
                        let _ = sw.write_all(&message).await;
                        // Let the server commit, then hang up on both.
                        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                        return;
                    }
                    if sw.write_all(&message).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    let down = {
        let stop = stop.clone();
        async move {
            let mut chunk = vec![0u8; 65536];
            loop {
                let n = tokio::select! {
                    r = sr.read(&mut chunk) => match r { Ok(0) | Err(_) => return, Ok(n) => n },
                    _ = stop.cancelled() => return,
                };
                if stop.is_cancelled() || cw.write_all(&chunk[..n]).await.is_err() {
                    return;
                }
            }
        }
    };
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}
