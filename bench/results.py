"""The figures `bench/run.sh` reports, from its measurements, in one place.

Reads the run's measurements (`results.txt`: one `name value` line per measurement, in the order
taken) and the run's case list (one tab-separated line per case that ran: case, kind, key,
baseline key, target operator, target value, what, baseline what, command), writes
`results.json` (a list, one object per case: case, median_seconds, baseline_median_seconds,
ratio, target, met, runs, baseline_runs, command, ...) and prints the same figures as a
Markdown table, so that the report and a program read the same numbers.

Kinds: `time` (ratio = median / baseline median: lower is better), `rate` (ratio = baseline
median / median, i.e. Sluice's rate over the baseline's: higher is better), `rss` (the target
is on the worker's peak RSS, `<key>_rss` in kB; no baseline). Medians of an even count are the
mean of the two middle values. A missing measurement gives null, never a made-up figure.

    python3 bench/results.py RESULTS_TXT CASES_TSV RESULTS_JSON
"""

import json
import operator
import sys

OPS = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt}


def median(values):
    if not values:
        return None
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def measurements(path):
    out = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) != 2:
                continue
            try:
                out.setdefault(parts[0], []).append(float(parts[1]))
            except ValueError:
                out.setdefault(parts[0], []).append(parts[1])
    return out


def entry(m, spec):
    case, kind, key, base_key, op, target, what, base_what, command = spec
    runs = [v for v in m.get(key, []) if isinstance(v, float)]
    base_runs = [v for v in m.get(base_key, []) if isinstance(v, float)] if base_key != "-" else []
    med, base = median(runs), median(base_runs)
    ratio = None
    if med is not None and base:
        ratio = round(med / base if kind == "time" else base / med, 3)
    e = {
        "case": case,
        "what": what,
        "median_seconds": med,
        "baseline": None if base_key == "-" else base_what,
        "baseline_median_seconds": base,
        "ratio": ratio,
        "target": None if op == "-" else f"{op} {target}",
        "met": None,
        "runs": runs,
        "baseline_runs": base_runs,
        "command": command,
    }
    measured = ratio
    if kind == "rss":
        rss = [v for v in m.get(key.replace("_secs", "_rss"), []) if isinstance(v, float)]
        e["peak_rss_mb"] = round(max(rss) / 1024) if rss else None
        measured = max(rss) / 1024 if rss else None
        e["target"] = f"peak RSS {op} {target} MB"
    if op != "-" and measured is not None:
        e["met"] = OPS[op](measured, float(target))
    same = m.get(f"same_{case}")
    if same:
        e["rows_identical"] = same[-1] == "yes"
    return e


def fmt(v, digits=2):
    return "n/a" if v is None else f"{v:.{digits}f}"


def table(entries):
    lines = [
        "| case | what | median (s) | runs (s) | baseline | baseline median (s) | baseline runs (s) | ratio | target | met |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for e in entries:
        runs = ", ".join(fmt(v) for v in e["runs"])
        base_runs = ", ".join(fmt(v) for v in e["baseline_runs"])
        met = {True: "**met**", False: "**missed**", None: ""}[e["met"]]
        if "rows_identical" in e:
            met += f" (rows identical: {'yes' if e['rows_identical'] else 'NO'})"
        ratio = fmt(e["ratio"]) + "x" if e["ratio"] is not None else ""
        if "peak_rss_mb" in e:
            ratio = f"peak RSS {e['peak_rss_mb']} MB"
        lines.append(
            f"| {e['case']} | {e['what']} | {fmt(e['median_seconds'])} | {runs} | {e['baseline'] or ''} "
            f"| {fmt(e['baseline_median_seconds']) if e['baseline'] else ''} | {base_runs} | {ratio} "
            f"| {e['target'] or ''} | {met} |"
        )
    return "\n".join(lines)


def main(argv):
    results_txt, cases_tsv, results_json = argv
    m = measurements(results_txt)
    with open(cases_tsv) as f:
        specs = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    entries = [entry(m, s) for s in specs]
    with open(results_json, "w") as f:
        json.dump(entries, f, indent=2, ensure_ascii=False)
        f.write("\n")
    print(table(entries))


if __name__ == "__main__":
    main(sys.argv[1:])
