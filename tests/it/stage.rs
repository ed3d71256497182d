//! The stage in binary: a CDC file whose columns all have a binary type is copied into the
//! stage in PostgreSQL's binary format (the worker parses the values, the server does not);
//! one value only PostgreSQL's own input reads sends the file to the stage in text, with the
//! same result. Operations, versions from a timestamp column, partial images and deletes must
//! come out the same either way.

use crate::support::{cdc_name, TestBed};
use sluice_worker::load::{LoadOutcome, LoadStats};

fn stats(outcome: LoadOutcome) -> LoadStats {
    match outcome {
        LoadOutcome::Loaded(s) => s,
        LoadOutcome::AlreadyApplied => panic!("expected a load, the ledger had the file"),
    }
}

/// The files, each with `{n}` standing for a number written canonically (binary) or with a
/// leading `+` (which only PostgreSQL reads, so the file is staged in text).
const FILES: &[&str] = &[
    "I,2025-01-01 00:00:01.000001,1,{n},12.50,alpha,2025-01-01 10:00:00,t,\"{1,2}\"\n\
     I,2025-01-01 00:00:01.000002,2,7,0.01,\"comma, \"\"quoted\"\"\",NULL,f,{}\n\
     U,2025-01-01 00:00:01.000003,1,8,~,~,~,~,~\n\
     I,2025-01-01 00:00:01.000004,3,9,-3.25,\"line\nbreak\",2024-02-29 23:59:59.999999,NULL,\"{NULL,-5}\"\n",
    "D,2025-01-01 00:00:02.000001,2,NULL,NULL,NULL,NULL,NULL,NULL\n\
     U,2025-01-01 00:00:02.000002,3,~,100.00,gamma,~,t,~\n\
     I,2025-01-01 00:00:00.500000,4,{n},1.00,late,NULL,NULL,NULL\n",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdc_files_stage_in_binary_with_the_same_result_as_text() {
    let tb = TestBed::new("stage-binary").await;
    let mut rules = String::new();
    for t in ["bin", "txt"] {
        tb.sql(&format!(
            "CREATE TABLE {{s}}.{t} (id int PRIMARY KEY, n int, amount numeric(12,2), label text, \
             at timestamp, flag boolean, tags int[])"
        ))
        .await;
        rules.push_str(&format!(
            "[tables.\"{}.{t}\"]\ntimestamp_column = \"ts\"\nnosup_value = \"~\"\n",
            tb.schema
        ));
    }
    let ctx = tb.load_context(&rules).await;
    for (f, body) in FILES.iter().enumerate() {
        let offset = f as i64 * 1000;
        let bin = stats(
            tb.put_and_load(
                &ctx,
                &tb.key(&format!("bin/{}", cdc_name(offset))),
                &body.replace("{n}", "5"),
            )
            .await,
        );
        let txt = stats(
            tb.put_and_load(
                &ctx,
                &tb.key(&format!("txt/{}", cdc_name(offset))),
                &body.replace("{n}", "+5"),
            )
            .await,
        );
        assert_eq!(
            (bin.path(), bin.copy_format()),
            ("staged", "binary"),
            "{bin:?}"
        );
        assert_eq!(
            (txt.path(), txt.copy_format()),
            ("staged", "text"),
            "{txt:?}"
        );
        let counts = |s: &LoadStats| {
            (
                s.records,
                s.inserted,
                s.updated,
                s.deleted,
                s.superseded,
                s.partial,
            )
        };
        assert_eq!(counts(&bin), counts(&txt), "file {f}");
    }
    let all = |t: &str| {
        format!(
            "SELECT id::text, n::text, amount::text, label, at::text, flag::text, tags::text, \
             _sluice_version::text, _sluice_record::text FROM {{s}}.{t} ORDER BY id"
        )
    };
    let bin = tb.rows(&all("bin")).await;
    assert_eq!(bin, tb.rows(&all("txt")).await);
    let s = |v: &str| Some(v.to_owned());
    assert_eq!(
        bin.iter().map(|r| r[..7].to_vec()).collect::<Vec<_>>(),
        vec![
            vec![
                s("1"),
                s("8"),
                s("12.50"),
                s("alpha"),
                s("2025-01-01 10:00:00"),
                s("true"),
                s("{1,2}")
            ],
            vec![
                s("3"),
                s("9"),
                s("100.00"),
                s("gamma"),
                s("2024-02-29 23:59:59.999999"),
                s("true"),
                s("{NULL,-5}")
            ],
            vec![s("4"), s("5"), s("1.00"), s("late"), None, None, None],
        ]
    );
}
