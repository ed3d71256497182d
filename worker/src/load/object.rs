//! The object's bytes: the S3 GET of exactly the version the message names (`If-Match` on its
//! ETag), streamed for CSV, or spooled whole to an unlinked temporary file for Parquet (whose
//! index is at its end) before the load's transaction begins.
//!
//! Must not: read another version of the key (a new ETag is `object_superseded`), or leave a
//! file behind whatever happens (the spool is unlinked as soon as it is made).

use super::context::LoadContext;
use crate::error::WorkerError;
use sluice_common::mapping::Format;
use sluice_common::message::FileMessage;
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;
use tokio_util::io::SyncIoBridge;

/// An object's bytes, as the parser gets them.
pub(super) enum Body {
    /// A CSV object, streamed from S3 while the `COPY` runs.
    Stream(Box<dyn tokio::io::AsyncRead + Send + Unpin>),
    /// A Parquet object, already downloaded ([`spool`]).
    Spooled(std::fs::File),
}

/// An object's bytes before its transaction begins: a CSV object's stream, or a Parquet
/// object downloaded whole ([`spool`]), with a second handle on the file for the slow path,
/// which reads it again.
pub(super) async fn open_body(
    ctx: &LoadContext,
    msg: &FileMessage,
    format: Format,
) -> Result<(Body, Option<std::fs::File>), WorkerError> {
    let body = get_object(&ctx.s3, msg).await?;
    if format == Format::Csv {
        return Ok((Body::Stream(Box::new(body)), None));
    }
    let file = spool(body, msg).await?;
    let again = file.try_clone().map_err(|e| WorkerError::Spool {
        bucket: msg.bucket.clone(),
        key: msg.key.clone(),
        message: e.to_string(),
    })?;
    Ok((Body::Spooled(file), Some(again)))
}

/// How many CSV objects of a batch are asked of S3 ahead of the one being copied.
const FETCH_AHEAD: usize = 4;

/// The GETs of a batch's CSV objects, [`FETCH_AHEAD`] objects ahead of the one being copied, so
/// that each GET's wait for S3 (its first byte) overlaps the `COPY` of the objects before it:
/// one by one, a batch of 100 small files waits 100 times. Each GET ahead holds an open
/// response whose body is read only at its turn, so there are few. Dropped (the batch ended,
/// or failed), it aborts the GETs still out.
pub(super) struct Fetches {
    s3: aws_sdk_s3::Client,
    /// The objects not asked for yet, in the order they are copied.
    waiting: std::vec::IntoIter<FileMessage>,
    /// The GETs out, in the same order.
    out: std::collections::VecDeque<tokio::task::JoinHandle<Result<Body, WorkerError>>>,
}

impl Fetches {
    /// Starts the first GETs of `wanted`, the objects in the order they will be taken.
    pub fn start(ctx: &LoadContext, wanted: Vec<FileMessage>) -> Self {
        let mut fetches = Fetches {
            s3: ctx.s3.clone(),
            waiting: wanted.into_iter(),
            out: std::collections::VecDeque::new(),
        };
        fetches.top_up();
        fetches
    }

    fn top_up(&mut self) {
        while self.out.len() < FETCH_AHEAD {
            let Some(msg) = self.waiting.next() else {
                return;
            };
            let s3 = self.s3.clone();
            self.out.push_back(tokio::spawn(async move {
                let body = get_object(&s3, &msg).await?;
                Ok(Body::Stream(Box::new(body)))
            }));
        }
    }

    /// The next object (`key`, for errors), once S3 answered. A GET task that did not end (a
    /// panic) fails the batch, whose files then load one by one.
    pub async fn next(&mut self, key: &str) -> Result<Body, WorkerError> {
        let unfit = |reason: String| WorkerError::BatchUnfit {
            key: key.to_owned(),
            reason,
        };
        let get = self
            .out
            .pop_front()
            .ok_or_else(|| unfit("it was not fetched with the batch".to_owned()))?;
        self.top_up();
        get.await
            .unwrap_or_else(|e| Err(unfit(format!("its GET stopped: {e}"))))
    }
}

impl Drop for Fetches {
    fn drop(&mut self) {
        for get in &self.out {
            get.abort();
        }
    }
}

/// Downloads a Parquet object's `body` whole to a temporary file, before its transaction
/// begins. Memory stays bounded: the body is copied through a 64 KiB buffer. The file is
/// unlinked as soon as it is created, so it disappears when its last handle closes, whatever
/// happens (an error, a panic, the process killed).
pub(super) async fn spool(
    body: impl tokio::io::AsyncRead + Send + Unpin + 'static,
    msg: &FileMessage,
) -> Result<std::fs::File, WorkerError> {
    let (bucket, key) = (msg.bucket.clone(), msg.key.clone());
    let spooled = tokio::task::spawn_blocking(move || {
        let spool_err = |e: std::io::Error| WorkerError::Spool {
            bucket: bucket.clone(),
            key: key.clone(),
            message: e.to_string(),
        };
        let mut raw = SyncIoBridge::new(body);
        let mut file = unlinked_temp_file().map_err(spool_err)?;
        let mut copy_buf = vec![0u8; 1 << 16];
        loop {
            let n = match raw.read(&mut copy_buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(WorkerError::S3 {
                        bucket: bucket.clone(),
                        key: key.clone(),
                        message: e.to_string(),
                        transient: true,
                    })
                }
            };
            std::io::Write::write_all(&mut file, &copy_buf[..n]).map_err(spool_err)?;
        }
        Ok(file)
    })
    .await;
    spooled.unwrap_or_else(|e| {
        Err(WorkerError::Spool {
            bucket: msg.bucket.clone(),
            key: msg.key.clone(),
            message: format!("spooling thread failed: {e}"),
        })
    })
}

/// A new file in the temporary directory, already unlinked: only this handle reaches it.
pub(super) fn unlinked_temp_file() -> std::io::Result<std::fs::File> {
    use std::sync::atomic::AtomicU64;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let path = std::env::temp_dir().join(format!(
        "sluice-{}-{}-{nanos}.parquet",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(file)
}

/// Records whether the underlying S3 stream failed, to tell a network error (transient) from
/// a corrupt gzip stream (permanent) once both have become `io::Error`s.
pub(super) struct Tracked<R> {
    pub(super) inner: R,
    pub(super) failed: Arc<AtomicBool>,
}

impl<R: Read> Read for Tracked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner
            .read(buf)
            .inspect_err(|_| self.failed.store(true, Ordering::SeqCst))
    }
}

/// Starts the GET of exactly the message's object version.
pub(super) async fn get_object(
    s3: &aws_sdk_s3::Client,
    msg: &FileMessage,
) -> Result<impl tokio::io::AsyncRead + Send + Unpin + 'static, WorkerError> {
    let result = s3
        .get_object()
        .bucket(&msg.bucket)
        .key(&msg.key)
        .if_match(format!("\"{}\"", msg.etag))
        .send()
        .await;
    match result {
        Ok(out) => Ok(out.body.into_async_read()),
        Err(e) => {
            use aws_sdk_s3::error::ProvideErrorMetadata;
            let status = e.raw_response().map(|r| r.status().as_u16());
            let code = e.code().unwrap_or_default().to_owned();
            let missing = e.as_service_error().is_some_and(|s| s.is_no_such_key())
                || code == "NoSuchKey"
                || status == Some(404);
            let (bucket, key, etag) = (msg.bucket.clone(), msg.key.clone(), msg.etag.clone());
            if missing {
                return Err(WorkerError::ObjectMissing { bucket, key, etag });
            }
            if status == Some(412) || code == "PreconditionFailed" {
                return Err(WorkerError::ObjectChanged { bucket, key, etag });
            }
            if status == Some(403) || code == "AccessDenied" {
                return Err(WorkerError::AccessDenied {
                    bucket,
                    key,
                    message: sluice_common::error::sdk_error_text(&e),
                });
            }
            Err(WorkerError::S3 {
                bucket,
                key,
                message: sluice_common::error::sdk_error_text(&e),
                transient: sluice_common::error::sdk_error_is_transient(&e),
            })
        }
    }
}
