//! The scanner under [`super::RecordReader`]: a state machine that cuts one chunk of bytes at a
//! time into the fields of the record being read, and the packed field positions it records.
//! It knows nothing of the stream (the reader feeds it chunks and owns the buffers) and never
//! allocates beyond what it is given: positions go into [`Fields`] (at most its cap kept), the
//! unescaped values of quoted fields with doubled quotes into the caller's data buffer.
//!
//! Invariant: one state per position in a record ([`State`]); a chunk ends only between two
//! bytes, so a record may span any number of chunks and every state resumes where the last
//! chunk left it.

use memchr::memchr2;

pub(super) const LF: u8 = b'\n';
pub(super) const CR: u8 = b'\r';

/// Flag bits kept in the top of [`FieldPos::start`].
const QUOTED_BIT: usize = 1 << (usize::BITS - 1);
const IN_DATA_BIT: usize = 1 << (usize::BITS - 2);
/// The position bits of [`FieldPos::start`]: positions must stay below it.
pub(super) const POS_MASK: usize = !(QUOTED_BIT | IN_DATA_BIT);

/// Where a field's value lives: a range of the raw record (unquoted fields,
/// and quoted fields without doubled quotes) or of the unescaped-value buffer
/// (quoted fields with doubled quotes). Flags are packed into `start`.
#[derive(Debug, Clone, Copy)]
pub(super) struct FieldPos {
    start: usize,
    end: usize,
}

impl FieldPos {
    pub(super) fn new(start: usize, end: usize, quoted: bool, in_data: bool) -> Self {
        debug_assert!(start <= end && end <= POS_MASK);
        let mut start = start;
        if quoted {
            start |= QUOTED_BIT;
        }
        if in_data {
            start |= IN_DATA_BIT;
        }
        FieldPos { start, end }
    }

    /// The value's range, in the data buffer (true) or in the raw record (false).
    #[inline]
    pub(super) fn range(self) -> (std::ops::Range<usize>, bool) {
        (
            self.start & POS_MASK..self.end,
            self.start & IN_DATA_BIT != 0,
        )
    }

    /// Whether the field was quoted.
    #[inline]
    pub(super) fn quoted(self) -> bool {
        self.start & QUOTED_BIT != 0
    }
}

/// The field positions of the record being read: the first `cap` are kept,
/// every one is counted.
#[derive(Debug)]
pub(super) struct Fields {
    pub(super) kept: Vec<FieldPos>,
    pub(super) count: usize,
    pub(super) cap: usize,
}

impl Fields {
    pub(super) fn push(&mut self, pos: FieldPos) {
        if self.kept.len() < self.cap {
            self.kept.push(pos);
        }
        self.count += 1;
    }

    pub(super) fn clear(&mut self) {
        self.kept.clear();
        self.count = 0;
    }
}

/// Where the scanner is inside a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the first byte of a field.
    FieldStart,
    /// Inside an unquoted field.
    Unquoted,
    /// Inside a quoted field.
    Quoted,
    /// Just after a quote inside a quoted field: either the first half of a
    /// doubled quote or the closing quote.
    QuoteSeen,
    /// After a closing quote and a CR: only LF may follow.
    QuoteCr,
}

/// Per-record parse state. Positions are offsets in the record's raw bytes:
/// those of earlier chunks are already in the raw buffer (`raw.len()` of
/// them), the current chunk follows.
#[derive(Debug)]
pub(super) struct Scanner {
    state: State,
    /// Position of the current field's first byte (its opening quote if
    /// quoted).
    field_start: usize,
    /// Position of the last quote seen in a quoted field.
    quote_pos: usize,
    /// The current quoted field had a doubled quote, so its value is being
    /// built in the data buffer from `data_start` on.
    escaped: bool,
    data_start: usize,
    /// LFs inside quoted fields of the current record.
    pub(super) newlines: u64,
    /// The record's terminator was CRLF.
    pub(super) crlf: bool,
}

/// The bytes that structure records: field delimiter, quote char, record terminator.
#[derive(Debug, Clone, Copy)]
pub(super) struct Syntax {
    pub(super) delimiter: u8,
    pub(super) quote: u8,
    pub(super) term: u8,
}

/// Result of scanning one chunk.
pub(super) struct Step {
    /// Bytes of the chunk that belong to the record (all of them unless the
    /// record ended inside the chunk).
    pub(super) consumed: usize,
    /// The record's terminator was found.
    pub(super) done: bool,
}

/// A bad byte after a closing quote: 1-based field index and the byte.
pub(super) struct BadAfterQuote {
    pub(super) column: usize,
    pub(super) byte: u8,
}

/// How the end of the stream ends the record being scanned ([`Scanner::finish`]).
pub(super) enum AtEnd {
    /// No byte of a record: the stream ended cleanly.
    Nothing,
    /// The record's last field is pushed.
    Record,
    /// Inside a quoted field.
    InQuotes,
    /// After a closing quote and a CR.
    AfterQuoteCr,
}

/// The chunk being scanned: the record's earlier bytes (`raw`), the chunk (`buf`), where the
/// chunk starts in the record (`base`), and the buffers the scan fills.
struct Chunk<'c> {
    raw: &'c [u8],
    buf: &'c [u8],
    base: usize,
    data: &'c mut Vec<u8>,
    fields: &'c mut Fields,
    syntax: Syntax,
}

/// What a state's step did: go on at a position of the chunk, or end this chunk's scan.
enum Next {
    At(usize),
    End(Step),
}

impl Chunk<'_> {
    /// The whole chunk belongs to the record, which goes on.
    fn more(&self) -> Next {
        Next::End(Step {
            consumed: self.buf.len(),
            done: false,
        })
    }
}

/// The record ends with the chunk's byte at `at` (its terminator).
fn ends_at(at: usize) -> Next {
    Next::End(Step {
        consumed: at + 1,
        done: true,
    })
}

impl Scanner {
    pub(super) fn new() -> Self {
        Scanner {
            state: State::FieldStart,
            field_start: 0,
            quote_pos: 0,
            escaped: false,
            data_start: 0,
            newlines: 0,
            crlf: false,
        }
    }

    pub(super) fn reset(&mut self) {
        *self = Scanner::new();
    }

    /// Pushes the current quoted field, whose closing quote is at
    /// `self.quote_pos`.
    fn push_quoted(&self, data: &[u8], fields: &mut Fields) {
        fields.push(if self.escaped {
            FieldPos::new(self.data_start, data.len(), true, true)
        } else {
            FieldPos::new(self.field_start + 1, self.quote_pos, true, false)
        });
    }

    /// Scans `buf`, the next chunk of the record whose earlier bytes are
    /// `raw`, until the record's terminator or the end of the chunk.
    pub(super) fn scan(
        &mut self,
        raw: &[u8],
        buf: &[u8],
        data: &mut Vec<u8>,
        fields: &mut Fields,
        syntax: Syntax,
    ) -> Result<Step, BadAfterQuote> {
        let mut c = Chunk {
            raw,
            buf,
            base: raw.len(),
            data,
            fields,
            syntax,
        };
        let mut i = 0;
        loop {
            let next = match self.state {
                State::FieldStart => self.field_start(&c, i),
                State::Unquoted => self.unquoted(&mut c, i),
                State::Quoted => self.quoted(&mut c, i),
                State::QuoteSeen => self.quote_seen(&mut c, i)?,
                State::QuoteCr => self.quote_cr(&mut c, i)?,
            };
            match next {
                Next::At(j) => i = j,
                Next::End(step) => return Ok(step),
            }
        }
    }

    /// At the first byte of a field: quoted or not.
    #[inline]
    fn field_start(&mut self, c: &Chunk<'_>, i: usize) -> Next {
        if i == c.buf.len() {
            return c.more();
        }
        self.field_start = c.base + i;
        if c.buf[i] == c.syntax.quote {
            self.state = State::Quoted;
            self.escaped = false;
            Next::At(i + 1)
        } else {
            self.state = State::Unquoted;
            Next::At(i)
        }
    }

    /// Inside an unquoted field: up to the delimiter or the terminator.
    #[inline]
    fn unquoted(&mut self, c: &mut Chunk<'_>, i: usize) -> Next {
        let Syntax {
            delimiter, term, ..
        } = c.syntax;
        // A quote char inside an unquoted field is plain data, so
        // only the delimiter and LF end the run.
        let Some(j) = memchr2(delimiter, term, &c.buf[i..]) else {
            return c.more();
        };
        let p = i + j;
        let mut end = c.base + p;
        if c.buf[p] == delimiter {
            c.fields
                .push(FieldPos::new(self.field_start, end, false, false));
            self.state = State::FieldStart;
            return Next::At(p + 1);
        }
        if term == LF && end > self.field_start && byte_at(c.raw, c.buf, end - 1) == CR {
            end -= 1;
            self.crlf = true;
        }
        c.fields
            .push(FieldPos::new(self.field_start, end, false, false));
        ends_at(p)
    }

    /// Inside a quoted field: up to the next quote; terminators are data.
    #[inline]
    fn quoted(&mut self, c: &mut Chunk<'_>, i: usize) -> Next {
        let Syntax { quote, term, .. } = c.syntax;
        let Some(j) = memchr2(quote, term, &c.buf[i..]) else {
            if self.escaped {
                c.data.extend_from_slice(&c.buf[i..]);
            }
            return c.more();
        };
        let p = i + j;
        if c.buf[p] == term {
            self.newlines += 1;
            if self.escaped {
                c.data.extend_from_slice(&c.buf[i..=p]);
            }
        } else {
            if self.escaped {
                c.data.extend_from_slice(&c.buf[i..p]);
            }
            self.quote_pos = c.base + p;
            self.state = State::QuoteSeen;
        }
        Next::At(p + 1)
    }

    /// After a quote in a quoted field: a doubled quote, or the field's end.
    #[inline]
    fn quote_seen(&mut self, c: &mut Chunk<'_>, i: usize) -> Result<Next, BadAfterQuote> {
        if i == c.buf.len() {
            return Ok(c.more());
        }
        let Syntax {
            delimiter,
            quote,
            term,
        } = c.syntax;
        let b = c.buf[i];
        if b == quote {
            // Doubled quote: one quote char of data.
            if self.escaped {
                c.data.push(quote);
            } else {
                // First one in this field: move the value so far,
                // plus one quote, into the data buffer.
                self.escaped = true;
                self.data_start = c.data.len();
                copy_range(c.raw, c.buf, self.field_start + 1, c.base + i, c.data);
            }
            self.state = State::Quoted;
            Ok(Next::At(i + 1))
        } else if b == delimiter {
            self.push_quoted(c.data, c.fields);
            self.state = State::FieldStart;
            Ok(Next::At(i + 1))
        } else if b == term {
            self.push_quoted(c.data, c.fields);
            Ok(ends_at(i))
        } else if b == CR && term == LF {
            self.state = State::QuoteCr;
            Ok(Next::At(i + 1))
        } else {
            Err(BadAfterQuote {
                column: c.fields.count + 1,
                byte: b,
            })
        }
    }

    /// After a closing quote and a CR: only LF may follow.
    #[inline]
    fn quote_cr(&mut self, c: &mut Chunk<'_>, i: usize) -> Result<Next, BadAfterQuote> {
        if i == c.buf.len() {
            return Ok(c.more());
        }
        if c.buf[i] != LF {
            return Err(BadAfterQuote {
                column: c.fields.count + 1,
                byte: CR,
            });
        }
        self.push_quoted(c.data, c.fields);
        self.crlf = true;
        Ok(ends_at(i))
    }

    /// Ends the record at the end of the stream, the record's bytes being the first `end` of
    /// the raw buffer: pushes its last field, if the state allows one.
    pub(super) fn finish(&self, end: usize, data: &[u8], fields: &mut Fields) -> AtEnd {
        match self.state {
            State::FieldStart if end == 0 => return AtEnd::Nothing,
            State::FieldStart => fields.push(FieldPos::new(end, end, false, false)),
            State::Unquoted => fields.push(FieldPos::new(self.field_start, end, false, false)),
            State::QuoteSeen => self.push_quoted(data, fields),
            State::Quoted => return AtEnd::InQuotes,
            State::QuoteCr => return AtEnd::AfterQuoteCr,
        }
        AtEnd::Record
    }
}

/// The byte at record position `pos`, which lies in `raw` or in `buf` (which
/// continues `raw`).
#[inline]
fn byte_at(raw: &[u8], buf: &[u8], pos: usize) -> u8 {
    if pos < raw.len() {
        raw[pos]
    } else {
        buf[pos - raw.len()]
    }
}

/// Appends record positions `from..to` (spanning `raw` then `buf`) to `out`.
fn copy_range(raw: &[u8], buf: &[u8], from: usize, to: usize, out: &mut Vec<u8>) {
    let base = raw.len();
    if from < base {
        out.extend_from_slice(&raw[from..to.min(base)]);
    }
    if to > base {
        out.extend_from_slice(&buf[from.max(base) - base..to - base]);
    }
}
