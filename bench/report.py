#!/usr/bin/env python3
"""Turns bench/results.tsv (written by bench/run.sh) into the results section of
docs/benchmarks.md and the chart docs/benchmarks.svg.

Each figure is the median of its runs. The text of docs/benchmarks.md outside the markers
<!-- results:begin --> and <!-- results:end --> is kept: it holds the hand-written analysis.

usage: report.py RESULTS.tsv BENCHMARKS.md CHART.svg
"""

import statistics
import sys
from collections import defaultdict

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"

# workload, metric, higher is better, description
FIGURES = [
    ("W1_c1", "tps", True, "W1 point SELECT by key, 1 client (tps)"),
    ("W1_c1", "latency_ms", False, "W1 point SELECT by key, 1 client (mean latency, ms)"),
    ("W1_c4", "tps", True, "W1 point SELECT by key, 4 clients (tps)"),
    ("W2_count", "latency_ms", False, "W2 count(*), sum() over all accounts (ms)"),
    ("W2_group", "latency_ms", False, "W2 GROUP BY bid, a non-key column (ms)"),
    ("W3_copy", "rows_per_s", True, "W3 COPY bulk load (rows/s)"),
    ("W5_tpcb", "tps", True, "W5 pgbench TPC-B, 4 clients (tps)"),
    ("W6_update", "latency_ms", False, "W6 UPDATE of 10% of accounts (ms)"),
]
SYSTEMS = ["single", "pgshard", "fdw"]


def load(path):
    runs = defaultdict(list)
    meta = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 4:
                continue
            workload, system, metric, value = parts
            if workload == "meta":
                meta[metric] = value
            else:
                runs[(workload, system, metric)].append(float(value))
    return meta, runs


def median(runs, key):
    values = runs.get(key)
    return statistics.median(values) if values else None


def fmt(value):
    if value is None:
        return "–"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def ratio(a, b):
    return None if a is None or b in (None, 0) else a / b


def targets(runs):
    """(description, measured text, met) for each target of the benchmark issue."""
    m = lambda w, s, k: median(runs, (w, s, k))
    out = []

    def check(text, value, op, bound):
        met = None if value is None else (value >= bound if op == ">=" else value <= bound)
        out.append((f"{text} {op} {bound}", fmt(value), met))

    check("W1 4 clients: pgshard/single tps", ratio(m("W1_c4", "pgshard", "tps"), m("W1_c4", "single", "tps")), ">=", 0.30)
    check("W1 4 clients: pgshard/fdw tps", ratio(m("W1_c4", "pgshard", "tps"), m("W1_c4", "fdw", "tps")), ">=", 2.5)
    check("W1 1 client: pgshard mean latency (ms)", m("W1_c1", "pgshard", "latency_ms"), "<=", 0.20)
    for q in ("count", "group"):
        check(f"W2 {q}: pgshard/single time", ratio(m(f"W2_{q}", "pgshard", "latency_ms"), m(f"W2_{q}", "single", "latency_ms")), "<=", 0.60)
        check(f"W2 {q}: pgshard/fdw time", ratio(m(f"W2_{q}", "pgshard", "latency_ms"), m(f"W2_{q}", "fdw", "latency_ms")), "<=", 0.1)
    check("W3: pgshard/single load rate", ratio(m("W3_copy", "pgshard", "rows_per_s"), m("W3_copy", "single", "rows_per_s")), ">=", 1.2)
    check("W4: encrypted/plain time (load + read back)", ratio(m("W4_encrypted", "pgshard", "total_s"), m("W4_plain", "pgshard", "total_s")), "<=", 1.3)
    check("W5: pgshard/single tps", ratio(m("W5_tpcb", "pgshard", "tps"), m("W5_tpcb", "single", "tps")), ">=", 0.35)
    failed = sum(runs.get(("W5_tpcb", "pgshard", "failed"), [0]))
    out.append(("W5: pgshard failed transactions (all runs) = 0", f"{failed:.0f}", failed == 0))
    holds = runs.get(("W5_tpcb", "pgshard", "invariant_holds"), [])
    out.append(("W5: pgshard bank invariant holds after every run", f"{sum(holds):.0f} of {len(holds)} runs", bool(holds) and all(v == 1 for v in holds)))
    return out


def markdown(meta, runs):
    lines = [BEGIN, ""]
    lines.append(f"Run: `{'make bench QUICK=1' if meta.get('mode') == 'quick' else 'make bench'}` at commit "
                 f"`{meta.get('commit', '?')}` ({meta.get('mode', '?')} mode: {meta.get('seconds_per_run')} s per "
                 f"pgbench run, pgbench scale {meta.get('scale')} = {int(meta.get('scale', '0')) * 100000:,} accounts, "
                 f"W3 {int(meta.get('load_rows', '0')):,} rows, W4 {int(meta.get('encrypted_rows', '0')):,} rows; "
                 f"each figure the median of 3 runs).")
    lines.append("")
    lines.append(f"Machine: {meta.get('cpu', '?')}, {meta.get('cores', '?')} cores, {meta.get('memory', '?')}, "
                 f"Linux {meta.get('kernel', '?')}, {meta.get('postgres', '?')}; every server on loopback on this machine.")
    lines.append("")
    lines.append("| Figure | single | pgshard | fdw | pgshard/single | pgshard/fdw |")
    lines.append("|---|---:|---:|---:|---:|---:|")
    for workload, metric, _, text in FIGURES:
        values = {s: median(runs, (workload, s, metric)) for s in SYSTEMS}
        lines.append(f"| {text} | {fmt(values['single'])} | {fmt(values['pgshard'])} | {fmt(values['fdw'])} | "
                     f"{fmt(ratio(values['pgshard'], values['single']))} | {fmt(ratio(values['pgshard'], values['fdw']))} |")
    lines.append("")
    lines.append("W4 (pgshard only, encrypted_text vs text, seconds):")
    lines.append("")
    lines.append("| Column | load (COPY) | read back | total |")
    lines.append("|---|---:|---:|---:|")
    for kind in ("plain", "encrypted"):
        row = [median(runs, (f"W4_{kind}", "pgshard", k)) for k in ("insert_s", "read_s", "total_s")]
        lines.append(f"| {'text' if kind == 'plain' else 'pgshard.encrypted_text'} | " + " | ".join(fmt(v) for v in row) + " |")
    lines.append("")
    lines.append("W5 failures and invariant (sum over the runs):")
    lines.append("")
    lines.append("| System | failed transactions | invariant held |")
    lines.append("|---|---:|---:|")
    for s in SYSTEMS:
        failed = sum(runs.get(("W5_tpcb", s, "failed"), []))
        holds = runs.get(("W5_tpcb", s, "invariant_holds"), [])
        lines.append(f"| {s} | {failed:.0f} | {sum(holds):.0f} of {len(holds)} runs |")
    lines.append("")
    lines.append("Targets:")
    lines.append("")
    lines.append("| Target | measured | met |")
    lines.append("|---|---:|---|")
    for text, measured, met in targets(runs):
        lines.append(f"| {text} | {measured} | {'–' if met is None else ('yes' if met else '**no**')} |")
    lines.append("")
    lines.append("![pgshard and fdw relative to single](benchmarks.svg)")
    lines.append("")
    lines.append(END)
    return "\n".join(lines)


def chart(runs):
    """Speed relative to single (single = 1, higher is better, log scale) per figure."""
    rows = []
    for workload, metric, higher, text in FIGURES:
        base = median(runs, (workload, "single", metric))
        speeds = {}
        for s in ("pgshard", "fdw"):
            v = median(runs, (workload, s, metric))
            if base and v:
                speeds[s] = v / base if higher else base / v
        rows.append((text, speeds))
    w4 = ratio(median(runs, ("W4_plain", "pgshard", "total_s")), median(runs, ("W4_encrypted", "pgshard", "total_s")))
    rows.append(("W4 encrypted vs text on pgshard (text = 1)", {"pgshard": w4} if w4 else {}))

    import math
    lo, hi = 0.001, 10.0
    left, width, bar, gap = 360, 460, 11, 12
    height = 60 + len(rows) * (2 * bar + gap) + 40
    x = lambda v: left + width * (math.log10(min(max(v, lo), hi)) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))
    colours = {"pgshard": "#2f6db5", "fdw": "#d9822b"}
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 80}" height="{height}" font-family="sans-serif" font-size="12">',
           '<rect width="100%" height="100%" fill="white"/>',
           f'<text x="10" y="20" font-size="14" font-weight="bold">Speed relative to a single PostgreSQL server (= 1; higher is better; log scale)</text>']
    for tick in (0.001, 0.01, 0.1, 1, 10):
        out.append(f'<line x1="{x(tick):.1f}" y1="35" x2="{x(tick):.1f}" y2="{height - 35}" stroke="{"#444" if tick == 1 else "#ddd"}"/>')
        out.append(f'<text x="{x(tick):.1f}" y="{height - 20}" text-anchor="middle">{tick:g}</text>')
    y = 45
    for text, speeds in rows:
        out.append(f'<text x="{left - 8}" y="{y + bar + 4}" text-anchor="end">{text}</text>')
        for i, s in enumerate(("pgshard", "fdw")):
            if s in speeds:
                v = speeds[s]
                out.append(f'<rect x="{x(lo):.1f}" y="{y + i * bar}" width="{x(v) - x(lo):.1f}" height="{bar - 1}" fill="{colours[s]}"/>')
                out.append(f'<text x="{x(v) + 4:.1f}" y="{y + i * bar + bar - 2}" font-size="10">{v:.2f}</text>')
        y += 2 * bar + gap
    out.append(f'<rect x="{left}" y="{height - 14}" width="10" height="10" fill="{colours["pgshard"]}"/><text x="{left + 14}" y="{height - 5}">pgshard</text>')
    out.append(f'<rect x="{left + 90}" y="{height - 14}" width="10" height="10" fill="{colours["fdw"]}"/><text x="{left + 104}" y="{height - 5}">partitions over postgres_fdw</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    results, doc_path, svg_path = sys.argv[1:4]
    meta, runs = load(results)
    section = markdown(meta, runs)
    try:
        with open(doc_path, encoding="utf-8") as f:
            doc = f.read()
    except FileNotFoundError:
        doc = f"# Benchmarks\n\n{BEGIN}\n{END}\n"
    if BEGIN in doc and END in doc:
        doc = doc[: doc.index(BEGIN)] + section + doc[doc.index(END) + len(END):]
    else:
        doc = doc.rstrip("\n") + "\n\n" + section + "\n"
    with open(doc_path, "w", encoding="utf-8") as f:
        f.write(doc)
    with open(svg_path, "w", encoding="utf-8") as f:
        f.write(chart(runs))
    print(section)


if __name__ == "__main__":
    main()
