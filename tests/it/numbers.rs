//! Numbers in MongoDB documents reach PostgreSQL as the digits the document holds: a bare JSON
//! number (relaxed extended JSON, as most producers write) never goes through a binary float.
//! Each column is compared with what PostgreSQL's own text input stores for the same digits
//! (`SELECT '<digits>'::numeric`), in flattened columns, `paths`, a sub-document and an array
//! written to `jsonb`, and the rescue column; by the direct path (a full load into an empty
//! table, binary `COPY`) and by the staged path (a CDC file).

use crate::support::{cdc_name, TestBed};
use sluice_worker::load::LoadOutcome;

/// A column, its type and a number as the document writes it.
struct Case {
    column: &'static str,
    ty: &'static str,
    json: &'static str,
}

const fn case(column: &'static str, ty: &'static str, json: &'static str) -> Case {
    Case { column, ty, json }
}

const CASES: [Case; 17] = [
    case("past_u64", "numeric", "18446744073709551617"),
    case(
        "past_i128",
        "numeric",
        "-340282366920938463463374607431768211457",
    ),
    case("dec30", "numeric", "1234567890.12345678901234567890"),
    case("dec_tail", "numeric", "0.100000000000000000000000000001"),
    case("trailing_zero", "numeric", "1.50"),
    case("neg_zero_num", "numeric", "-0.0"),
    case("exp_num", "numeric", "1.5E+40"),
    case("point3", "double precision", "0.30000000000000004"),
    case("min_normal", "double precision", "2.2250738585072014e-308"),
    case("max_double", "double precision", "1.7976931348623157e308"),
    case("seventeen", "double precision", "9007199254740993"),
    case("neg_zero_dbl", "double precision", "-0"),
    case("exp_dbl", "double precision", "1E-7"),
    case("past_2_53", "bigint", "9007199254740993"),
    case("max_int8", "bigint", "-9223372036854775808"),
    case("neg_zero_int", "bigint", "-0"),
    case("big_int8", "bigint", "1152921504606846977"),
];

/// Whether the direct path's binary encoder takes the case (`worker/src/encode/binary/` sends
/// numerics with an exponent and 19-digit integers to text, and one such value takes the whole
/// file with it).
fn strict(c: &Case) -> bool {
    match c.ty {
        "numeric" => !c.json.contains(['e', 'E']),
        "bigint" => c.json.trim_start_matches('-').len() <= 18,
        _ => true,
    }
}

/// `"col":number,...` for the cases.
fn fields(cases: &[&Case]) -> String {
    let v: Vec<String> = cases
        .iter()
        .map(|c| format!("\"{}\":{}", c.column, c.json))
        .collect();
    v.join(",")
}

/// `[number,...]` for the cases.
fn list(cases: &[&Case]) -> String {
    let v: Vec<&str> = cases.iter().map(|c| c.json).collect();
    format!("[{}]", v.join(","))
}

fn create_table(name: &str, cases: &[&Case]) -> String {
    let cols: Vec<String> = cases
        .iter()
        .map(|c| format!("{} {}", c.column, c.ty))
        .collect();
    format!(
        "CREATE TABLE {{s}}.{name} (_id text PRIMARY KEY, {}, sub jsonb, extra jsonb)",
        cols.join(", ")
    )
}

/// The loaded row as text, and what PostgreSQL's own input makes of the same digits (`sub` and
/// `extra` given as the JSON text the document holds for them).
async fn compare(tb: &TestBed, table: &str, cases: &[&Case], sub: &str, extra: &str) {
    let cols: Vec<String> = cases
        .iter()
        .map(|c| format!("{}::text", c.column))
        .collect();
    let got = tb
        .rows(&format!(
            "SELECT {}, sub::text, extra::text FROM {{s}}.{table}",
            cols.join(", ")
        ))
        .await;
    let lit = |v: &str| v.replace('\'', "''");
    let want: Vec<String> = cases
        .iter()
        .map(|c| format!("'{}'::{}::text", c.json, c.ty))
        .collect();
    let want = tb
        .rows(&format!(
            "SELECT {}, '{}'::jsonb::text, '{}'::jsonb::text",
            want.join(", "),
            lit(sub),
            lit(extra)
        ))
        .await;
    assert_eq!(got.len(), 1, "{table}: {got:?}");
    for (i, c) in cases.iter().enumerate() {
        assert_eq!(
            got[0][i], want[0][i],
            "{table}.{} from {}",
            c.column, c.json
        );
    }
    let n = cases.len();
    assert_eq!(got[0][n], want[0][n], "{table}.sub");
    assert_eq!(got[0][n + 1], want[0][n + 1], "{table}.extra");
}

/// One CSV field, quoted the way DMS quotes.
fn q(v: &str) -> String {
    format!("\"{}\"", v.replace('"', "\"\""))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_json_numbers_load_as_their_digits_never_through_a_float() {
    let tb = TestBed::new("numbers").await;
    let all: Vec<&Case> = CASES.iter().collect();
    let strict_cases: Vec<&Case> = CASES.iter().filter(|c| strict(c)).collect();
    tb.sql(&create_table("flat", &strict_cases)).await;
    tb.sql(&create_table("nested", &all)).await;
    let paths: Vec<String> = all
        .iter()
        .map(|c| format!("{0} = \"sub.{0}\"", c.column))
        .collect();
    let rules = format!(
        "[tables.\"{s}.flat\".document]\nflatten = \"auto\"\nrescue = \"extra\"\n\
         [tables.\"{s}.nested\".document]\npaths = {{ {}, sub = \"sub\" }}\nrescue = \"extra\"\n",
        paths.join(", "),
        s = tb.schema
    );
    let ctx = tb.load_context(&rules).await;

    // Flattened top-level fields, by the direct path; the sub-document and an array (rescued).
    let sub = format!(
        "{{{},\"list\":{}}}",
        fields(&strict_cases),
        list(&strict_cases)
    );
    let extra = format!("{{\"more\":{}}}", list(&strict_cases));
    let doc = format!(
        "{{\"_id\":\"a\",{},\"sub\":{sub},\"more\":{}}}",
        fields(&strict_cases),
        list(&strict_cases)
    );
    let key = tb.key("flat/LOAD00000001.csv");
    match tb
        .put_and_load(&ctx, &key, &format!("a,{}\n", q(&doc)))
        .await
    {
        LoadOutcome::Loaded(stats) => assert!(stats.direct, "the direct path: {stats:?}"),
        other => panic!("{key}: {other:?}"),
    }
    compare(&tb, "flat", &strict_cases, &sub, &extra).await;

    // `paths` into a sub-document, the sub-document itself, and the rescue column (the
    // top-level numbers no column takes), by the staged path.
    let sub = format!("{{{},\"list\":{}}}", fields(&all), list(&all));
    let extra = format!("{{{},\"more\":{}}}", fields(&all), list(&all));
    let doc = format!(
        "{{\"_id\":\"b\",{},\"sub\":{sub},\"more\":{}}}",
        fields(&all),
        list(&all)
    );
    let key = tb.key(&format!("nested/{}", cdc_name(1_000)));
    match tb
        .put_and_load(&ctx, &key, &format!("I,b,{}\n", q(&doc)))
        .await
    {
        LoadOutcome::Loaded(stats) => assert!(!stats.direct, "a CDC file: {stats:?}"),
        other => panic!("{key}: {other:?}"),
    }
    compare(&tb, "nested", &all, &sub, &extra).await;
}
