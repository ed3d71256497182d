//! The parser thread of a load: the object's bytes (decompressed, capped per file) through the
//! encoder ([`crate::encode`]) into a bounded channel of `COPY` chunks, on a blocking thread so
//! parsing never stalls the runtime; and the `COPY` sink that drains the channel.
//!
//! Must not: hold more than `CHANNEL_CHUNKS` chunks in memory, or let a gzip stream decompress
//! past `--max-decompressed-bytes` ([`Capped`]).

use super::context::FileLoad;
use super::object::{Body, Tracked};
use crate::encode::{encode, Chunk, Direct, EncodeSpec, Layout, Parsed, CHANNEL_CHUNKS};
use crate::error::WorkerError;
use crate::sql;
use futures_util::SinkExt;
use sluice_common::mapping::{Compression, Format};
use sluice_common::message::FileMessage;
use std::io::{BufReader, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::io::SyncIoBridge;

/// A running parse: the parser thread and the channel it fills.
pub(super) struct ParseRun {
    pub(super) rx: mpsc::Receiver<Chunk>,
    pub(super) parser: tokio::task::JoinHandle<Result<Parsed, WorkerError>>,
    pub(super) source_failed: Arc<AtomicBool>,
}

/// Starts parsing an object's body on a blocking thread.
#[allow(clippy::too_many_arguments)]
pub(super) fn start_parse(
    load: &FileLoad<'_>,
    body: Body,
    target: &sql::TargetTable,
    segmented: bool,
    direct: Option<Direct>,
) -> ParseRun {
    let (ctx, msg, source) = (load.ctx, load.msg, load.source);
    let (tx, rx) = mpsc::channel::<Chunk>(CHANNEL_CHUNKS);
    let source_failed = Arc::new(AtomicBool::new(false));
    let target = target.clone();
    let rules = match source.format {
        Format::Csv => load.rules.clone(),
        Format::Parquet => crate::read::parquet::csv_rules(&load.rules),
    };
    let (bucket, key) = (msg.bucket.clone(), msg.key.clone());
    let max_record_bytes = ctx.max_record_bytes;
    let max_decompressed = ctx.max_decompressed_bytes;
    let try_binary = load.try_binary;
    let failed = source_failed.clone();
    let parser = tokio::task::spawn_blocking(move || {
        let spec = EncodeSpec {
            key: &key,
            target: &target,
            rules: &rules,
            max_record_bytes,
            segmented,
            direct: direct.as_ref(),
            try_binary,
        };
        let body = match body {
            Body::Spooled(file) => return encode_parquet(file, &bucket, &spec, &tx),
            Body::Stream(body) => body,
        };
        let raw = Tracked {
            inner: SyncIoBridge::new(body),
            failed,
        };
        let over = Arc::new(AtomicBool::new(false));
        let input: Box<dyn Read> = match source.compression {
            Compression::Gzip => Box::new(Capped {
                inner: flate2::read::MultiGzDecoder::new(BufReader::with_capacity(1 << 16, raw)),
                left: max_decompressed,
                over: over.clone(),
            }),
            Compression::None => Box::new(raw),
        };
        let parsed = encode(BufReader::with_capacity(1 << 20, input), &spec, &tx);
        if over.load(Ordering::SeqCst) {
            return Err(WorkerError::DecompressedTooLarge {
                key,
                limit: max_decompressed,
            });
        }
        parsed
    });
    ParseRun {
        rx,
        parser,
        source_failed,
    }
}

/// Parses a Parquet object spooled to `file` ([`spool`]): runs the encoder over the file as
/// CSV ([`crate::read::parquet::ParquetCsv`]; `spec.rules` are already
/// [`crate::read::parquet::csv_rules`]), row group by row group, so memory stays bounded. A
/// zero-byte object is an empty file, as for CSV.
pub(super) fn encode_parquet(
    file: std::fs::File,
    bucket: &str,
    spec: &EncodeSpec<'_>,
    tx: &mpsc::Sender<Chunk>,
) -> Result<Parsed, WorkerError> {
    let size = file
        .metadata()
        .map_err(|e| WorkerError::Spool {
            bucket: bucket.to_owned(),
            key: spec.key.to_owned(),
            message: e.to_string(),
        })?
        .len();
    if size == 0 {
        let parsed = encode(&b""[..], spec, tx)?;
        return Ok(parsed);
    }
    let not_parquet = |f: &crate::read::parquet::ParquetFailure| WorkerError::Parquet {
        bucket: bucket.to_owned(),
        key: spec.key.to_owned(),
        message: f.0.clone(),
    };
    let mut rows = crate::read::parquet::ParquetCsv::open(file, crate::read::parquet::NULL_MARKER)
        .map_err(|f| not_parquet(&f))?
        .limit(spec.max_record_bytes);
    let result = encode(BufReader::with_capacity(1 << 16, &mut rows), spec, tx)
        .map_err(|e| super::evolve::typed(e, || rows.column_types()));
    match (result, rows.failure()) {
        // A page, value or row beyond the record limit: bad input, as in a CSV file.
        (Err(_), Some(f)) if rows.over_limit().is_some() => Err(WorkerError::Csv {
            key: spec.key.to_owned(),
            reason: f.0.clone(),
            record: rows.over_limit().and_then(|o| o.row),
            line: None,
            class: "record_too_long",
        }),
        (Err(_), Some(f)) => Err(not_parquet(f)),
        (Err(e), None) => Err(e),
        (Ok(parsed), _) => Ok(Parsed {
            // As read from S3: the file's own size, not the CSV it became.
            bytes: size,
            ..parsed
        }),
    }
}

impl ParseRun {
    /// The file's layout, which the parser sends first.
    pub(super) async fn layout(
        &mut self,
        msg: &FileMessage,
        compression: Compression,
    ) -> Result<Layout, WorkerError> {
        match self.rx.recv().await {
            Some(Chunk::Layout(l)) => Ok(l),
            _ => {
                self.rx.close();
                Err(
                    parser_result(&mut self.parser, msg, &self.source_failed, compression)
                        .await
                        .err()
                        .unwrap_or_else(|| WorkerError::Csv {
                            key: msg.key.clone(),
                            reason: "parser ended without a layout".to_owned(),
                            record: None,
                            line: None,
                            class: "internal",
                        }),
                )
            }
        }
    }

    /// Stops the channel and waits for the parser's result.
    pub(super) async fn finish(
        mut self,
        msg: &FileMessage,
        compression: Compression,
    ) -> Result<Parsed, WorkerError> {
        self.rx.close();
        // Unblock a parser waiting to send: what it still had is not needed.
        while self.rx.recv().await.is_some() {}
        parser_result(&mut self.parser, msg, &self.source_failed, compression).await
    }
}

/// The fast path: every chunk into one `COPY`. The outer error is a failure to start the
/// `COPY`; the inner one is PostgreSQL's answer to the data.
pub(super) async fn copy_fast(
    txn: &deadpool_postgres::Transaction<'_>,
    copy_sql: &str,
    run: &mut ParseRun,
) -> Result<Result<(), tokio_postgres::Error>, tokio_postgres::Error> {
    let sink = txn.copy_in::<_, bytes::Bytes>(copy_sql).await?;
    futures_util::pin_mut!(sink);
    while let Some(chunk) = run.rx.recv().await {
        if let Chunk::Data(data) = chunk {
            if let Err(e) = sink.send(data).await {
                run.rx.close();
                return Ok(Err(e));
            }
        }
    }
    Ok(sink.as_mut().finish().await.map(|_| ()))
}

pub(super) async fn parser_result(
    parser: &mut tokio::task::JoinHandle<Result<Parsed, WorkerError>>,
    msg: &FileMessage,
    source_failed: &AtomicBool,
    compression: Compression,
) -> Result<Parsed, WorkerError> {
    let result = parser.await.map_err(|e| WorkerError::Csv {
        key: msg.key.clone(),
        reason: format!("parser thread failed: {e}"),
        record: None,
        line: None,
        class: "internal",
    })?;
    match result {
        Err(WorkerError::Csv {
            reason,
            class: "read",
            ..
        }) => {
            if source_failed.load(Ordering::SeqCst) || compression == Compression::None {
                Err(WorkerError::S3 {
                    bucket: msg.bucket.clone(),
                    key: msg.key.clone(),
                    message: reason,
                    transient: true,
                })
            } else {
                Err(WorkerError::Gzip {
                    key: msg.key.clone(),
                    message: reason,
                })
            }
        }
        other => other,
    }
}

/// A decompressed stream that fails once more than `left` bytes came out of it (a gzip bomb),
/// and sets `over`, so that the parser's error becomes [`WorkerError::DecompressedTooLarge`]
/// rather than a corrupt stream. A stream of exactly the limit passes.
pub(super) struct Capped<R> {
    pub(super) inner: R,
    pub(super) left: u64,
    pub(super) over: Arc<AtomicBool>,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // One byte more than is left tells "exactly the limit" from "more".
        let want =
            usize::try_from(self.left.saturating_add(1)).map_or(buf.len(), |w| w.min(buf.len()));
        let n = self.inner.read(&mut buf[..want])?;
        if n as u64 > self.left {
            self.over.store(true, Ordering::SeqCst);
            return Err(std::io::Error::other(
                "decompressed size beyond the limit per file",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_capped(data: &[u8], limit: u64) -> (std::io::Result<Vec<u8>>, bool) {
        let over = Arc::new(AtomicBool::new(false));
        let mut capped = Capped {
            inner: data,
            left: limit,
            over: over.clone(),
        };
        let mut out = Vec::new();
        let result = capped.read_to_end(&mut out).map(|_| out);
        (result, over.load(Ordering::SeqCst))
    }

    #[test]
    fn decompressed_bytes_are_capped_per_file() {
        let data = vec![7u8; 10_000];
        let (ok, over) = read_capped(&data, 10_000);
        assert_eq!((ok.unwrap().len(), over), (10_000, false));
        let (ok, over) = read_capped(&data, 20_000);
        assert_eq!((ok.unwrap().len(), over), (10_000, false));
        let (err, over) = read_capped(&data, 9_999);
        assert!(err.is_err() && over);
        let (err, over) = read_capped(&data, 1);
        assert!(err.is_err() && over);
        let (ok, over) = read_capped(b"", 1);
        assert_eq!((ok.unwrap().len(), over), (0, false));
        // Through a real gzip bomb: 8 MiB of zeros, 8 KiB compressed, capped at 1 MiB.
        let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut bomb, &vec![0u8; 8 << 20]).unwrap();
        let bomb = bomb.finish().unwrap();
        let over = Arc::new(AtomicBool::new(false));
        let mut capped = Capped {
            inner: flate2::read::MultiGzDecoder::new(&bomb[..]),
            left: 1 << 20,
            over: over.clone(),
        };
        let mut sink = [0u8; 1 << 16];
        let mut total = 0u64;
        let err = loop {
            match capped.read(&mut sink) {
                Ok(0) => panic!("the bomb ended within the cap"),
                Ok(n) => total += n as u64,
                Err(e) => break e,
            }
        };
        assert!(over.load(Ordering::SeqCst), "{err}");
        assert_eq!(total, 1 << 20, "every byte up to the cap is passed on");
    }

    #[test]
    fn decompressed_too_large_is_permanent_and_names_file_cap_and_flag() {
        let e = WorkerError::DecompressedTooLarge {
            key: "dms/s/t/LOAD00000001.csv.gz".into(),
            limit: 1 << 20,
        };
        let f = e.to_file_error();
        assert_eq!(f.class, "decompressed_too_large");
        assert!(f.permanent);
        for part in [
            "dms/s/t/LOAD00000001.csv.gz",
            "1048576 bytes",
            "--max-decompressed-bytes",
        ] {
            assert!(f.message.contains(part), "{}", f.message);
        }
    }
}
