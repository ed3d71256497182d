//! Prints the worker's version-guarded merge for the benchmark table `bench.t (id int primary
//! key, a text, b numeric(12,2), c timestamptz)`, with the file's time and id as literals, so
//! `bench/merge_cost.sh` can time it against a plain upsert in `psql`.

use sluice_worker::sql::{merge_sql, Column, Deletes, MergeSpec, TargetTable};

fn main() {
    let column = |name: &str, sql_type: &str, not_null: bool| Column {
        name: name.into(),
        sql_type: sql_type.into(),
        not_null,
        is_enum: false,
        base: None,
    };
    let target = TargetTable {
        schema: "bench".into(),
        name: "t".into(),
        oid: 0,
        columns: vec![
            column("id", "integer", true),
            column("a", "text", false),
            column("b", "numeric(12,2)", false),
            column("c", "timestamptz", false),
        ],
        key: vec![0],
        present: vec![],
    };
    let sql = merge_sql(&MergeSpec {
        target: &target,
        file_columns: &[0, 1, 2, 3],
        deletes: Deletes::Hard {
            tombstones: "bench.tomb".into(),
        },
        partial: false,
        no_tombstones: std::env::args().any(|a| a == "--no-tombstones"),
    });
    println!(
        "{};",
        sql.replace("$1::timestamptz", "'2026-01-01'::timestamptz")
            .replace("$2::bigint", "7::bigint")
    );
}
