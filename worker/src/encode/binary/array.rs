//! One-dimensional arrays in binary, as `array_recv` reads them: dimensions (1, or 0 for `{}`),
//! a has-nulls flag, the element type's oid, the length and lower bound (1), then each element
//! as its own field (length -1 for NULL). Pure; no IO. The strict-grammar rule of [`super`]
//! holds for the array and for each element, which [`super::encode`] writes.
//!
//! The text is PostgreSQL's array output (`array_out`) for one dimension: `{` elements
//! separated by `,` `}`. An element is unquoted (no whitespace, `"`, `\`, `{`, `}` or `,`;
//! `NULL` in any case is SQL NULL) or double-quoted, where `\` escapes the next byte (`"NULL"`
//! is the string). Explicit bounds (`[0:1]={1,2}`), several dimensions (`{{1},{2}}`), spaces
//! around elements and other spellings `array_in` takes are left to PostgreSQL.

use super::{encode as element, null, BinType};

/// Appends the field of the array text `v` whose elements are `elem` (oid `oid`); false
/// (nothing appended) outside the grammar or when an element is outside its own.
pub(super) fn encode(elem: BinType, oid: u32, v: &[u8], out: &mut Vec<u8>) -> bool {
    let start = out.len();
    let written = write(elem, oid, v, out).is_some();
    if !written {
        out.truncate(start);
    }
    written
}

fn write(elem: BinType, oid: u32, v: &[u8], out: &mut Vec<u8>) -> Option<()> {
    let body = v.strip_prefix(b"{")?.strip_suffix(b"}")?;
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    if body.is_empty() {
        // `{}`: no dimensions, no nulls.
        out.extend_from_slice(&[0; 8]);
        out.extend_from_slice(&oid.to_be_bytes());
        let len = out.len() - start - 4;
        patch(out, start, len);
        return Some(());
    }
    out.extend_from_slice(&1_i32.to_be_bytes());
    let flags = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&oid.to_be_bytes());
    let length = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&1_i32.to_be_bytes());
    let (mut count, mut has_null) = (0_usize, false);
    let mut rest = body;
    loop {
        rest = if let Some(quoted) = rest.strip_prefix(b"\"") {
            let (content, after, escaped) = string(quoted)?;
            let ok = if escaped {
                element(elem, &unescape(content), out)
            } else {
                element(elem, content, out)
            };
            ok.then_some(after)?
        } else {
            // One pass to the next `,`, refusing what an unquoted element may not hold.
            let mut end = 0;
            while let Some(&b) = rest.get(end) {
                match b {
                    b',' => break,
                    b'"' | b'\\' | b'{' | b'}' | b' ' | b'\t' | b'\n' | b'\r' | b'\x0b'
                    | b'\x0c' => return None,
                    _ => end += 1,
                }
            }
            let item = &rest[..end];
            if item.is_empty() {
                return None;
            }
            if item.eq_ignore_ascii_case(b"NULL") {
                null(out);
                has_null = true;
            } else if !element(elem, item, out) {
                return None;
            }
            &rest[end..]
        };
        count += 1;
        match rest.split_first() {
            None => break,
            Some((b',', after)) => rest = after,
            Some(_) => return None,
        }
    }
    patch(out, flags, usize::from(has_null));
    patch(out, length, count);
    let len = out.len() - start - 4;
    patch(out, start, len);
    Some(())
}

/// The content of a quoted element (after its opening `"`) up to its closing `"`, the rest
/// after it, and whether it holds a `\` escape.
fn string(v: &[u8]) -> Option<(&[u8], &[u8], bool)> {
    let mut escaped = false;
    let mut i = 0;
    while i < v.len() {
        match v[i] {
            b'"' => return Some((&v[..i], &v[i + 1..], escaped)),
            b'\\' => {
                escaped = true;
                i += 2;
            }
            _ => i += 1,
        }
    }
    None
}

/// A quoted element's content with each `\x` made `x` (only for elements that have one).
fn unescape(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len());
    let mut bytes = content.iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'\\' => out.extend(bytes.next()),
            _ => out.push(b),
        }
    }
    out
}

/// Overwrites the 4 bytes at `at` with `n` as a big-endian `int4`.
fn patch(out: &mut [u8], at: usize, n: usize) {
    out[at..at + 4].copy_from_slice(&(n as i32).to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::super::ColType;
    use super::*;

    const INT4: u32 = 23;
    const TEXT: u32 = 25;

    fn arr(elem: BinType, oid: u32, v: &str) -> Option<Vec<u8>> {
        let mut out = vec![7];
        let ok = super::super::encode_column(ColType::Array { elem, oid }, v.as_bytes(), &mut out);
        assert_eq!(out.len() > 1, ok, "{v}: appended only when encoded");
        ok.then(|| out[1..].to_vec())
    }

    fn be(ints: &[i32]) -> Vec<u8> {
        ints.iter().flat_map(|i| i.to_be_bytes()).collect()
    }

    #[test]
    fn one_dimension_with_oid_bounds_and_elements() {
        let mut want = be(&[44, 1, 0, INT4 as i32, 3, 1]);
        for n in [1, -2, 300] {
            want.extend(be(&[4, n]));
        }
        assert_eq!(arr(BinType::Int4, INT4, "{1,-2,300}"), Some(want));
        // NULL in any case unquoted is SQL NULL and sets the flag.
        let want = [be(&[32, 1, 1, INT4 as i32, 2, 1, -1, 4, 5])].concat();
        assert_eq!(arr(BinType::Int4, INT4, "{null,5}"), Some(want));
        // `{}` has no dimensions.
        assert_eq!(
            arr(BinType::Int4, INT4, "{}"),
            Some(be(&[12, 0, 0, INT4 as i32]))
        );
    }

    #[test]
    fn quoted_elements_unescape_and_a_quoted_null_is_a_string() {
        let text = |v: &str| {
            let b = arr(BinType::Text, TEXT, v)?;
            let mut items = Vec::new();
            let mut rest = &b[24..];
            while !rest.is_empty() {
                let n = i32::from_be_bytes(rest[..4].try_into().unwrap());
                if n < 0 {
                    items.push(None);
                    rest = &rest[4..];
                } else {
                    let n = n as usize;
                    items.push(Some(String::from_utf8(rest[4..4 + n].to_vec()).unwrap()));
                    rest = &rest[4 + n..];
                }
            }
            Some(items)
        };
        let s = |v: &str| Some(v.to_owned());
        assert_eq!(
            text(r#"{a,"c d","NULL",NULL,"","q\"\\x",é}"#),
            Some(vec![
                s("a"),
                s("c d"),
                s("NULL"),
                None,
                s(""),
                s("q\"\\x"),
                s("é")
            ])
        );
        assert_eq!(text(r#"{"{}",","}"#), Some(vec![s("{}"), s(",")]));
        for v in [
            "{a, b}",
            "{ a}",
            "{a }",
            "{a,}",
            "{,a}",
            "{a,,b}",
            "{{a},{b}}",
            "[0:1]={a,b}",
            "{a\\,b}",
            r#"{"a"b}"#,
            r#"{"a}"#,
            r#"{a"b"}"#,
            "{a",
            "a}",
            "",
            "{\"a\"\"b\"}",
        ] {
            assert_eq!(text(v), None, "{v}");
        }
    }

    #[test]
    fn every_element_keeps_its_own_grammar() {
        assert!(arr(BinType::Int2, 21, "{1,32768}").is_none());
        assert!(arr(BinType::Numeric(Some((5, 2))), 1700, "{1.005}").is_none());
        assert!(arr(BinType::Numeric(Some((5, 2))), 1700, "{1.05,NULL}").is_some());
        assert!(arr(BinType::Bytea, 17, r#"{"\\x0102"}"#).is_some());
        assert!(arr(BinType::Bytea, 17, r#"{"\\x01x2"}"#).is_none());
        assert!(arr(BinType::Interval, 1186, r#"{"1 day",00:00:01}"#).is_some());
        assert!(arr(BinType::Interval, 1186, r#"{"@ 1 day"}"#).is_none());
        let jsonb = arr(BinType::Jsonb, 3802, r#"{"{\"a\": 1}"}"#).unwrap();
        assert_eq!(
            jsonb[24..],
            [0, 0, 0, 9, 1, b'{', b'"', b'a', b'"', b':', b' ', b'1', b'}']
        );
    }
}
