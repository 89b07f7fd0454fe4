#!/usr/bin/env python3
"""hnswlib side of scripts/bench-vs-hnswlib, and the side-by-side report.

  bench_vs_hnswlib.py hnswlib --data d.npy --queries q.npy --gt gt.ivecs --m 16 --ef-construct 100 \
      --ef 32,48,64 --metric euclid --out hnswlib.json
  bench_vs_hnswlib.py compare --shoal shoal.json --hnswlib hnswlib.json [--extra http.json ...] --png out.png
"""
import argparse
import json
import os
import resource
import sys
import tempfile
import time

import numpy as np


def load_vectors(path):
    if path.endswith(".npy"):
        return np.load(path).astype(np.float32, copy=False)
    raw = np.fromfile(path, dtype=np.int32)
    dim = raw[0]
    return raw.reshape(-1, dim + 1)[:, 1:].copy().view(np.float32)


def load_ivecs(path):
    raw = np.fromfile(path, dtype=np.int32)
    k = raw[0]
    return raw.reshape(-1, k + 1)[:, 1:]


def recall(got, truth, k):
    hits = 0
    for g, t in zip(got, truth):
        hits += len(set(g[:k].tolist()) & set(t[:k].tolist()))
    return hits / (len(truth) * k)


def run_hnswlib(a):
    import hnswlib

    data, queries = load_vectors(a.data), load_vectors(a.queries)
    truth = load_ivecs(a.gt)
    n, dim = data.shape
    space = {"euclid": "l2", "l2": "l2", "cosine": "cosine", "dot": "ip"}[a.metric]
    idx = hnswlib.Index(space=space, dim=dim)
    idx.init_index(max_elements=n, ef_construction=a.ef_construct, M=a.m, random_seed=100)
    threads = os.cpu_count() or 1
    t = time.perf_counter()
    idx.add_items(data, np.arange(n), num_threads=threads)
    build_s = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "index.bin")
        idx.save_index(p)
        disk = os.path.getsize(p)
        t = time.perf_counter()
        idx2 = hnswlib.Index(space=space, dim=dim)
        idx2.load_index(p, max_elements=n)
        reopen_s = time.perf_counter() - t
    del idx2
    runs, series1, seriesN = [], [], []
    for ef in a.ef:
        idx.set_ef(ef)
        idx.knn_query(queries[: a.warmup], k=a.k, num_threads=1)
        # QPS: batch calls on one thread (no Python overhead per query), repeated until they have
        # run --min-secs, as shoal-bench does.
        t = time.perf_counter()
        labels, _ = idx.knn_query(queries, k=a.k, num_threads=1)
        done = len(queries)
        while time.perf_counter() - t < a.min_secs:
            idx.knn_query(queries, k=a.k, num_threads=1)
            done += len(queries)
        qps = done / (time.perf_counter() - t)
        rec = recall(labels, truth, a.k)
        # Latency: one call per query (includes ~µs of Python call overhead).
        lat = []
        for q in queries:
            s = time.perf_counter()
            idx.knn_query(q[None, :], k=a.k, num_threads=1)
            lat.append((time.perf_counter() - s) * 1e6)
        lat = np.sort(np.array(lat))
        t = time.perf_counter()
        labels_n, _ = idx.knn_query(queries, k=a.k, num_threads=threads)
        qps_n = len(queries) / (time.perf_counter() - t)
        pct = lambda p: float(lat[int(round((len(lat) - 1) * p))])  # noqa: E731
        runs.append({"series": "1 thread", "ef": ef, "recall": rec, "qps": qps,
                     "p50_us": pct(0.5), "p95_us": pct(0.95), "p99_us": pct(0.99)})
        runs.append({"series": f"{threads} threads", "ef": ef, "recall": recall(labels_n, truth, a.k), "qps": qps_n})
        series1.append({"ef": ef, "recall": rec, "qps": qps})
        seriesN.append({"ef": ef, "recall": runs[-1]["recall"], "qps": qps_n})
        print(f"[hnswlib] ef={ef} recall={rec:.3f} qps={qps:.0f} ({threads} threads: {qps_n:.0f})", file=sys.stderr)
    out = {
        "tool": "hnswlib", "version": __import__("importlib.metadata").metadata.version("hnswlib"), "label": "hnswlib",
        "dataset": {"n": n, "dim": dim, "source": "files", "data": a.data},
        "params": {"m": a.m, "ef_construct": a.ef_construct}, "k": a.k, "threads": threads,
        "extra": {"build_s": build_s, "reopen_s": reopen_s, "disk_bytes": disk,
                  "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024},
        "runs": runs,
        "series": [{"name": "hnswlib (1 thread)", "points": series1},
                   {"name": f"hnswlib ({threads} threads)", "points": seriesN}],
    }
    with open(a.out, "w") as f:
        json.dump(out, f, indent=2)


def qps_at(points, target):
    """QPS at recall `target`, interpolated (log QPS, linear recall) on the ef sweep; None if never reached."""
    pts = sorted(points, key=lambda p: p["recall"])
    for lo, hi in zip(pts, pts[1:]):
        if lo["recall"] <= target <= hi["recall"]:
            if hi["recall"] == lo["recall"]:
                return max(lo["qps"], hi["qps"])
            f = (target - lo["recall"]) / (hi["recall"] - lo["recall"])
            return float(np.exp(np.log(lo["qps"]) + f * (np.log(hi["qps"]) - np.log(lo["qps"]))))
    if pts and pts[0]["recall"] >= target:
        return max(p["qps"] for p in pts)
    return None


def ratio_at(points, target):
    """A ratio at recall `target`, linear between the two (recall, ratio) points around it."""
    pts = sorted(points)
    for (r0, v0), (r1, v1) in zip(pts, pts[1:]):
        if r0 <= target <= r1:
            return v0 if r1 == r0 else v0 + (target - r0) / (r1 - r0) * (v1 - v0)
    return None


def fmt(x, spec):
    return "—" if x is None else format(x, spec)


def compare(a):
    s = json.load(open(a.shoal))
    h = json.load(open(a.hnswlib))
    extras = [json.load(open(p)) for p in a.extra]
    sr = {r["ef"]: r for r in s["runs"] if r["series"] == "1 thread"}
    hr = {r["ef"]: r for r in h["runs"] if r["series"] == "1 thread"}
    sN = {r["ef"]: r for r in s["runs"] if r["series"] != "1 thread"}
    hN = {r["ef"]: r for r in h["runs"] if r["series"] != "1 thread"}
    d = s["dataset"]
    print(f"\n## shoal vs hnswlib {h.get('version', '')}: {d['n']} x {d['dim']}, M={s['params']['m']}, "
          f"ef_construct={s['params']['ef_construct']}, k={s['k']}, 1 query thread (QPS all cores in the last columns)")
    print("| ef | hnswlib recall | shoal recall | hnswlib QPS | shoal QPS | shoal/hnswlib | hnswlib p50/p99 µs | shoal p50/p99 µs "
          f"| hnswlib QPS {h['threads']}t | shoal QPS {s['threads']}t |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for ef in sorted(set(sr) & set(hr)):
        x, y = hr[ef], sr[ef]
        print(f"| {ef} | {x['recall']:.3f} | {y['recall']:.3f} | {x['qps']:.0f} | {y['qps']:.0f} | {y['qps'] / x['qps']:.2f} "
              f"| {x['p50_us']:.0f} / {x['p99_us']:.0f} | {y['p50_us']:.0f} / {y['p99_us']:.0f} "
              f"| {hN.get(ef, {}).get('qps', 0):.0f} | {sN.get(ef, {}).get('qps', 0):.0f} |")
    se, he = s["extra"], h["extra"]
    print("\n| | hnswlib | shoal | ratio |\n|---|---|---|---|")
    for key, name, scale, spec in [("build_s", "build s", 1, ".2f"), ("reopen_s", "reopen s", 1, ".3f"),
                                   ("disk_bytes", "disk MB", 1e-6, ".1f"), ("peak_rss_bytes", "peak RSS MB", 1e-6, ".0f")]:
        hv, sv = he.get(key), se.get(key)
        ratio = (sv / hv) if hv and sv else None
        print(f"| {name} | {fmt(hv * scale if hv is not None else None, spec)} | {fmt(sv * scale if sv is not None else None, spec)} | {fmt(ratio, '.2f')} |")
    print("\n| QPS at recall@10 = target (interpolated over ef) | hnswlib | shoal | shoal/hnswlib |\n|---|---|---|---|")
    sp = [{"recall": r["recall"], "qps": r["qps"]} for r in sr.values()]
    hp = [{"recall": r["recall"], "qps": r["qps"]} for r in hr.values()]
    for target in (0.90, 0.95, 0.98):
        hq, sq = qps_at(hp, target), qps_at(sp, target)
        print(f"| {target:.2f} | {fmt(hq, '.0f')} | {fmt(sq, '.0f')} | {fmt(sq / hq if hq and sq else None, '.2f')} |")
    # HTTP runs compare with the in-process run on the node's own segment when there is one: the
    # graph is then the same, and the ratio is the HTTP path's alone (hnsw_rs builds vary).
    if a.same_segment:
        same = json.load(open(a.same_segment))
        sr = {r["ef"]: r for r in same["runs"] if r["series"] == "1 thread"}
        sp = [{"recall": r["recall"], "qps": r["qps"]} for r in sr.values()]
        print(f"| 0.95 in process on the node's segment | | {fmt(qps_at(sp, 0.95), '.0f')} | |")
    # A paired run (shoal-bench --url --segment) holds its own in-process series: that is the
    # --same-segment side, not an HTTP series.
    http_runs = lambda e: [r for r in e["runs"] if r["series"] != "1 thread"]
    # A paired run's per-(series, ef) rounds: their ratios and median ratio.
    pairs_of = lambda e: {(p["series"], p["ef"]): p for p in e.get("extra", {}).get("pairs", [])}
    for e in extras:
        by = {}
        for r in http_runs(e):
            by.setdefault(r["series"], []).append(r)
        pairs = pairs_of(e)
        for name, rs in by.items():
            q = qps_at([{"recall": r["recall"], "qps": r["qps"]} for r in rs], 0.95)
            sq = qps_at(sp, 0.95)
            ratio = q / sq if q and sq else None
            how = "of in-process 1 thread"
            if all((name, r["ef"]) in pairs for r in rs):
                # Interleaved: the median of each ef's per-round ratios, interpolated to 0.95.
                ratio = ratio_at([(r["recall"], pairs[(name, r["ef"])]["median_ratio"]) for r in rs], 0.95)
                how = "of in process (median of interleaved rounds)"
            print(f"| 0.95 via {e.get('label')} {name} | | {fmt(q, '.0f')} | {fmt(ratio, '.2f')} {how} |")
    for e in extras:
        by = {}
        for r in http_runs(e):
            by.setdefault(r["series"], {})[r["ef"]] = r
        # Paired runs: each ef's median ratio, with the spread of its rounds.
        spread = pairs_of(e)
        names = sorted(by)
        what = "the same segment" if a.same_segment else "its own build"
        rounds = e.get("extra", {}).get("rounds")
        how = f", interleaved, medians of {rounds} rounds (per-round ratios min–max)" if spread else ""
        print(f"\n## over HTTP ({', '.join(e.get('extra', {}).get('urls', []))}) vs in process on {what}, 1 thread{how}")
        print("| ef | recall in process / HTTP | QPS in process | " + " | ".join(f"{n} QPS | {n} / in process | {n} p50/p99 µs" for n in names) + " |")
        print("|---|---|---|" + "---|---|---|" * len(names))
        for ef in sorted(set(sr) & set().union(*[set(v) for v in by.values()])):
            y = sr[ef]
            cells = []
            for n in names:
                r = by[n].get(ef)
                p = spread.get((n, ef))
                ratio = "—"
                if p:
                    rs = p["ratios"]
                    ratio = f"{p['median_ratio']:.2f} ({min(rs):.2f}–{max(rs):.2f})"
                elif r:
                    ratio = f"{r['qps'] / y['qps']:.2f}"
                cells += ["—", "—", "—"] if r is None else [f"{r['qps']:.0f}", ratio, f"{r['p50_us']:.0f} / {r['p99_us']:.0f}"]
            rec = next((by[n][ef]["recall"] for n in names if ef in by[n]), None)
            print(f"| {ef} | {y['recall']:.3f} / {fmt(rec, '.3f')} | {y['qps']:.0f} | " + " | ".join(cells) + " |")
    if a.png:
        import subprocess

        here = os.path.dirname(os.path.abspath(__file__))
        subprocess.run([sys.executable, os.path.join(here, "plot_bench.py"), "--out", a.png, a.shoal, a.hnswlib, *a.extra], check=True)
        print(f"\nplot: {a.png}")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    h = sub.add_parser("hnswlib")
    h.add_argument("--data", required=True)
    h.add_argument("--queries", required=True)
    h.add_argument("--gt", required=True)
    h.add_argument("--m", type=int, default=16)
    h.add_argument("--ef-construct", type=int, default=100)
    h.add_argument("--ef", type=lambda s: [int(x) for x in s.split(",")], default=[32, 48, 64, 96, 128, 256])
    h.add_argument("--k", type=int, default=10)
    h.add_argument("--warmup", type=int, default=100)
    h.add_argument("--min-secs", type=float, default=3.0)
    h.add_argument("--metric", default="euclid")
    h.add_argument("--out", required=True)
    c = sub.add_parser("compare")
    c.add_argument("--shoal", required=True)
    c.add_argument("--hnswlib", required=True)
    c.add_argument("--extra", nargs="*", default=[])
    c.add_argument("--png")
    c.add_argument("--same-segment", help="shoal-bench --segment result on the HTTP node's segment")
    a = ap.parse_args()
    run_hnswlib(a) if a.cmd == "hnswlib" else compare(a)


if __name__ == "__main__":
    main()
