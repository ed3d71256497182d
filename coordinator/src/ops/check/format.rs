//! The human form of a [`Report`]: one line per finding, then a summary line.

use super::{Finding, Level, Report};
use std::fmt::Write;

/// Control characters escaped: names from keys are untrusted, and this goes to a terminal.
fn printable(s: &str) -> String {
    if s.chars().any(char::is_control) {
        s.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect()
    } else {
        s.to_owned()
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The human table: one line per finding (a table that fits gets an `ok` line), then the
/// summary line.
pub fn format(r: &Report) -> String {
    let mut rows: Vec<[String; 5]> = Vec::new();
    for t in &r.tables {
        let mine: Vec<&Finding> = r.findings.iter().filter(|f| f.table == t.table).collect();
        if mine.iter().all(|f| f.level == Level::Note) && t.errors == 0 {
            rows.push([
                printable(&t.table),
                printable(&t.target),
                "ok".into(),
                "-".into(),
                "the rules fit".into(),
            ]);
        }
        for f in mine {
            rows.push([
                printable(&f.table),
                printable(&f.target),
                f.level.as_str().into(),
                f.rule.clone(),
                printable(&f.message),
            ]);
        }
    }
    let head = ["TABLE", "TARGET", "LEVEL", "RULE", "MESSAGE"];
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].chars().count())
            .chain([head[i].len()])
            .max()
            .unwrap_or(0)
    };
    let w: Vec<usize> = (0..4).map(width).collect();
    let mut out = String::new();
    let mut line = |cells: [&str; 5]| {
        let _ = writeln!(
            out,
            "{:<w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {}",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            cells[4],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3]
        );
    };
    line(head);
    for r in &rows {
        line([&r[0], &r[1], &r[2], &r[3], &r[4]]);
    }
    let fit = r.tables.iter().filter(|t| t.errors == 0).count();
    let _ = writeln!(
        out,
        "checked {} as role {}: {} fit; {}, {}, {}",
        plural(r.tables.len(), "table", "tables"),
        printable(&r.role),
        fit,
        plural(r.errors, "error", "errors"),
        plural(r.warnings, "warning", "warnings"),
        plural(r.notes, "note", "notes"),
    );
    out
}
