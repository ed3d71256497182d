"""Uploads DMS-style sample files to the local S3 (moto) for the demo.

usage: upload_sample.py BUCKET PREFIX full|cdc

Full load: LOAD00000001.csv ... with the hexadecimal counter DMS uses, one of them gzipped.
CDC: timestamp-named files in DMS date folders, first field I/U/D.
Values carry what breaks other loaders: quotes, commas, embedded newlines, backslashes,
emoji, CJK text, NULL (unquoted NULL) and empty strings (quoted "").
"""
import datetime
import gzip
import os
import sys

import boto3


def field(v):
    if v is None:
        return "NULL"
    return '"' + str(v).replace('"', '""') + '"'


def csv(rows):
    return "".join(",".join(field(v) for v in r) + "\n" for r in rows).encode("utf-8")


def main():
    bucket, prefix, phase = sys.argv[1], sys.argv[2], sys.argv[3]
    s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    try:
        s3.create_bucket(Bucket=bucket)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    put = lambda key, body: s3.put_object(Bucket=bucket, Key=prefix + key, Body=body)

    if phase == "full":
        customers = [
            (1, "Ada Lovelace", "ada@example.com", 'says "hello", then leaves', "10.50", "2024-10-29 08:00:00.000000"),
            (2, "Bob \\ Backslash", None, "line one\nline two", "0.00", "2024-10-29 08:00:00.000000"),
            (3, "Chloé 😀", "", "emoji 🚀 and CJK 中文 日本語 한국어", None, None),
            (4, "NULL", "null@example.com", "the name is the string NULL, not SQL NULL", "4.00", "2024-10-29 08:00:00.000000"),
        ]
        put("demo/customers/LOAD00000001.csv", csv(customers[:2]))
        put("demo/customers/LOAD00000002.csv.gz", gzip.compress(csv(customers[2:])))
        orders = [(1000 + i, 1 + i % 4, f"{i * 7.25:.2f}", "new", f"order {i}, with comma" if i % 3 else None,
                   "2024-10-29 08:00:00.000000") for i in range(1, 301)]
        # DMS counts LOAD files in hexadecimal: ...09 is followed by ...0A.
        for n, start in enumerate(range(0, 300, 30), start=1):
            put(f"demo/orders/LOAD{n:08X}.csv", csv(orders[start:start + 30]))
    else:
        # DMS names CDC files (and date folders) by the time it writes them: after the full load.
        # Sluice orders rows by that time, so a CDC file named before the full load would lose.
        now = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=2)
        folder = now.strftime("%Y/%m/%d")
        name = lambda t: t.strftime("%Y%m%d-%H%M%S") + f"{t.microsecond // 1000:03d}.csv"
        put(f"demo/customers/{folder}/{name(now)}", csv([
            ("I", 5, "Dara\tTab", "dara@example.com", "inserted by CDC", "5.00", "2024-10-29 11:34:01.000000"),
            ("U", 2, "Bob \\ Backslash", "bob@example.com", "updated\r\nwith CRLF", "2.50", "2024-10-29 11:34:01.000000"),
            ("D", 4, "NULL", None, None, None, None),
        ]))
        put(f"demo/orders/{folder}/{name(now + datetime.timedelta(seconds=1))}", csv(
            [("U", 1000 + i, 1 + i % 4, f"{i * 7.25:.2f}", "shipped", "shipped", "2024-10-29 08:00:00.000000") for i in range(1, 101)]
            + [("D", 1000 + i, 1, "0", "x", None, None) for i in range(291, 301)]
        ))


if __name__ == "__main__":
    main()
