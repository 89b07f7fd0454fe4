"""Shared helpers of the compatibility suite (fixtures live in conftest.py).

This module holds the node process wrapper (start/stop/restart a `shoal` process on a temp data dir and a
free loopback port), the seeded data set generator, and a brute-force reference model (numpy
scores + a Python evaluator of Qdrant's filter semantics) that every test compares against.

Binary: env `SHOAL_BIN`, default `target/debug/shoal` relative to the repository root.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import struct
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterable

import httpx
import numpy as np
import pytest
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

REPO_ROOT = Path(__file__).resolve().parents[2]
SCORE_TOL = 1e-4
READY_TIMEOUT_S = 60.0
INDEX_TIMEOUT_S = 120.0

METRICS = {
    # metric -> (vector size, higher score is better)
    models.Distance.COSINE: (24, True),
    models.Distance.DOT: (16, True),
    models.Distance.EUCLID: (32, False),
    models.Distance.MANHATTAN: (20, False),
}


# --------------------------------------------------------------------------------------------
# The node
# --------------------------------------------------------------------------------------------


def shoal_bin() -> Path:
    p = Path(os.environ.get("SHOAL_BIN", "target/debug/shoal"))
    if not p.is_absolute():
        p = REPO_ROOT / p
    if not p.exists():
        pytest.exit(f"shoal binary not found at {p}: build it (cargo build --bin shoal) or set SHOAL_BIN", 2)
    return p


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ShoalNode:
    """One `shoal` process. `restart()` keeps the data dir and the port."""

    def __init__(self, data_dir: Path, log_path: Path, indexing_threshold: int | None = None,
                 host: str = "127.0.0.1", port: int | None = None, peer_port: int | None = None,
                 extra_args: tuple = ()):
        self.data_dir = data_dir
        self.log_path = log_path
        self.indexing_threshold = indexing_threshold
        self.host = host
        self.port = port or free_port()
        self.peer_port = peer_port or free_port()
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen | None = None
        self._clients: list[QdrantClient] = []

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "node already running"
        args = [
            str(shoal_bin()),
            "--data-dir", str(self.data_dir),
            "--listen", f"{self.host}:{self.port}",
            "--peer-listen", f"{self.host}:{self.peer_port}",
            *self.extra_args,
        ]
        if self.indexing_threshold is not None:
            args += ["--indexing-threshold", str(self.indexing_threshold)]
        log = open(self.log_path, "ab")
        log.write(f"\n===== start: {' '.join(args)}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        self.wait_ready()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        last = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"shoal exited with {self.proc.returncode} before ready; log: {self.tail_log()}")
            try:
                r = httpx.get(f"{self.url}/readyz", timeout=2)
                if r.status_code == 200:
                    return
                last = r.status_code
            except httpx.HTTPError as e:
                last = e
            time.sleep(0.1)
        raise RuntimeError(f"shoal not ready after {READY_TIMEOUT_S}s (last: {last}); log: {self.tail_log()}")

    def stop(self, kill: bool = False) -> int:
        """SIGTERM and wait for a clean exit, or SIGKILL. Returns the exit code."""
        for c in self._clients:
            c.close()
        self._clients.clear()
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)
            raise RuntimeError("shoal did not exit within 60 s of SIGTERM")

    def restart(self, kill: bool = False) -> int:
        code = self.stop(kill=kill)
        self.start()
        return code

    def client(self) -> QdrantClient:
        c = QdrantClient(url=self.url, prefer_grpc=False, timeout=30)
        self._clients.append(c)
        return c

    def tail_log(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_bytes()[-n:].decode(errors="replace")
        except OSError:
            return "<no log>"


# --------------------------------------------------------------------------------------------
# A cluster on loopback
# --------------------------------------------------------------------------------------------

SERVICE = "shoal-headless.default.svc.cluster.local"
# The peer port's shared secret: a cluster node does not start without one.
CLUSTER_TOKEN = "compat-cluster-token-5d1e"


class LoopbackDns:
    """Answers A queries for `shoal-<i>.<SERVICE>` from a dict; NXDOMAIN for anything else."""

    def __init__(self, records: dict):
        self.records = records
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                q, addr = self.sock.recvfrom(512)
            except OSError:
                return
            reply = self._answer(q)
            if reply:
                self.sock.sendto(reply, addr)

    def _answer(self, q: bytes):
        if len(q) < 12:
            return None
        i, labels = 12, []
        while i < len(q) and q[i]:
            labels.append(q[i + 1:i + 1 + q[i]].decode(errors="replace").lower())
            i += 1 + q[i]
        qtype = struct.unpack(">H", q[i + 1:i + 3])[0]
        end = i + 5
        ip = self.records.get(".".join(labels))
        answers = [ip] if ip and qtype == 1 else []
        rcode = 0 if ip else 3
        head = q[:2] + bytes([0x84 | (q[2] & 1), 0x80 | rcode]) + struct.pack(">HHHH", 1, len(answers), 0, 0)
        body = q[12:end]
        for a in answers:
            body += b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 1, 4) + socket.inet_aton(a)
        return head + body

    def close(self):
        self.sock.close()


def start_cluster(base: Path, first_ip: int, size: int = 3, indexing_threshold: int = 200):
    """A generator for a module fixture: pods shoal-0..size-1 on 127.0.0.<first_ip + i> (same
    ports), found through a LoopbackDns; yields the nodes, kills them at the end."""
    ips = [f"127.0.0.{first_ip + i}" for i in range(size)]
    dns = LoopbackDns({f"shoal-{i}.{SERVICE}": ips[i] for i in range(size)})
    port, peer_port = free_port(), free_port()
    nodes = []
    try:
        for i in range(size):  # OrderedReady: each pod starts once the previous one is Ready
            args = ("--hostname", f"shoal-{i}", "--service", SERVICE, "--cluster-size", str(size),
                    "--dns-server", f"127.0.0.1:{dns.port}", "--cluster-token", CLUSTER_TOKEN)
            node = ShoalNode(base / f"shoal-{i}", base / f"shoal-{i}.log", indexing_threshold, host=ips[i],
                             port=port, peer_port=peer_port, extra_args=args)
            node.start()
            nodes.append(node)
        yield nodes
    finally:
        for n in nodes:
            n.stop(kill=True)
        dns.close()


def wait_indexed(client: QdrantClient, name: str, at_least: int = 1) -> models.CollectionInfo:
    """Polls the collection until `indexed_vectors_count >= at_least` (HNSW segments built)."""
    deadline = time.monotonic() + INDEX_TIMEOUT_S
    while True:
        info = client.get_collection(name)
        if (info.indexed_vectors_count or 0) >= at_least:
            return info
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{name}: indexed_vectors_count {info.indexed_vectors_count} < {at_least} after {INDEX_TIMEOUT_S}s"
            )
        time.sleep(0.25)


# --------------------------------------------------------------------------------------------
# Data and the brute-force reference model
# --------------------------------------------------------------------------------------------

COLORS = ["red", "green", "blue", "black", "white"]
TAGS = ["alpha", "beta", "gamma", "delta", "eps", "zeta"]
COUNTRIES = ["fr", "de", "jp", "br", "ke"]
WORDS = ["quick", "brown", "fox", "lazy", "dog", "jumps", "over", "river"]


def make_payload(rnd: random.Random, i: int) -> dict:
    p: dict[str, Any] = {"i": i, "group": i % 10, "color": rnd.choice(COLORS)}
    if rnd.random() < 0.9:
        p["price"] = round(rnd.uniform(0, 100), 3)
    p["tags"] = rnd.sample(TAGS, rnd.randint(0, 3))  # sometimes []
    if rnd.random() < 0.7:
        p["nums"] = [rnd.randint(0, 50) for _ in range(rnd.randint(1, 3))]
    if rnd.random() < 0.8:
        p["flag"] = rnd.random() < 0.5
    r = rnd.random()
    if r < 0.05:
        p["note"] = None
    elif r < 0.9:
        p["note"] = " ".join(rnd.choice(WORDS) for _ in range(3)) + f" n{i % 7}"
    if rnd.random() < 0.85:
        p["meta"] = {"level": rnd.randint(0, 4), "origin": {"country": rnd.choice(COUNTRIES)}}
    r = rnd.random()
    if r < 0.3:
        p["maybe"] = None
    elif r < 0.7:
        p["maybe"] = rnd.randint(-5, 5)
    if i % 97 == 3:
        p["rare"] = "yes"  # ~1% of points
    return p


def point_ids(rnd: random.Random, n: int, n_uuid: int) -> list:
    """`n - n_uuid` distinct non-contiguous integers, then `n_uuid` UUID strings; shuffled."""
    ints = rnd.sample(range(1, 10 * n), n - n_uuid)
    uuids = [str(uuid.UUID(int=rnd.getrandbits(128), version=4)) for _ in range(n_uuid)]
    ids = ints + uuids
    rnd.shuffle(ids)
    return ids


def id_order_key(pid) -> tuple:
    """Qdrant's scroll order: all integers ascending, then UUIDs by their bytes."""
    if isinstance(pid, int):
        return (0, pid, b"")
    return (1, 0, uuid.UUID(pid).bytes)


def _values(payload: dict, key: str) -> list:
    """Values at a dotted key, walking objects and arrays of objects (not the last level)."""
    current = [payload]
    for part in key.split("."):
        part = part[:-2] if part.endswith("[]") else part
        nxt = []
        for v in current:
            if isinstance(v, dict):
                if part in v:
                    nxt.append(v[part])
            elif isinstance(v, list):
                nxt.extend(item[part] for item in v if isinstance(item, dict) and part in item)
        current = nxt
    return current


def _flat(values: list) -> list:
    out = []
    for v in values:
        out.extend(v) if isinstance(v, list) else out.append(v)
    return out


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _eq(want, v) -> bool:
    """Qdrant's match.value: bool with bool, integer with integer, keyword with string."""
    if isinstance(want, bool):
        return isinstance(v, bool) and v == want
    if _is_int(want):
        return _is_int(v) and v == want
    return isinstance(v, str) and v == want


def _except_one(excluded: list, v) -> bool:
    """Qdrant's match.except on one value (condition_checker.rs)."""
    if v is None:
        return False
    if isinstance(v, str) and all(isinstance(e, str) for e in excluded):
        return v not in excluded
    if _is_num(v) and all(_is_int(e) for e in excluded):
        return not (float(v).is_integer() and int(v) in excluded)
    return True


def field_matches(cond: models.FieldCondition, payload: dict) -> bool:
    raw = _values(payload, cond.key)
    if not raw:  # missing key: no value can satisfy match/range
        return False
    vals = _flat(raw)
    ok = True
    m = cond.match
    if m is not None:
        if isinstance(m, models.MatchValue):
            ok &= any(_eq(m.value, v) for v in vals)
        elif isinstance(m, models.MatchAny):
            ok &= any(_eq(a, v) for v in vals for a in m.any)
        elif isinstance(m, models.MatchExcept):
            ok &= any(_except_one(list(m.except_), v) for v in vals)
        elif isinstance(m, models.MatchText):
            ok &= any(isinstance(v, str) and m.text in v for v in vals)
        else:
            raise NotImplementedError(m)
    r = cond.range
    if r is not None:
        def holds(x):
            return ((r.lt is None or x < r.lt) and (r.gt is None or x > r.gt)
                    and (r.lte is None or x <= r.lte) and (r.gte is None or x >= r.gte))
        ok &= any(_is_num(v) and holds(v) for v in vals)
    return ok


def condition_matches(cond, pid, payload: dict) -> bool:
    if isinstance(cond, models.FieldCondition):
        return field_matches(cond, payload)
    if isinstance(cond, models.IsEmptyCondition):
        return all(v is None or v == [] for v in _values(payload, cond.is_empty.key))
    if isinstance(cond, models.IsNullCondition):
        return any(v is None for v in _values(payload, cond.is_null.key))
    if isinstance(cond, models.HasIdCondition):
        return pid in {normalise_id(x) for x in cond.has_id}
    if isinstance(cond, models.Filter):
        return filter_matches(cond, pid, payload)
    raise NotImplementedError(type(cond))


def _as_list(x) -> list:
    if x is None:
        return []
    return x if isinstance(x, list) else [x]


def filter_matches(f: models.Filter | None, pid, payload: dict) -> bool:
    """Qdrant's filter semantics (query_checker.rs): must all, should any, must_not none, min_should."""
    if f is None:
        return True
    if f.must is not None and not all(condition_matches(c, pid, payload) for c in _as_list(f.must)):
        return False
    if f.should is not None and not any(condition_matches(c, pid, payload) for c in _as_list(f.should)):
        return False
    if f.must_not is not None and any(condition_matches(c, pid, payload) for c in _as_list(f.must_not)):
        return False
    if f.min_should is not None:
        hits = sum(condition_matches(c, pid, payload) for c in f.min_should.conditions)
        if hits < f.min_should.min_count:
            return False
    return True


def normalise_id(pid):
    if isinstance(pid, uuid.UUID):
        return str(pid)
    if isinstance(pid, str):
        return str(uuid.UUID(pid))
    return pid


class Model:
    """What the collection should hold, and brute-force answers to every question about it."""

    def __init__(self, metric: models.Distance, dim: int):
        self.metric = metric
        self.dim = dim
        self.higher_better = METRICS[metric][1]
        self.vectors: dict = {}  # id -> stored (prepared) float64 vector
        self.payloads: dict = {}  # id -> payload dict
        self._selected: dict = {}  # filter JSON -> matching ids (cleared on every write)

    # ---- writes ----
    def prepare(self, v) -> np.ndarray:
        v = np.asarray(v, dtype=np.float64)
        if self.metric == models.Distance.COSINE:
            n = np.linalg.norm(v)
            v = v / n if n > 0 else v
        return v

    def upsert(self, pid, vector, payload: dict | None) -> None:
        self.vectors[pid] = self.prepare(vector)
        self.payloads[pid] = dict(payload or {})
        self._selected.clear()

    def delete(self, pids: Iterable) -> None:
        for pid in pids:
            self.vectors.pop(pid, None)
            self.payloads.pop(pid, None)
        self._selected.clear()

    def set_payload(self, pid, payload: dict) -> None:
        self.payloads[pid] = payload
        self._selected.clear()

    def select(self, f: models.Filter | None) -> list:
        if f is None:
            return list(self.payloads)
        key = f.model_dump_json()
        if key not in self._selected:
            self._selected[key] = [pid for pid, p in self.payloads.items() if filter_matches(f, pid, p)]
        return self._selected[key]

    # ---- reads ----
    def score(self, query, pids: list) -> np.ndarray:
        q = self.prepare(query)
        if not pids:
            return np.zeros(0)
        m = np.stack([self.vectors[p] for p in pids])
        if self.metric in (models.Distance.COSINE, models.Distance.DOT):
            return m @ q
        if self.metric == models.Distance.EUCLID:
            return np.sqrt(((m - q) ** 2).sum(axis=1))
        return np.abs(m - q).sum(axis=1)

    def top(self, query, limit: int, flt=None, offset: int = 0, threshold: float | None = None) -> list:
        """[(id, score)] best first, exactly as an exact search should answer."""
        pids = self.select(flt)
        s = self.score(query, pids)
        order = np.argsort(-s if self.higher_better else s, kind="stable")
        out = [(pids[i], float(s[i])) for i in order]
        if threshold is not None:
            out = [(p, sc) for p, sc in out if (sc >= threshold if self.higher_better else sc <= threshold)]
        return out[offset: offset + limit]

    def scroll_order(self, flt=None) -> list:
        return sorted(self.select(flt), key=id_order_key)


def assert_exact_results(model: Model, query, got: list, expected: list, flt=None, tol: float = SCORE_TOL) -> None:
    """Server results vs brute force: same length; at every rank the score matches and the point
    returned has (by brute force) that score — so ids and order are equal up to exact ties."""
    got_ids = [normalise_id(p.id) for p in got]
    exp_ids = [p for p, _ in expected]
    assert len(got) == len(expected), f"got {len(got)} results, expected {len(expected)}: {got_ids} vs {exp_ids}"
    assert len(set(got_ids)) == len(got_ids), f"duplicate ids in results: {got_ids}"
    for rank, (p, (eid, escore)) in enumerate(zip(got, expected)):
        pid = normalise_id(p.id)
        assert abs(p.score - escore) <= tol, f"rank {rank}: score {p.score} != brute force {escore} (ids {pid} vs {eid})"
        if pid != eid:
            assert pid in model.vectors, f"rank {rank}: id {pid} is not a live point"
            assert filter_matches(flt, pid, model.payloads[pid]), f"rank {rank}: id {pid} does not match the filter"
            true = float(model.score(query, [pid])[0])
            assert abs(true - escore) <= tol, f"rank {rank}: id {pid} (score {true}) returned instead of {eid} ({escore})"


def recall(got_ids: list, exp_ids: list) -> float:
    return len(set(got_ids) & set(exp_ids)) / max(1, len(exp_ids))


def make_dataset(metric: models.Distance, n: int = 3000, n_uuid: int = 600, seed: int = 1) -> tuple[Model, list, np.ndarray, list]:
    """Seeded (ids, vectors, payloads) for a metric, and the model that holds them."""
    dim = METRICS[metric][0]
    rnd = random.Random(f"{seed}-{metric.value}")
    rng = np.random.default_rng(seed * 1000 + dim)
    ids = point_ids(rnd, n, n_uuid)
    # Clustered vectors: recall on clustered data is a fairer test of the graph than pure noise.
    centers = _centers(dim, seed)
    vectors = (centers[rng.integers(0, 20, n)] + 0.6 * rng.normal(size=(n, dim))).astype(np.float32)
    payloads = [make_payload(rnd, k) for k in range(n)]
    model = Model(metric, dim)
    for pid, v, p in zip(ids, vectors, payloads):
        model.upsert(pid, v, p)
    return model, ids, vectors, payloads


def upload(client: QdrantClient, name: str, ids: list, vectors: np.ndarray, payloads: list, chunk: int = 500) -> None:
    """First half as `PointStruct` lists, second half as columnar `Batch`es; all with wait=True."""
    half = len(ids) // 2
    for s in range(0, half, chunk):
        e = min(s + chunk, half)
        pts = [models.PointStruct(id=ids[k], vector=vectors[k].tolist(), payload=payloads[k]) for k in range(s, e)]
        r = client.upsert(name, points=pts, wait=True)
        assert r.status == models.UpdateStatus.COMPLETED
    for s in range(half, len(ids), chunk):
        e = min(s + chunk, len(ids))
        batch = models.Batch(ids=ids[s:e], vectors=vectors[s:e].tolist(), payloads=payloads[s:e])
        r = client.upsert(name, points=batch, wait=True)
        assert r.status == models.UpdateStatus.COMPLETED


def create(client: QdrantClient, name: str, metric: models.Distance) -> None:
    dim = METRICS[metric][0]
    assert client.create_collection(name, vectors_config=models.VectorParams(size=dim, distance=metric))


def _centers(dim: int, seed: int) -> np.ndarray:
    return np.random.default_rng([seed, dim, 42]).normal(size=(20, dim))


def queries(metric: models.Distance, n: int = 50, seed: int = 7, data_seed: int = 1) -> np.ndarray:
    """Query vectors drawn like the data (same cluster centers), not copies of stored points."""
    dim = METRICS[metric][0]
    rng = np.random.default_rng(seed * 1000 + dim)
    centers = _centers(dim, data_seed)
    return (centers[rng.integers(0, 20, n)] + 0.6 * rng.normal(size=(n, dim))).astype(np.float32)


class Loaded:
    """A collection on a node, filled with a data set, and the model mirroring it."""

    def __init__(self, node: ShoalNode, name: str, metric: models.Distance, indexed: bool, seed: int = 1):
        self.node, self.name, self.metric = node, name, metric
        self.client = node.client()
        create(self.client, name, metric)
        self.model, self.ids, self.vectors, self.payloads = make_dataset(metric, seed=seed)
        upload(self.client, name, self.ids, self.vectors, self.payloads)
        if indexed:
            # With threshold 500 all but at most one shard tail's worth must end up in segments.
            wait_indexed(self.client, name, at_least=len(self.ids) - 500)
        self.queries = queries(metric)


def assert_4xx(call, status=None) -> UnexpectedResponse:
    """The client call fails with a 4xx (that status, if given); returns the error."""
    with pytest.raises(UnexpectedResponse) as e:
        call()
    code = e.value.status_code
    assert 400 <= code < 500, f"status {code}: {e.value.content!r}"
    if status is not None:
        assert code == status, e.value.content
    return e.value


def raw(node: ShoalNode, method: str, path: str, body: Any = None) -> httpx.Response:
    """A raw REST call (routes the client no longer wraps, or bodies it would refuse to build)."""
    return httpx.request(method, f"{node.url}{path}", json=body, timeout=30)
