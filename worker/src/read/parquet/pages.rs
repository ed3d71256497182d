//! Page headers, checked before the reader decodes a row group.
//!
//! The `parquet` crate allocates a page's declared uncompressed size before decompressing it,
//! reads a gzip page to its end whatever it declares, and keeps every page a batch of rows
//! touches. So before a row group is read, every page header of its column chunks is read
//! here (Thrift compact protocol, fields skipped without allocating): a page declaring more
//! than the record limit, compressed or not, is refused, and a gzip page is inflated into a
//! small scratch buffer, counting, and refused as soon as it exceeds what it declares. The
//! headers also give each flat column's largest bytes per row, which sizes the row group's
//! batches.
//!
//! Must not: decode a page's values, or allocate by what a header declares: every length it
//! reads is checked against the limit first.

use std::fs::File;
use std::io::{self, Read};

/// Thrift compact protocol types (the low nibble of a field header).
mod ttype {
    pub const TRUE: u8 = 1;
    pub const FALSE: u8 = 2;
    pub const BYTE: u8 = 3;
    pub const I16: u8 = 4;
    pub const I32: u8 = 5;
    pub const I64: u8 = 6;
    pub const DOUBLE: u8 = 7;
    pub const BINARY: u8 = 8;
    pub const LIST: u8 = 9;
    pub const SET: u8 = 10;
    pub const MAP: u8 = 11;
    pub const STRUCT: u8 = 12;
    pub const UUID: u8 = 13;
}

/// Nesting deeper than this in a page header is refused (a hostile header could recurse).
const MAX_THRIFT_DEPTH: u32 = 32;

/// Why a file is refused before its pages are decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Refusal {
    /// A page or value beyond the record limit: `record_too_long`.
    TooLarge(String),
    /// Not valid Parquet: `corrupt_parquet`.
    Corrupt(String),
}

/// A page header or page that is not valid Parquet.
fn corrupt(why: impl Into<String>) -> Refusal {
    Refusal::Corrupt(why.into())
}

/// A Thrift compact-protocol reader that skips what it does not need without allocating;
/// no length it reads may exceed `limit`.
struct Compact<R> {
    r: R,
    limit: u64,
}

impl<R: Read> Compact<R> {
    fn byte(&mut self) -> Result<u8, Refusal> {
        let mut b = [0u8; 1];
        self.r
            .read_exact(&mut b)
            .map_err(|e| corrupt(format!("truncated page header: {e}")))?;
        Ok(b[0])
    }

    fn varint(&mut self) -> Result<u64, Refusal> {
        let mut v: u64 = 0;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift.min(63);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(corrupt("page header has a varint longer than 10 bytes"))
    }

    fn zigzag(&mut self) -> Result<i64, Refusal> {
        let v = self.varint()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    fn skip_bytes(&mut self, n: u64) -> Result<(), Refusal> {
        if n > self.limit {
            return Err(corrupt(format!("page header holds a field of {n} bytes")));
        }
        let copied = io::copy(&mut (&mut self.r).take(n), &mut io::sink())
            .map_err(|e| corrupt(format!("reading a page header: {e}")))?;
        if copied != n {
            return Err(corrupt("truncated page header"));
        }
        Ok(())
    }

    /// The next field of a struct: (id, type), None at its end. `last` is the previous id.
    fn field(&mut self, last: &mut i16) -> Result<Option<(i16, u8)>, Refusal> {
        let b = self.byte()?;
        if b == 0 {
            return Ok(None);
        }
        let delta = i16::from(b >> 4);
        let id = if delta == 0 {
            i16::try_from(self.zigzag()?).map_err(|_| corrupt("bad field id in a page header"))?
        } else {
            last.wrapping_add(delta)
        };
        *last = id;
        Ok(Some((id, b & 0x0f)))
    }

    /// Reads an integer field of type `ty`.
    fn int(&mut self, ty: u8) -> Result<i64, Refusal> {
        match ty {
            ttype::I16 | ttype::I32 | ttype::I64 => self.zigzag(),
            _ => Err(corrupt(format!(
                "page header field of type {ty} where an integer belongs"
            ))),
        }
    }

    /// Skips a value of type `ty`.
    fn skip(&mut self, ty: u8, depth: u32) -> Result<(), Refusal> {
        if depth > MAX_THRIFT_DEPTH {
            return Err(corrupt("page header nested too deep"));
        }
        match ty {
            ttype::TRUE | ttype::FALSE => Ok(()),
            ttype::BYTE => self.byte().map(drop),
            ttype::I16 | ttype::I32 | ttype::I64 => self.varint().map(drop),
            ttype::DOUBLE => self.skip_bytes(8),
            ttype::UUID => self.skip_bytes(16),
            ttype::BINARY => {
                let n = self.varint()?;
                self.skip_bytes(n)
            }
            ttype::LIST | ttype::SET => {
                let h = self.byte()?;
                let n = match h >> 4 {
                    15 => self.varint()?,
                    n => u64::from(n),
                };
                self.skip_elements(n, &[h & 0x0f], depth)
            }
            ttype::MAP => {
                let n = self.varint()?;
                if n == 0 {
                    return Ok(());
                }
                let kv = self.byte()?;
                self.skip_elements(n, &[kv >> 4, kv & 0x0f], depth)
            }
            ttype::STRUCT => {
                let mut last = 0;
                while let Some((_, t)) = self.field(&mut last)? {
                    self.skip(t, depth + 1)?;
                }
                Ok(())
            }
            other => Err(corrupt(format!(
                "page header has a field of unknown type {other}"
            ))),
        }
    }

    /// Skips `n` collection elements of the given types (booleans are one byte each there).
    fn skip_elements(&mut self, n: u64, types: &[u8], depth: u32) -> Result<(), Refusal> {
        if n > self.limit {
            return Err(corrupt(format!(
                "page header holds a collection of {n} elements"
            )));
        }
        for _ in 0..n {
            for &t in types {
                if t == ttype::TRUE || t == ttype::FALSE {
                    self.byte()?;
                } else {
                    self.skip(t, depth + 1)?;
                }
            }
        }
        Ok(())
    }
}

/// Page types (`parquet.thrift`).
const DICTIONARY_PAGE: i64 = 2;
const DATA_PAGE_V2: i64 = 3;

/// What a page header says about the page's size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct PageHeader {
    kind: i64,
    uncompressed: i64,
    compressed: i64,
    /// Values (data page v1) or rows (v2) in the page; 0 for other pages.
    rows: i64,
    /// Data page v2: bytes of repetition and definition levels, stored uncompressed before
    /// the compressed values.
    levels: i64,
    /// Data page v2: whether the values are compressed (the default).
    compressed_values: bool,
}

/// Reads one page header (the fields that size the page; the rest is skipped).
fn read_page_header<R: Read>(r: R, limit: u64) -> Result<PageHeader, Refusal> {
    let mut c = Compact { r, limit };
    let mut h = PageHeader {
        kind: -1,
        uncompressed: -1,
        compressed: -1,
        compressed_values: true,
        ..PageHeader::default()
    };
    let mut last = 0;
    while let Some((id, ty)) = c.field(&mut last)? {
        match (id, ty) {
            (1, _) => h.kind = c.int(ty)?,
            (2, _) => h.uncompressed = c.int(ty)?,
            (3, _) => h.compressed = c.int(ty)?,
            (5 | 8, ttype::STRUCT) => {
                let v2 = id == 8;
                let mut last = 0;
                let (mut def, mut rep) = (0, 0);
                while let Some((id, ty)) = c.field(&mut last)? {
                    match (id, v2) {
                        (1, false) | (3, true) => h.rows = c.int(ty)?,
                        (5, true) => def = c.int(ty)?,
                        (6, true) => rep = c.int(ty)?,
                        (7, true) => h.compressed_values = ty != ttype::FALSE,
                        _ => c.skip(ty, 1)?,
                    }
                }
                h.levels = def.saturating_add(rep);
            }
            _ => c.skip(ty, 0)?,
        }
    }
    if h.kind < 0 || h.uncompressed < 0 || h.compressed < 0 || h.levels < 0 {
        return Err(corrupt(
            "page header lacks its type or sizes, or has negative ones",
        ));
    }
    Ok(h)
}

/// Inflates a gzip page's bytes into a small scratch buffer, counting, and refuses it as
/// soon as it yields more than `declared` bytes (the `parquet` crate would read it whole).
fn check_gzip_page<R: Read>(compressed: R, declared: u64) -> Result<(), Refusal> {
    let mut inflate = flate2::read::MultiGzDecoder::new(compressed);
    let mut scratch = [0u8; 1 << 14];
    let mut total: u64 = 0;
    loop {
        let n = match inflate.read(&mut scratch) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // The reader reports a bad stream itself, with its context.
            Err(_) => return Ok(()),
        };
        total += n as u64;
        if total > declared {
            return Err(corrupt(format!(
                "a gzip page declares {declared} bytes and inflates to more"
            )));
        }
    }
}

/// A [`Read`] of a file from an offset on, by positioned reads (no shared cursor).
struct ReadAt<'f> {
    file: &'f File,
    pos: u64,
}

impl Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = std::os::unix::fs::FileExt::read_at(self.file, buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// What the pages of one column chunk hold at most.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct ChunkPages {
    /// The largest declared uncompressed page.
    pub(super) largest: u64,
    /// The most uncompressed bytes per row (per value) of a data page.
    pub(super) per_row: u64,
}

/// Checks every page header of the column chunk at `start..start + len` of `file` against
/// `limit` (see the section's comment); `gzip`: its pages are gzip, inflated to check them.
pub(super) fn check_chunk(
    file: &File,
    (start, len): (u64, u64),
    gzip: bool,
    limit: u64,
) -> Result<ChunkPages, Refusal> {
    let end = start.saturating_add(len);
    let mut pos = start;
    let mut pages = ChunkPages::default();
    while pos < end {
        let mut at = io::BufReader::with_capacity(1 << 12, ReadAt { file, pos });
        let h = read_page_header(&mut at, limit)?;
        let header_len = at.get_ref().pos - at.buffer().len() as u64 - pos;
        let (uncompressed, compressed) = (h.uncompressed as u64, h.compressed as u64);
        let size = uncompressed.max(compressed);
        if size > limit {
            return Err(Refusal::TooLarge(format!(
                "a page of {size} bytes, more than the record limit of {limit} bytes \
                 (--max-record-bytes)"
            )));
        }
        let body = pos + header_len;
        if gzip && compressed > 0 {
            let levels = if h.kind == DATA_PAGE_V2 {
                h.levels as u64
            } else {
                0
            };
            let declared = uncompressed.saturating_sub(levels);
            // A page declaring no bytes has only NULLs: the reader does not inflate it.
            if declared > 0 && (h.kind != DATA_PAGE_V2 || h.compressed_values) {
                let values = ReadAt {
                    file,
                    pos: body.saturating_add(levels),
                }
                .take(compressed.saturating_sub(levels));
                check_gzip_page(values, declared)?;
            }
        }
        pages.largest = pages.largest.max(uncompressed);
        if h.kind != DICTIONARY_PAGE && h.rows > 0 {
            pages.per_row = pages.per_row.max(uncompressed.div_ceil(h.rows as u64));
        }
        pos = body.saturating_add(compressed);
    }
    Ok(pages)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Thrift compact encoding, for hand-made page headers.
    fn zz(v: i64) -> Vec<u8> {
        let mut u = ((v << 1) ^ (v >> 63)) as u64;
        let mut out = Vec::new();
        loop {
            if u < 0x80 {
                out.push(u as u8);
                return out;
            }
            out.push((u as u8 & 0x7f) | 0x80);
            u >>= 7;
        }
    }

    fn int_field(delta: u8, v: i64) -> Vec<u8> {
        let mut out = vec![(delta << 4) | ttype::I32];
        out.extend(zz(v));
        out
    }

    /// A page header: (type, uncompressed, compressed), rows in its data or dictionary page
    /// header, or a v2 header with (rows, level bytes, values compressed).
    fn header(kind: i64, sizes: (i64, i64), rows: i64, v2: Option<(i64, bool)>) -> Vec<u8> {
        let mut h = int_field(1, kind);
        h.extend(int_field(1, sizes.0));
        h.extend(int_field(1, sizes.1));
        match v2 {
            None => {
                let delta = if kind == DICTIONARY_PAGE { 4 } else { 2 };
                h.push((delta << 4) | ttype::STRUCT);
                h.extend(int_field(1, rows));
                h.extend(int_field(1, 0));
                h.push(0);
            }
            Some((levels, compressed)) => {
                h.push((5 << 4) | ttype::STRUCT);
                for v in [rows, 0, rows, 0, levels, 0] {
                    h.extend(int_field(1, v));
                }
                h.push(
                    (1 << 4)
                        | if compressed {
                            ttype::TRUE
                        } else {
                            ttype::FALSE
                        },
                );
                h.push(0);
            }
        }
        h.push(0);
        h
    }

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut e, data).unwrap();
        e.finish().unwrap()
    }

    fn temp_file(bytes: &[u8]) -> File {
        let path = std::env::temp_dir().join(format!(
            "sluice-unit-{}-{:?}.bin",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::write(&path, bytes).unwrap();
        let f = File::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        f
    }

    #[test]
    fn page_headers_give_their_sizes_and_unknown_fields_are_skipped() {
        let h = header(0, (1000, 300), 10, None);
        let got = read_page_header(&h[..], 1 << 20).unwrap();
        assert_eq!(
            (got.kind, got.uncompressed, got.compressed, got.rows),
            (0, 1000, 300, 10)
        );
        let got =
            read_page_header(&header(3, (900, 200), 7, Some((40, false)))[..], 1 << 20).unwrap();
        assert_eq!(
            (got.rows, got.levels, got.compressed_values),
            (7, 40, false)
        );
        // A crc, a binary field, a list and a nested struct, as later fields: skipped.
        let mut h = int_field(1, 0);
        h.extend(int_field(1, 64));
        h.extend(int_field(1, 32));
        h.extend(int_field(1, 12345));
        h.push((6 << 4) | ttype::BINARY);
        h.push(3);
        h.extend(b"abc");
        h.push((1 << 4) | ttype::LIST);
        h.push((3 << 4) | ttype::I32);
        h.extend([2, 4, 6]);
        h.push((1 << 4) | ttype::STRUCT);
        h.push((1 << 4) | ttype::BINARY);
        h.extend([2, b'x', b'y']);
        h.push(0);
        h.push(0);
        let got = read_page_header(&h[..], 1 << 20).unwrap();
        assert_eq!((got.uncompressed, got.compressed), (64, 32));
        // A binary field longer than the limit is refused without reading (or allocating) it.
        let mut h = int_field(1, 0);
        h.push((8 << 4) | ttype::BINARY);
        h.extend([0xff, 0xff, 0xff, 0xff, 0x0f]);
        let e = read_page_header(&h[..], 1 << 20).unwrap_err();
        assert!(
            matches!(&e, Refusal::Corrupt(m) if m.contains("a field of 4294967295 bytes")),
            "{e:?}"
        );
        // Truncated, or without its sizes.
        let h = header(0, (1000, 300), 10, None);
        assert!(read_page_header(&h[..5], 1 << 20).is_err());
        assert!(read_page_header(&[0u8][..], 1 << 20).is_err());
        // Nesting beyond reason.
        let mut h = vec![(9 << 4) | ttype::STRUCT];
        h.extend(std::iter::repeat_n((1 << 4) | ttype::STRUCT, 100));
        let e = read_page_header(&h[..], 1 << 20).unwrap_err();
        assert!(
            matches!(&e, Refusal::Corrupt(m) if m.contains("nested too deep")),
            "{e:?}"
        );
    }

    #[test]
    fn column_chunks_are_checked_page_by_page() {
        let values = vec![b'v'; 4000];
        let dict = gz(b"dictionary");
        let data = gz(&values);
        let mut chunk = header(DICTIONARY_PAGE, (10, dict.len() as i64), 1, None);
        chunk.extend(&dict);
        chunk.extend(header(0, (4000, data.len() as i64), 100, None));
        chunk.extend(&data);
        // A v2 page: 8 bytes of levels, uncompressed, then the gzip values.
        chunk.extend(header(
            3,
            (4008, 8 + data.len() as i64),
            50,
            Some((8, true)),
        ));
        chunk.extend([0u8; 8]);
        chunk.extend(&data);
        let f = temp_file(&chunk);
        let all = (0, chunk.len() as u64);
        assert_eq!(
            check_chunk(&f, all, true, 1 << 20),
            Ok(ChunkPages {
                largest: 4008,
                per_row: 81
            })
        );
        // A page declaring more than the limit, compressed or not.
        assert!(matches!(
            check_chunk(&f, all, true, 4000),
            Err(Refusal::TooLarge(m)) if m.contains("a page of 4008 bytes, more than the record limit of 4000")
        ));
        let mut big = header(0, (10, 1 << 30), 1, None);
        big.extend(b"short");
        let f = temp_file(&big);
        assert!(matches!(
            check_chunk(&f, (0, big.len() as u64), false, 1 << 20),
            Err(Refusal::TooLarge(_))
        ));
        // A gzip page that inflates past what it declares: corrupt, found while counting.
        let bomb = gz(&vec![0u8; 8 << 20]);
        let mut lying = header(0, (4000, bomb.len() as i64), 100, None);
        lying.extend(&bomb);
        let f = temp_file(&lying);
        assert!(matches!(
            check_chunk(&f, (0, lying.len() as u64), true, 1 << 20),
            Err(Refusal::Corrupt(m)) if m.contains("declares 4000 bytes and inflates to more")
        ));
        // Not gzip: not inflated (the reader checks snappy pages against their header itself).
        assert!(check_chunk(&f, (0, lying.len() as u64), false, 16 << 20).is_ok());
        // A chunk that claims more bytes than the file has.
        assert!(matches!(
            check_chunk(&f, (0, lying.len() as u64 + 100), true, 16 << 20),
            Err(Refusal::Corrupt(_))
        ));
    }
}
