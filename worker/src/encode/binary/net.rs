//! Network and identifier types in binary: `uuid`, `macaddr`, `inet` and `cidr`, as their
//! `*_send` functions write them. Pure; no IO. The strict-grammar rule of [`super`] holds.

use super::{field, hex_digit};

/// The canonical 36-character form, as 16 bytes.
pub(super) fn uuid(v: &[u8]) -> Option<[u8; 16]> {
    if v.len() != 36 || [8, 13, 18, 23].iter().any(|&i| v[i] != b'-') {
        return None;
    }
    let mut out = [0_u8; 16];
    let mut hex = v.iter().filter(|&&b| b != b'-');
    for byte in &mut out {
        let a = hex_digit(*hex.next()?)?;
        let b = hex_digit(*hex.next()?)?;
        *byte = a << 4 | b;
    }
    Some(out)
}

/// `xx:xx:xx:xx:xx:xx` (hex digits, either case) as six bytes. PostgreSQL's other spellings
/// (`-` or `.` separators, `xxxxxx:xxxxxx`, no separators) are left to it.
pub(super) fn macaddr(v: &[u8]) -> Option<[u8; 6]> {
    if v.len() != 17 || [2, 5, 8, 11, 14].iter().any(|&i| v[i] != b':') {
        return None;
    }
    let mut out = [0_u8; 6];
    for (byte, pair) in out.iter_mut().zip(v.chunks(3)) {
        *byte = hex_digit(pair[0])? << 4 | hex_digit(pair[1])?;
    }
    Some(out)
}

/// PostgreSQL's address families in `inet` and `cidr` (`PGSQL_AF_INET`, `PGSQL_AF_INET6`).
const PGSQL_AF_INET: u8 = 2;
const PGSQL_AF_INET6: u8 = 3;

/// An `inet` (or `cidr`) field in `inet_send`'s form: family, bits, the cidr flag, address
/// length, address. Like `network_in`, a text with a `:` is IPv6 ([`ipv6`]), else IPv4
/// ([`ipv4`]). A `cidr` with bits set right of its mask, which text input refuses, is left to
/// PostgreSQL so that it fails with the same error. False (nothing appended) for anything
/// outside the grammars.
pub(super) fn inet(v: &[u8], cidr: bool, out: &mut Vec<u8>) -> bool {
    let Ok(s) = std::str::from_utf8(v) else {
        return false;
    };
    if s.contains(':') {
        ipv6(s, cidr).map(|b| field(out, &b)).is_some()
    } else {
        ipv4(s, cidr).map(|b| field(out, &b)).is_some()
    }
}

/// Dotted-quad IPv4 with an optional `/n` (0 to 32; 32 without it), each number without
/// leading zeros. PostgreSQL's other spellings (`10.1`, `010.0.0.1`, `1.2.3.4/024`, spaces)
/// are left to it.
fn ipv4(s: &str, cidr: bool) -> Option<[u8; 8]> {
    let (addr, bits) = match s.split_once('/') {
        Some((a, n)) => (a, decimal(n).filter(|&n| n <= 32)?),
        None => (s, 32),
    };
    let mut out = [PGSQL_AF_INET, bits as u8, u8::from(cidr), 4, 0, 0, 0, 0];
    let octets: [u8; 4] = quad(addr)?;
    out[4..].copy_from_slice(&octets);
    let host = u32::from_be_bytes(octets);
    let mask = u32::MAX.checked_shr(bits).unwrap_or(0);
    (!(cidr && host & mask != 0)).then_some(out)
}

/// Exactly four decimal octets without leading zeros.
fn quad(addr: &str) -> Option<[u8; 4]> {
    let mut out = [0_u8; 4];
    let mut octets = addr.split('.');
    for byte in &mut out {
        *byte = u8::try_from(decimal(octets.next()?)?).ok()?;
    }
    octets.next().is_none().then_some(out)
}

/// IPv6 as RFC 4291 writes it (RFC 5952's canonical form among them): eight groups of one to
/// four hex digits (either case) separated by `:`, or fewer with one `::` standing for at least
/// one group of zeros, the last two groups optionally a dotted quad (`::ffff:1.2.3.4`), then
/// an optional `/n` (0 to 128, no leading zeros), as `inet_net_pton_ipv6` reads it. Its other
/// readings (a quad of fewer than four numbers, a zero-filled `::` standing for no group) and
/// anything else (zone ids `%eth0`, brackets, spaces) are left to PostgreSQL.
fn ipv6(s: &str, cidr: bool) -> Option<[u8; 20]> {
    let (addr, bits) = match s.split_once('/') {
        Some((a, n)) => (a, decimal(n).filter(|&n| n <= 128)?),
        None => (s, 128),
    };
    let mut groups = [0_u16; 8];
    match addr.find("::") {
        None => {
            if fill(addr, &mut groups, true)? != 8 {
                return None;
            }
        }
        Some(i) => {
            let (head, tail) = (&addr[..i], &addr[i + 2..]);
            if tail.contains("::") || tail.starts_with(':') {
                return None;
            }
            let n = if head.is_empty() {
                0
            } else {
                fill(head, &mut groups, false)?
            };
            let mut back = [0_u16; 8];
            let m = if tail.is_empty() {
                0
            } else {
                fill(tail, &mut back, true)?
            };
            // `::` stands for one group at least.
            if n + m > 7 {
                return None;
            }
            groups[8 - m..].copy_from_slice(&back[..m]);
        }
    }
    let address = groups.iter().fold(0_u128, |a, &g| a << 16 | u128::from(g));
    let mask = u128::MAX.checked_shr(bits).unwrap_or(0);
    if cidr && address & mask != 0 {
        return None;
    }
    let mut out = [0_u8; 20];
    out[..4].copy_from_slice(&[PGSQL_AF_INET6, bits as u8, u8::from(cidr), 16]);
    out[4..].copy_from_slice(&address.to_be_bytes());
    Some(out)
}

/// Reads `:`-separated groups of one to four hex digits into `groups` from the start, the
/// last one optionally a dotted quad (two groups) when `last` says this part ends the
/// address; the number of groups read, None if a group is empty or malformed or there are
/// more than eight.
fn fill(part: &str, groups: &mut [u16; 8], last: bool) -> Option<usize> {
    let mut n = 0;
    let mut tokens = part.split(':').peekable();
    while let Some(token) = tokens.next() {
        if last && tokens.peek().is_none() && token.contains('.') {
            let q = quad(token)?;
            *groups.get_mut(n)? = u16::from_be_bytes([q[0], q[1]]);
            *groups.get_mut(n + 1)? = u16::from_be_bytes([q[2], q[3]]);
            return Some(n + 2);
        }
        if token.is_empty() || token.len() > 4 {
            return None;
        }
        let mut g = 0_u16;
        for b in token.bytes() {
            g = g << 4 | u16::from(hex_digit(b)?);
        }
        *groups.get_mut(n)? = g;
        n += 1;
    }
    Some(n)
}

/// `0` or `[1-9][0-9]{0,2}`.
fn decimal(d: &str) -> Option<u32> {
    let plain = !d.is_empty() && d.len() <= 3 && d.bytes().all(|b| b.is_ascii_digit());
    (plain && (d == "0" || !d.starts_with('0'))).then(|| d.parse().ok())?
}

#[cfg(test)]
mod tests {
    use super::super::tests::enc;
    use super::super::{bin_type, BinType};

    #[test]
    fn macaddrs_as_six_bytes_in_the_colon_spelling_only() {
        assert_eq!(bin_type("macaddr"), Some(BinType::Macaddr));
        for t in ["macaddr8", "macaddr[]"] {
            assert_eq!(bin_type(t), None, "{t}");
        }
        assert_eq!(
            enc(BinType::Macaddr, "08:00:2b:01:02:03"),
            Some([0, 0, 0, 6, 0x08, 0x00, 0x2b, 0x01, 0x02, 0x03].to_vec())
        );
        assert_eq!(
            enc(BinType::Macaddr, "0A:bB:Cc:dd:EE:ff"),
            Some([0, 0, 0, 6, 0x0a, 0xbb, 0xcc, 0xdd, 0xee, 0xff].to_vec())
        );
        for v in [
            "08-00-2b-01-02-03",
            "08002b:010203",
            "08002b-010203",
            "0800.2b01.0203",
            "0800-2b01-0203",
            "08002b010203",
            "8:0:2b:1:2:3",
            "08:00:2b:01:02:03 ",
            " 08:00:2b:01:02:03",
            "08:00:2b:01:02:0g",
            "08:00:2b:01:02:03:04",
            "+8:00:2b:01:02:03",
            "",
        ] {
            assert_eq!(enc(BinType::Macaddr, v), None, "{v}");
        }
    }

    #[test]
    fn ipv4_inet_and_cidr_as_inet_send_writes_them() {
        assert_eq!(bin_type("inet"), Some(BinType::Inet));
        assert_eq!(bin_type("cidr"), Some(BinType::Cidr));
        assert_eq!(bin_type("inet[]"), None);
        let head = [0, 0, 0, 8];
        assert_eq!(
            enc(BinType::Inet, "1.2.3.4/24"),
            Some([&head[..], &[2, 24, 0, 4, 1, 2, 3, 4]].concat())
        );
        assert_eq!(
            enc(BinType::Inet, "255.255.255.255"),
            Some([&head[..], &[2, 32, 0, 4, 255, 255, 255, 255]].concat())
        );
        assert_eq!(
            enc(BinType::Inet, "0.0.0.0/0"),
            Some([&head[..], &[2, 0, 0, 4, 0, 0, 0, 0]].concat())
        );
        assert_eq!(
            enc(BinType::Cidr, "1.2.3.0/24"),
            Some([&head[..], &[2, 24, 1, 4, 1, 2, 3, 0]].concat())
        );
        assert_eq!(
            enc(BinType::Cidr, "10.0.0.0"),
            Some([&head[..], &[2, 32, 1, 4, 10, 0, 0, 0]].concat())
        );
        assert_eq!(
            enc(BinType::Cidr, "0.0.0.0/0"),
            Some([&head[..], &[2, 0, 1, 4, 0, 0, 0, 0]].concat())
        );
        // Bits right of the mask: a cidr is PostgreSQL's to refuse, an inet keeps them.
        assert_eq!(enc(BinType::Cidr, "1.2.3.4/24"), None);
        assert_eq!(enc(BinType::Cidr, "128.0.0.0/0"), None);
        assert!(enc(BinType::Inet, "128.0.0.0/0").is_some());
        for v in [
            "1.2.3.256",
            "1.2.3",
            "10.1",
            "1.2.3.4.5",
            "010.0.0.1",
            "1.2.3.4/024",
            "1.2.3.4/33",
            "1.2.3.4/",
            "1.2.3.4/-1",
            "1.2.3.4/+8",
            "1..3.4",
            " 1.2.3.4",
            "1.2.3.4 ",
            "1.2.3.4/24/8",
            "",
        ] {
            assert_eq!(enc(BinType::Inet, v), None, "{v}");
            assert_eq!(enc(BinType::Cidr, v), None, "{v}");
        }
    }

    #[test]
    fn ipv6_inet_and_cidr_as_inet_send_writes_them() {
        let v6 = |t: BinType, v: &str| {
            enc(t, v).map(|b| {
                assert_eq!(b[..4], [0, 0, 0, 20]);
                assert_eq!(b[4], 3);
                assert_eq!(b[6], u8::from(t == BinType::Cidr));
                assert_eq!(b[7], 16);
                (b[5], u128::from_be_bytes(b[8..].try_into().unwrap()))
            })
        };
        let inet = |v: &str| v6(BinType::Inet, v);
        assert_eq!(inet("::1"), Some((128, 1)));
        assert_eq!(inet("::"), Some((128, 0)));
        assert_eq!(inet("::/0"), Some((0, 0)));
        assert_eq!(
            inet("2001:db8::1/64"),
            Some((64, 0x2001_0db8_0000_0000_0000_0000_0000_0001))
        );
        assert_eq!(
            inet("2001:DB8:0:0:0:0:0:1"),
            Some((128, 0x2001_0db8_0000_0000_0000_0000_0000_0001))
        );
        assert_eq!(inet("1::"), Some((128, 1 << 112)));
        assert_eq!(
            inet("1:2:3:4:5:6:7::"),
            Some((128, 0x0001_0002_0003_0004_0005_0006_0007_0000))
        );
        assert_eq!(
            inet("::2:3:4:5:6:7:8"),
            Some((128, 0x0000_0002_0003_0004_0005_0006_0007_0008))
        );
        assert_eq!(inet("::ffff:1.2.3.4"), Some((128, 0xffff_0102_0304)));
        assert_eq!(inet("::ffff:1.2.3.4/120"), Some((120, 0xffff_0102_0304)));
        assert_eq!(
            inet("1:2:3:4:5:6:1.2.3.4"),
            Some((128, 0x0001_0002_0003_0004_0005_0006_0102_0304))
        );
        assert_eq!(
            v6(BinType::Cidr, "2001:db8::/32"),
            Some((32, 0x2001_0db8 << 96))
        );
        // Bits right of the mask: a cidr is PostgreSQL's to refuse, an inet keeps them.
        assert_eq!(v6(BinType::Cidr, "2001:db8::1/64"), None);
        assert_eq!(v6(BinType::Cidr, "::1/127"), None);
        for v in [
            ":1::",
            "1::2::3",
            ":::",
            "1:::2",
            "::1:",
            "1:2:3:4:5:6:7:8::",
            "::1:2:3:4:5:6:7:8",
            "1:2:3:4:5:6:7",
            "1:2:3:4:5:6:7:8:9",
            "12345::",
            "::g",
            "::ffff:1.2.3",
            "::ffff:01.2.3.4",
            "::1.2.3.4:1",
            "1:2:3:4:5:6:7:1.2.3.4",
            "::1/129",
            "::1/064",
            "::1/",
            "fe80::1%eth0",
            "[::1]",
            " ::1",
            "::1 ",
        ] {
            assert_eq!(enc(BinType::Inet, v), None, "{v}");
            assert_eq!(enc(BinType::Cidr, v), None, "{v}");
        }
    }
}
