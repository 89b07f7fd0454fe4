"""Durability: restart the node on the same data dir — gracefully (SIGTERM) and after a SIGKILL that
follows writes made with wait=True — and check that everything is still there: collections and
their config, counts, payloads, vectors, exact search results, and the HNSW segments (reloaded from
disk, so `indexed_vectors_count` > 0 as soon as the node is ready)."""

import signal

import numpy as np
import pytest
from qdrant_client import models

from support import (
    Loaded,
    assert_exact_results,
    id_order_key,
    normalise_id,
    recall,
)

F = models.FieldCondition
MV = models.MatchValue
EXACT = models.SearchParams(exact=True)
METRICS = [models.Distance.COSINE, models.Distance.EUCLID]


@pytest.fixture(scope="module")
def colls(own_node):
    out = [Loaded(own_node, f"persist_{m.value.lower()}", m, indexed=True, seed=31) for m in METRICS]
    for c in out:
        _some_writes(c, salt=0)
    return out


def _some_writes(c: Loaded, salt: int) -> None:
    """Deletes, payload changes and vector updates, all with wait=True, mirrored in the model."""
    m = c.model
    live = [pid for pid in c.ids if pid in m.payloads]
    rng = np.random.default_rng(salt)
    # delete by ids and by filter
    gone = live[salt * 50: salt * 50 + 40]
    c.client.delete(c.name, points_selector=gone, wait=True)
    m.delete(gone)
    flt = models.Filter(must=[F(key="group", match=MV(value=salt % 10)), F(key="color", match=MV(value="green"))])
    gone = list(m.select(flt))
    c.client.delete(c.name, points_selector=models.FilterSelector(filter=flt), wait=True)
    m.delete(gone)
    # payload changes
    live = [pid for pid in c.ids if pid in m.payloads]
    ids = live[1000 + salt * 30: 1000 + salt * 30 + 25]
    c.client.set_payload(c.name, payload={"restart": salt, "nested": {"k": [salt, None]}}, points=ids, wait=True)
    for pid in ids:
        m.set_payload(pid, {**m.payloads[pid], "restart": salt, "nested": {"k": [salt, None]}})
    ids = live[1500 + salt * 10: 1500 + salt * 10 + 5]
    c.client.overwrite_payload(c.name, payload={"over": salt}, points=ids, wait=True)
    for pid in ids:
        m.set_payload(pid, {"over": salt})
    # vector updates and new points
    ids = live[2000 + salt * 10: 2000 + salt * 10 + 10] + [f"00000000-0000-4000-8000-{salt:06d}{k:06d}" for k in range(10)]
    vecs = rng.normal(size=(len(ids), m.dim)).astype(np.float32)
    c.client.upsert(
        c.name, points=models.Batch(ids=ids, vectors=vecs.tolist(), payloads=[{"v": salt}] * len(ids)), wait=True
    )
    for pid, v in zip(ids, vecs):
        m.upsert(pid, v, {"v": salt})


def _check_everything(c: Loaded) -> None:
    m = c.model
    client = c.client
    assert client.collection_exists(c.name)
    info = client.get_collection(c.name)
    assert info.config.params.vectors.distance == c.metric
    assert info.config.params.vectors.size == m.dim
    assert info.points_count == len(m.payloads)
    assert client.count(c.name, exact=True).count == len(m.payloads)
    # every point once, in order, with payload and vector
    seen, offset = [], None
    while True:
        page, offset = client.scroll(c.name, limit=100, offset=offset, with_payload=True, with_vectors=True)
        for p in page:
            pid = normalise_id(p.id)
            assert p.payload == m.payloads[pid], pid
            np.testing.assert_allclose(p.vector, m.vectors[pid], atol=1e-5)
            seen.append(pid)
        if offset is None:
            break
    assert seen == sorted(m.payloads, key=id_order_key)
    # search: exact equals brute force, HNSW recall
    recalls = []
    for q in c.queries[:25]:
        got = client.query_points(c.name, query=q.tolist(), limit=10, search_params=EXACT).points
        expected = m.top(q, 10)
        assert_exact_results(m, q, got, expected)
        got = client.query_points(c.name, query=q.tolist(), limit=10).points
        recalls.append(recall([normalise_id(p.id) for p in got], [p for p, _ in expected]))
    assert np.mean(recalls) >= 0.95
    flt = models.Filter(must=[F(key="restart", match=MV(value=0))])
    assert client.count(c.name, count_filter=flt).count == len(m.select(flt))


def _reconnect(colls, node) -> None:
    client = node.client()
    for c in colls:
        c.client = client


def test_before_restart(colls):
    for c in colls:
        _check_everything(c)


def test_graceful_restart(own_node, colls):
    code = own_node.restart(kill=False)
    assert code == 0, f"shoal exited with {code} on SIGTERM"
    _reconnect(colls, own_node)
    # The first thing asked after readiness: segments are back without a rebuild.
    for c in colls:
        assert (c.client.get_collection(c.name).indexed_vectors_count or 0) > 0, c.name
    assert {c.name for c in colls} <= {x.name for x in colls[0].client.get_collections().collections}
    for c in colls:
        _check_everything(c)


def test_sigkill_after_acknowledged_writes(own_node, colls):
    for c in colls:
        _some_writes(c, salt=1)
        _check_everything(c)
    code = own_node.restart(kill=True)
    assert code == -signal.SIGKILL
    _reconnect(colls, own_node)
    for c in colls:
        assert (c.client.get_collection(c.name).indexed_vectors_count or 0) > 0, c.name
    for c in colls:
        _check_everything(c)


def test_writes_after_recovery_then_restart_again(own_node, colls):
    for c in colls:
        _some_writes(c, salt=2)
    own_node.restart(kill=False)
    _reconnect(colls, own_node)
    for c in colls:
        _check_everything(c)
