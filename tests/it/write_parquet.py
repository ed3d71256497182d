"""Writes the Parquet files of tests/it/parquet.rs with pyarrow, as AWS DMS would write them
(DataFormat=parquet): one named case per call.

    python3 tests/it/write_parquet.py CASE OUT_PATH

Prints one JSON line describing what was written (row groups, rows, each column's physical
and logical type), so a test can check it exercised what it means to. The expected values are
written out independently in the Rust test, not derived from this file.
"""

import datetime as dt
import decimal
import json
import sys
import uuid

import pyarrow as pa
import pyarrow.parquet as pq

D = decimal.Decimal
UTC = dt.timezone.utc

TRICKY = 'He said "hi", then\r\nleft, tab\there \\ back ☃ 表 🙂'


def types_table():
    """Every type DMS writes (and a few it could), three rows: typical, edges, all NULL."""
    cols = {
        "id": (pa.int32(), [1, 2, 3]),
        "i8": (pa.int8(), [-8, 127, None]),
        "i16": (pa.int16(), [-16, -32768, None]),
        "i64": (pa.int64(), [-(2**40), 2**63 - 1, None]),
        "u8": (pa.uint8(), [8, 255, None]),
        "u16": (pa.uint16(), [16, 65535, None]),
        "u32": (pa.uint32(), [32, 2**32 - 1, None]),
        "u64": (pa.uint64(), [64, 2**64 - 1, None]),
        "dec": (
            pa.decimal128(38, 10),
            [D("1234567890123456789012345678.9012345678"), D("-0.0000000001"), None],
        ),
        "dec_wide": (
            pa.decimal256(50, 5),
            [D("-123456789012345678901234567890123456789012345.67891"), D("0.00000"), None],
        ),
        "f32": (pa.float32(), [0.1, float("inf"), None]),
        "f64": (pa.float64(), [0.1, float("nan"), None]),
        "f64_more": (pa.float64(), [1e300, float("-inf"), None]),
        "f16": (pa.float16(), [1.5, -65504.0, None]),
        "flag": (pa.bool_(), [True, False, None]),
        "txt": (pa.string(), [TRICKY, "NULL", None]),
        "empty_txt": (pa.string(), ["", '"', None]),
        "big_txt": (pa.large_string(), ["x" * 3000, "ü", None]),
        "bin": (pa.binary(), [b"\x00\x01\xfe\xff", b"", None]),
        "fixed_bin": (pa.binary(3), [b"abc", b"\x00\x00\x00", None]),
        "d": (pa.date32(), [dt.date(2024, 10, 29), dt.date(1, 1, 1), None]),
        "ts": (
            pa.timestamp("us"),
            [dt.datetime(2024, 10, 29, 11, 34, 1, 123456), dt.datetime(1969, 12, 31, 23, 59, 59, 999999), None],
        ),
        "ts_ms": (pa.timestamp("ms"), [dt.datetime(2024, 10, 29, 11, 34, 1, 123000), dt.datetime(9999, 12, 31, 23, 59, 59, 999000), None]),
        "ts_ns": (pa.timestamp("ns"), [1_730_201_641_123_456_789, 0, None]),
        "tstz": (
            pa.timestamp("us", tz="UTC"),
            [dt.datetime(2024, 10, 29, 11, 34, 1, 5, tzinfo=UTC), dt.datetime(2000, 2, 29, tzinfo=UTC), None],
        ),
        "tm": (pa.time64("us"), [dt.time(11, 34, 1, 123456), dt.time(23, 59, 59, 999999), None]),
        "tm_ms": (pa.time32("ms"), [dt.time(0, 0, 0, 1000), dt.time(12, 0), None]),
        "uid": (
            pa.uuid(),
            [uuid.UUID("123e4567-e89b-12d3-a456-426614174000").bytes, uuid.UUID(int=0).bytes, None],
        ),
        "js": (pa.json_(), ['{"a": [1, 2.5, "x"]}', "[]", None]),
        "tags": (pa.list_(pa.string()), [["a", 'b"q', None], [], None]),
        "attrs": (
            pa.struct([("n", pa.int32()), ("s", pa.string()), ("when", pa.date32())]),
            [{"n": 1, "s": "x,y", "when": dt.date(2024, 1, 2)}, {"n": None, "s": None, "when": None}, None],
        ),
        "kv": (pa.map_(pa.string(), pa.int64()), [[("k1", 1), ("k2", None)], [], None]),
    }
    arrays = []
    for name, (t, values) in cols.items():
        if isinstance(t, pa.UuidType):
            storage = pa.array(values, pa.binary(16))
            arrays.append(pa.ExtensionArray.from_storage(t, storage))
        else:
            arrays.append(pa.array(values, t))
    return pa.table(arrays, names=list(cols))


def ts(s):
    return dt.datetime.fromisoformat(s)


def cdc_full():
    return pa.table(
        {
            "dms_ts": pa.array([ts("2024-10-29 10:00:00"), ts("2024-10-29 10:00:00"), ts("2024-10-29 10:00:00")], pa.timestamp("us")),
            "id": pa.array([1, 2, 3], pa.int64()),
            "name": pa.array(["one", "two", "three"]),
            "amount": pa.array([D("1.10"), D("2.20"), D("3.30")], pa.decimal128(9, 2)),
            "big_amount": pa.array([D("10.001"), D("20.002"), D("30.003")], pa.decimal128(18, 3)),
        }
    )


def cdc_changes():
    # Op first, as DMS writes CDC files; the timestamp column after it. Row 4 is inserted, then
    # updated; 2 updated twice (the older update comes last in the file: the version decides);
    # 3 deleted (its other columns NULL, as DMS writes deletes without a full image).
    return pa.table(
        {
            "Op": pa.array(["I", "U", "D", "U", "U"]),
            "dms_ts": pa.array(
                [
                    ts("2024-10-29 11:00:00.000001"),
                    ts("2024-10-29 11:00:02"),
                    ts("2024-10-29 11:00:03"),
                    ts("2024-10-29 11:00:04"),
                    ts("2024-10-29 11:00:01"),
                ],
                pa.timestamp("us"),
            ),
            "id": pa.array([4, 2, 3, 4, 2], pa.int64()),
            "name": pa.array(["four", "two v2", None, "four v2", "two v1 (older)"]),
            "amount": pa.array([D("4.40"), D("-2.25"), None, D("4.41"), D("0.01")], pa.decimal128(9, 2)),
            "big_amount": pa.array([D("40.004"), D("-20.5"), None, D("40.005"), D("1.000")], pa.decimal128(18, 3)),
        }
    )


def drift():
    # A source table that gained three columns since its target was made (id, name).
    return pa.table(
        {
            "id": pa.array([10, 11], pa.int64()),
            "name": pa.array(["ten", "eleven"]),
            "score": pa.array([7, None], pa.int64()),
            "rating": pa.array([D("4.50"), D("-1.25")], pa.decimal128(5, 2)),
            "seen": pa.array([dt.datetime(2024, 10, 29, 12, 0, 0, 1, tzinfo=UTC), None], pa.timestamp("us", tz="UTC")),
        }
    )


ROWS = 10_000


def many_row_groups():
    ids = list(range(1, ROWS + 1))
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "label": pa.array([None if i % 7 == 0 else f"row {i}, \"q\"" for i in ids]),
            "at": pa.array([dt.datetime(2024, 1, 1) + dt.timedelta(seconds=i, microseconds=i) for i in ids], pa.timestamp("us")),
        }
    )


def describe(path):
    f = pq.ParquetFile(path)
    md = f.metadata
    schema = md.schema
    return {
        "row_groups": md.num_row_groups,
        "rows": md.num_rows,
        "columns": {
            schema.column(i).path: [
                schema.column(i).physical_type,
                str(schema.column(i).logical_type),
                md.row_group(0).column(i).compression if md.num_row_groups else None,
            ]
            for i in range(len(schema))
        },
    }


def main():
    case, out = sys.argv[1], sys.argv[2]
    if case == "types":
        pq.write_table(types_table(), out, compression="snappy")
    elif case == "cdc_full":
        pq.write_table(cdc_full(), out, compression="snappy", store_decimal_as_integer=True)
    elif case == "cdc_changes":
        pq.write_table(
            cdc_changes(), out, compression="gzip", store_decimal_as_integer=True, data_page_version="2.0"
        )
    elif case == "row_groups":
        pq.write_table(
            many_row_groups(),
            out,
            compression="gzip",
            row_group_size=1000,
            data_page_size=4096,
            use_deprecated_int96_timestamps=True,
        )
    elif case == "drift":
        pq.write_table(drift(), out, compression="snappy", store_decimal_as_integer=True)
    elif case == "empty":
        pq.write_table(many_row_groups().slice(0, 0), out)
    else:
        sys.exit(f"unknown case {case}")
    print(json.dumps(describe(out)))


if __name__ == "__main__":
    main()
