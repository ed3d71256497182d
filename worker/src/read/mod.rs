//! Reading: the bytes of one object version in, records out.
//!
//! - [`csv`]: the streaming RFC 4180 reader (quotedness, positions, raw bytes), bounded memory.
//! - [`parquet`]: a DMS Parquet file (spooled to a local file) as the same CSV stream.
//! - [`document`]: a MongoDB extended-JSON document as the values of its target columns.
//!
//! What reading must not do: fetch the object (the loader does, and spools it), know SQL or a
//! transaction, or decide what a record means for a table (the encoder lays records out and
//! checks their values). Everything here is pure over a byte stream or a local file.
//!
//! Invariants: a reader's memory is bounded by the record limit, never by the file's size (see
//! each module's own invariants); every failure is the reader's own typed error
//! ([`csv::CsvError`], [`parquet::ParquetFailure`], [`document::DocumentError`]), which the
//! encoder or the loader turns into a `WorkerError` with the file's key and the record's position.

pub mod csv;
pub mod document;
pub mod parquet;
