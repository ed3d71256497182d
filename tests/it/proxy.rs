//! A TCP proxy for fault tests: forwards connections to a target (PostgreSQL) and can be switched
//! to refuse new connections (accepted and closed at once) and to cut the open ones, so a test
//! can make the database unreachable for one process without touching the shared server.
//!
//! ```ignore
//! let proxy = Proxy::start("127.0.0.1:5432").await;
//! let url = proxy.url(&database_url());   // same URL, host:port of the proxy
//! proxy.set_down(true);                   // new connections fail, open ones are cut
//! proxy.set_down(false);                  // back
//! ```

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

pub struct Proxy {
    pub addr: std::net::SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

struct State {
    down: AtomicBool,
    /// Cancelled to cut every open connection; replaced by a fresh one afterwards.
    cut: Mutex<CancellationToken>,
    /// Connections accepted and forwarded so far.
    forwarded: AtomicU64,
    /// Connections refused while down.
    refused: AtomicU64,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `target` (`host:port`).
    pub async fn start(target: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            down: AtomicBool::new(false),
            cut: Mutex::new(CancellationToken::new()),
            forwarded: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        });
        let target = target.to_owned();
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                if st.down.load(Ordering::SeqCst) {
                    st.refused.fetch_add(1, Ordering::SeqCst);
                    drop(client);
                    continue;
                }
                st.forwarded.fetch_add(1, Ordering::SeqCst);
                let cut = st.cut.lock().unwrap().clone();
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&target).await else {
                        return;
                    };
                    let mut client = client;
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.cancelled() => {}
                    }
                });
            }
        });
        Proxy { addr, state, task }
    }

    /// `url` (`postgres://user:password@host:port/db...`) with the proxy's host and port.
    pub fn url(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").expect("a URL");
        let (creds, after) = rest.rsplit_once('@').expect("a URL with credentials");
        let tail = after.find('/').map(|i| &after[i..]).unwrap_or("");
        format!("{scheme}://{creds}@{}{tail}", self.addr)
    }

    /// Down: refuse new connections and cut the open ones. Up: forward again.
    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
        if down {
            self.cut_all();
        }
    }

    /// Cuts every open connection (new ones are still forwarded unless down).
    pub fn cut_all(&self) {
        let mut cut = self.state.cut.lock().unwrap();
        cut.cancel();
        *cut = CancellationToken::new();
    }

    #[allow(dead_code)] // for fault tests that count what reached the database
    pub fn forwarded(&self) -> u64 {
        self.state.forwarded.load(Ordering::SeqCst)
    }

    pub fn refused(&self) -> u64 {
        self.state.refused.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut_all();
        self.task.abort();
    }
}
