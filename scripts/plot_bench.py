#!/usr/bin/env python3
"""Plot recall@k (x) against QPS (y, log scale) for one or more shoal-bench / hnswlib JSON results.

Usage: plot_bench.py --out plot.png result1.json [result2.json ...]
Each JSON holds "series": [{"name": ..., "points": [{"ef", "recall", "qps"}, ...]}, ...].
"""
import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--title", default=None)
    ap.add_argument("results", nargs="+")
    a = ap.parse_args()
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=110)
    title = a.title
    for path in a.results:
        with open(path) as f:
            r = json.load(f)
        if title is None and "dataset" in r:
            d = r["dataset"]
            title = f"{d.get('n')} x {d.get('dim')} {d.get('kind', d.get('source', ''))}, " \
                    f"M={r.get('params', {}).get('m')} ef_construct={r.get('params', {}).get('ef_construct')}"
        for s in r.get("series", []):
            pts = sorted(s["points"], key=lambda p: p["ef"])
            xs = [p["recall"] for p in pts]
            ys = [p["qps"] for p in pts]
            (line,) = ax.plot(xs, ys, marker="o", label=s["name"])
            for p in pts:
                ax.annotate(str(p["ef"]), (p["recall"], p["qps"]), textcoords="offset points",
                            xytext=(3, 3), fontsize=7, color=line.get_color())
    ax.set_yscale("log")
    ax.set_xlabel("recall@10")
    ax.set_ylabel("queries per second (log)")
    ax.axvline(0.95, color="grey", lw=0.8, ls="--")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or "recall vs QPS (labels: ef)", fontsize=10)
    fig.tight_layout()
    fig.savefig(a.out)


if __name__ == "__main__":
    main()
