"""Plots of a compare-results.json (run in the benchmark's matplotlib environment):

python plot.py compare-results.json throughput=out1.png latency=out2.png
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter

COLORS = {
    "hand": "#555555",
    "streamplug": "#1f77b4",
    "flink": "#d62728",
    "quix": "#2ca02c",
    "bytewax": "#9467bd",
    "arroyo": "#8c564b",
    "faust": "#e377c2",
}


def _bad(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def throughput(data: dict, path: str) -> None:
    rows = data["throughput"]
    fig, ax = plt.subplots(figsize=(10, 0.32 * len(rows) + 1.8))
    y = list(range(len(rows)))[::-1]
    for yi, r in zip(y, rows, strict=True):
        color = COLORS.get(r["framework"], "#999999")
        if r["wrong"] or _bad(r["rate"]):
            ax.text(0, yi, "  WRONG output: not counted", va="center", color="#d62728", fontsize=8)
            continue
        ax.barh(yi, r["rate"], color=color, height=0.7)
        ax.plot([r["rate_min"], r["rate_max"]], [yi, yi], color="black", linewidth=1)
        label = f"  {r['rate'] / 1000:,.0f}k"
        if not _bad(r["steady"]):
            ax.plot([r["steady"]], [yi], marker="D", markersize=3.5, color="black")
            label += f" (steady {r['steady'] / 1000:,.0f}k)"
        ax.text(
            max(r["rate_max"], r["steady"] if not _bad(r["steady"]) else 0),
            yi,
            label,
            va="center",
            fontsize=7,
        )
    ax.set_yticks(y)
    ax.set_yticklabels([f"{r['config']} ({r['records'] // 1000:,}k)" for r in rows], fontsize=7)
    ax.set_xlabel(
        "records/s: bar = median of runs, whole job from start to its last commit; "
        "line = min-max; diamond = steady (start-up left out)",
        fontsize=8,
    )
    ax.set_title(data["title"], fontsize=9)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v / 1000:,.0f}k"))
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def latency(data: dict, path: str) -> None:
    rows = data["latency_summary"]
    if not rows:
        return
    # The job's own latency (input append -> reader) where the run measured it: the
    # end-to-end figures also hold the paced input producer's lag, which on this machine
    # can be most of them (benchmarks/RESULTS.md).
    job = all(not _bad(r.get("job_p50_ms")) for r in rows if not r["wrong"])
    p50, p99 = ("job_p50_ms", "job_p99_ms") if job else ("p50_ms", "p99_ms")
    fig, ax = plt.subplots(figsize=(10, 0.5 * len(rows) + 1.8))
    y = list(range(len(rows)))[::-1]
    values = [v for r in rows for v in (r[p50], r[p99]) if not _bad(v) and v > 0]
    low, high = (min(values) / 2, max(values) * 4) if values else (1, 10_000)
    ax.set_xscale("log")
    ax.set_xlim(low, high)
    for yi, r in zip(y, rows, strict=True):
        color = COLORS.get(r["config"].split("/")[0], "#999999")
        if r["wrong"] or _bad(r[p50]) or _bad(r[p99]):
            ax.text(
                low, yi, "  WRONG output: not counted", va="center", color="#d62728", fontsize=8
            )
            continue
        ax.barh(yi + 0.18, r[p50], height=0.34, color=color, alpha=0.55)
        ax.barh(yi - 0.18, r[p99], height=0.34, color=color)
        ax.text(r[p50], yi + 0.18, f" p50 {r[p50]:,.1f} ms", va="center", fontsize=7)
        ax.text(r[p99], yi - 0.18, f" p99 {r[p99]:,.1f} ms", va="center", fontsize=7)
    ax.set_yticks(y)
    ax.set_yticklabels([r["config"] for r in rows], fontsize=8)
    ax.set_xlabel(
        (
            "job latency (input's broker append -> reader)"
            if job
            else "end-to-end latency (input producer's stamp -> reader)"
        )
        + f", ms (log scale), {data['latency_rate']:,} records/s input; "
        "light = p50, dark = p99 (medians over runs)",
        fontsize=8,
    )
    ax.set_title(data["title"], fontsize=9)
    ax.grid(axis="x", alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    data = json.loads(Path(sys.argv[1]).read_text())
    outputs = dict(a.split("=", 1) for a in sys.argv[2:])
    if "throughput" in outputs:
        throughput(data, outputs["throughput"])
    if "latency" in outputs:
        latency(data, outputs["latency"])


if __name__ == "__main__":
    main()
