//! What the lake may and may not change: a full load replaces its table whatever the file
//! format, the manifest's items stay small however often they are written, and keys naming
//! Sluice's own state schema or PostgreSQL's catalogs are refused before any SQL names a table.

use crate::support::TestBed;
use std::io::Write;
use std::time::Duration;

/// A full-load file holding rows `(id, "row <id>")`, in the format its extension says.
fn load_file_body(ext: &str, ids: &[i32]) -> Vec<u8> {
    let csv: String = ids
        .iter()
        .map(|id| format!("{id},\"row {id}\"\n"))
        .collect();
    match ext {
        "csv" => csv.into_bytes(),
        "csv.gz" => {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gz.write_all(csv.as_bytes()).unwrap();
            gz.finish().unwrap()
        }
        "parquet" => parquet_body(ids),
        other => panic!("no such format {other}"),
    }
}

/// A Parquet file of columns `id` (int32) and `a` (string), written by pyarrow.
fn parquet_body(ids: &[i32]) -> Vec<u8> {
    let out = std::env::temp_dir().join(format!(
        "sluice-it-lakestate-{}-{}.parquet",
        std::process::id(),
        rand::random::<u64>()
    ));
    let ids_text: Vec<String> = ids.iter().map(i32::to_string).collect();
    let script = "import sys, pyarrow as pa, pyarrow.parquet as pq\n\
                  ids = [int(x) for x in sys.argv[2].split(',')]\n\
                  t = pa.table({'id': pa.array(ids, pa.int32()), \
                  'a': pa.array(['row %d' % i for i in ids], pa.string())})\n\
                  pq.write_table(t, sys.argv[1])\n";
    let run = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&out)
        .arg(ids_text.join(","))
        .output()
        .expect("run python3 (infra/local/stack.sh up installs pyarrow)");
    assert!(
        run.status.success(),
        "pyarrow: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let bytes = std::fs::read(&out).expect("the written file");
    let _ = std::fs::remove_file(&out);
    bytes
}

/// A generation with ids 1, 2, 3, then the same key rewritten with ids 1, 2 (a reload): after
/// passes and workers, the table holds 1 and 2 only, and the first file records the
/// replacement.
async fn a_reload_replaces_the_table(ext: &str) {
    let mut tb = TestBed::new(&format!("replace-{}", ext.replace('.', ""))).await;
    tb.generation_quiet = Duration::ZERO;
    tb.sql("CREATE TABLE {s}.t (id int PRIMARY KEY, a text)")
        .await;
    let key = tb.key(&format!("t/LOAD00000001.{ext}"));
    tb.put(&key, load_file_body(ext, &[1, 2, 3])).await;
    tb.scan().await;
    tb.drain(&[]).await;
    let pass = tb.scan().await;
    assert_eq!(pass.replacements_sent, 1, "{ext}: {pass:?}");
    let run = tb.drain(&[]).await;
    assert_eq!(run.replaced, 1, "{ext}: generation 1: {run:?}");
    let ids = "SELECT string_agg(id::text, ',' ORDER BY id) FROM {s}.t";
    assert_eq!(tb.rows(ids).await[0][0].as_deref(), Some("1,2,3"), "{ext}");

    // The reload: a later LastModified starts a new generation.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let etag = tb.put(&key, load_file_body(ext, &[1, 2])).await;
    let pass = tb.scan().await;
    assert_eq!(pass.changed, 1, "{ext}: {pass:?}");
    tb.drain(&[]).await;
    let pass = tb.scan().await;
    assert_eq!(pass.replacements_sent, 1, "{ext}: {pass:?}");
    let run = tb.drain(&[]).await;
    assert_eq!(run.replaced, 1, "{ext}: the reload's replacement: {run:?}");
    assert_eq!(tb.rows(ids).await[0][0].as_deref(), Some("1,2"), "{ext}");
    let head = tb.item(&key, &etag).await;
    assert!(head.replaced_at.is_some(), "{ext}: {head:?}");
    assert_eq!(head.rows_removed, Some(1), "{ext}: {head:?}");
    // Nothing more to ask.
    let pass = tb.scan().await;
    assert_eq!(
        (pass.replacements_sent, pass.generations_in_progress),
        (0, 0),
        "{ext}: {pass:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_csv_reload_replaces_the_table() {
    a_reload_replaces_the_table("csv").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gzip_reload_replaces_the_table() {
    a_reload_replaces_the_table("csv.gz").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_parquet_reload_replaces_the_table() {
    a_reload_replaces_the_table("parquet").await;
}
