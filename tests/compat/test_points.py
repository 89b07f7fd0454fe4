"""Point operations on collections the tests write to: retrieve, scroll, count, payload changes by
ids and by filter, deletes by ids and by filter, vector updates — each checked against the Python
model of what the collection must hold. Tests in this module run in order and build on each other."""

import numpy as np
import pytest
from qdrant_client import models

from support import (
    SCORE_TOL,
    Loaded,
    assert_exact_results,
    id_order_key,
    normalise_id,
    raw,
    recall,
)

F = models.FieldCondition
MV = models.MatchValue
EXACT = models.SearchParams(exact=True)
CASES = [(models.Distance.COSINE, True), (models.Distance.MANHATTAN, False)]


@pytest.fixture(scope="module", params=CASES, ids=lambda c: f"{c[0].value}-{'hnsw' if c[1] else 'flat'}")
def rw(request, indexed_node, plain_node):
    metric, indexed = request.param
    node = indexed_node if indexed else plain_node
    return Loaded(node, f"rw_{metric.value.lower()}", metric, indexed, seed=11)


def scroll_all(rw, flt=None, page=100, with_vectors=False) -> list:
    out, offset = [], None
    while True:
        points, offset = rw.client.scroll(
            rw.name, scroll_filter=flt, limit=page, offset=offset, with_payload=True, with_vectors=with_vectors
        )
        assert len(points) <= page
        out += points
        if offset is None:
            return out


def assert_matches_model(rw, with_vectors=False) -> None:
    """Every point exactly once, in id order, with the model's payload (and vector)."""
    m = rw.model
    points = scroll_all(rw, with_vectors=with_vectors)
    ids = [normalise_id(p.id) for p in points]
    assert ids == sorted(m.payloads, key=id_order_key)
    for p, pid in zip(points, ids):
        assert p.payload == m.payloads[pid], pid
        if with_vectors:
            np.testing.assert_allclose(p.vector, m.vectors[pid], atol=1e-5)
    assert rw.client.count(rw.name, exact=True).count == len(m.payloads)
    assert rw.client.get_collection(rw.name).points_count == len(m.payloads)


def retrieve_payloads(rw, ids) -> dict:
    return {normalise_id(r.id): r.payload for r in rw.client.retrieve(rw.name, ids=ids, with_payload=True)}


# ------------------------------------------------------------------------------------------------


def test_scroll_everything_once_in_id_order(rw):
    assert_matches_model(rw, with_vectors=True)
    ids = [normalise_id(p.id) for p in scroll_all(rw, page=100)]
    # integers first, then UUIDs
    kinds = [isinstance(i, int) for i in ids]
    assert kinds == sorted(kinds, reverse=True) and kinds.count(False) == 600


def test_scroll_from_an_offset(rw):
    order = sorted(rw.model.payloads, key=id_order_key)
    for start in (order[0], order[1234], order[2399], order[2400], order[-1]):
        points, nxt = rw.client.scroll(rw.name, limit=50, offset=start, with_payload=False)
        k = order.index(start)
        assert [normalise_id(p.id) for p in points] == order[k: k + 50]
        assert normalise_id(nxt) == (order[k + 50] if k + 50 < len(order) else None)
        assert all(p.payload is None for p in points)


def test_retrieve(rw):
    m = rw.model
    ids = rw.ids[:20] + rw.ids[-20:]
    missing = [10**12, "00000000-0000-4000-8000-000000000000"]
    got = rw.client.retrieve(rw.name, ids=ids + missing, with_payload=True, with_vectors=True)
    assert sorted((normalise_id(r.id) for r in got), key=id_order_key) == sorted(ids, key=id_order_key)
    for r in got:
        pid = normalise_id(r.id)
        assert r.payload == m.payloads[pid]
        np.testing.assert_allclose(r.vector, m.vectors[pid], atol=1e-5)

    got = rw.client.retrieve(rw.name, ids=ids, with_payload=False, with_vectors=False)
    assert len(got) == len(ids) and all(r.payload is None and r.vector is None for r in got)

    got = rw.client.retrieve(rw.name, ids=ids, with_payload=["color", "meta"])
    for r in got:
        full = m.payloads[normalise_id(r.id)]
        assert r.payload == {k: full[k] for k in ("color", "meta") if k in full}

    assert rw.client.retrieve(rw.name, ids=missing) == []

    # GET /collections/{c}/points/{id}: one record; 404 for a missing id
    pid = rw.ids[-1]
    r = raw(rw.node, "GET", f"/collections/{rw.name}/points/{pid}")
    assert r.status_code == 200, r.text
    rec = models.Record.model_validate(r.json()["result"])
    assert normalise_id(rec.id) == pid and rec.payload == m.payloads[pid]
    assert raw(rw.node, "GET", f"/collections/{rw.name}/points/{10**12}").status_code == 404


def test_count(rw):
    m = rw.model
    assert rw.client.count(rw.name, exact=True).count == len(m.payloads)
    flt = models.Filter(must=[F(key="group", match=MV(value=2))], must_not=[F(key="flag", match=MV(value=False))])
    assert rw.client.count(rw.name, count_filter=flt, exact=True).count == len(m.select(flt))


def test_set_payload_by_ids(rw):
    m = rw.model
    ids = rw.ids[100:140]
    add = {"color": "purple", "added": {"x": 1, "y": [1, 2]}, "nothing": None}
    rw.client.set_payload(rw.name, payload=add, points=ids, wait=True)
    for pid in ids:
        m.set_payload(pid, {**m.payloads[pid], **add})
    assert retrieve_payloads(rw, ids) == {pid: m.payloads[pid] for pid in ids}

    # `key`: merge into the object at a nested path
    with_meta = [pid for pid in rw.ids[200:260] if isinstance(m.payloads[pid].get("meta"), dict)][:20]
    rw.client.set_payload(rw.name, payload={"level": 99, "extra": True}, points=with_meta, key="meta", wait=True)
    for pid in with_meta:
        p = dict(m.payloads[pid])
        p["meta"] = {**p["meta"], "level": 99, "extra": True}
        m.set_payload(pid, p)
    assert retrieve_payloads(rw, with_meta) == {pid: m.payloads[pid] for pid in with_meta}

    purple = models.Filter(must=[F(key="color", match=MV(value="purple"))])
    assert rw.client.count(rw.name, count_filter=purple).count == len(ids)
    lvl = models.Filter(must=[F(key="meta.level", match=MV(value=99))])
    assert rw.client.count(rw.name, count_filter=lvl).count == len(with_meta)


def test_overwrite_delete_clear_payload_by_ids(rw):
    m = rw.model
    ids = rw.ids[300:330]
    rw.client.overwrite_payload(rw.name, payload={"only": 1, "tags": ["new"]}, points=ids, wait=True)
    for pid in ids:
        m.set_payload(pid, {"only": 1, "tags": ["new"]})
    assert retrieve_payloads(rw, ids) == {pid: m.payloads[pid] for pid in ids}

    ids = rw.ids[400:450]
    rw.client.delete_payload(rw.name, keys=["price", "meta.level", "not_there"], points=ids, wait=True)
    for pid in ids:
        p = {k: v for k, v in m.payloads[pid].items() if k != "price"}
        if isinstance(p.get("meta"), dict):
            p["meta"] = {k: v for k, v in p["meta"].items() if k != "level"}
        m.set_payload(pid, p)
    assert retrieve_payloads(rw, ids) == {pid: m.payloads[pid] for pid in ids}

    ids = rw.ids[500:520]
    rw.client.clear_payload(rw.name, points_selector=models.PointIdsList(points=ids), wait=True)
    for pid in ids:
        m.set_payload(pid, {})
    assert retrieve_payloads(rw, ids) == {pid: {} for pid in ids}
    assert_matches_model(rw)


def test_payload_changes_by_filter(rw):
    m = rw.model
    blue = models.Filter(must=[F(key="color", match=MV(value="blue"))])
    rw.client.set_payload(rw.name, payload={"blue_mark": True}, points=blue, wait=True)
    for pid in m.select(blue):
        m.set_payload(pid, {**m.payloads[pid], "blue_mark": True})

    g8 = models.Filter(must=[F(key="group", match=MV(value=8))])
    rw.client.overwrite_payload(rw.name, payload={"group": 8, "over": "yes"}, points=g8, wait=True)
    for pid in m.select(g8):
        m.set_payload(pid, {"group": 8, "over": "yes"})

    unflagged = models.Filter(must=[F(key="flag", match=MV(value=False))])
    rw.client.delete_payload(rw.name, keys=["tags", "note"], points=unflagged, wait=True)
    for pid in m.select(unflagged):
        m.set_payload(pid, {k: v for k, v in m.payloads[pid].items() if k not in ("tags", "note")})

    rare = models.Filter(must=[F(key="rare", match=MV(value="yes"))])
    cleared = list(m.select(rare))
    assert cleared
    rw.client.clear_payload(rw.name, points_selector=models.FilterSelector(filter=rare), wait=True)
    for pid in cleared:
        m.set_payload(pid, {})

    assert_matches_model(rw)
    for flt in (blue, g8, unflagged, rare, models.Filter(must=[F(key="blue_mark", match=MV(value=True))])):
        assert rw.client.count(rw.name, count_filter=flt).count == len(m.select(flt))


def test_upsert_replaces_payload(rw):
    m = rw.model
    pid = rw.ids[600]
    vec = rw.vectors[600]
    rw.client.upsert(rw.name, points=[models.PointStruct(id=pid, vector=vec.tolist(), payload={"fresh": 1})], wait=True)
    m.upsert(pid, vec, {"fresh": 1})
    assert retrieve_payloads(rw, [pid]) == {pid: {"fresh": 1}}


def _assert_gone(rw, deleted: list) -> None:
    m = rw.model
    assert rw.client.retrieve(rw.name, ids=deleted) == []
    assert_matches_model(rw)
    dead = set(deleted)
    for pid in deleted[:25]:
        # the vector of a deleted point: it must not come back, exact or HNSW
        q = rw.vectors[rw.ids.index(pid)]
        exact = rw.client.query_points(rw.name, query=q.tolist(), limit=10, search_params=EXACT).points
        assert_exact_results(m, q, exact, m.top(q, 10))
        for params in (None, models.SearchParams(hnsw_ef=128)):
            got = rw.client.query_points(rw.name, query=q.tolist(), limit=10, search_params=params).points
            got_ids = [normalise_id(p.id) for p in got]
            assert len(got) == 10 and not dead & set(got_ids), got_ids
            assert all(g in m.payloads for g in got_ids)


def test_delete_by_ids(rw):
    m = rw.model
    deleted = rw.ids[700:800]  # integers and UUIDs
    r = rw.client.delete(rw.name, points_selector=deleted + [10**12], wait=True)
    assert r.status == models.UpdateStatus.COMPLETED
    m.delete(deleted)
    _assert_gone(rw, deleted)
    # deleting again is a no-op
    rw.client.delete(rw.name, points_selector=models.PointIdsList(points=deleted[:5]), wait=True)
    assert rw.client.count(rw.name).count == len(m.payloads)


def test_delete_by_filter(rw):
    m = rw.model
    flt = models.Filter(must=[F(key="group", match=MV(value=4)), F(key="flag", match=MV(value=True))])
    deleted = list(m.select(flt))
    assert len(deleted) > 50
    rw.client.delete(rw.name, points_selector=models.FilterSelector(filter=flt), wait=True)
    m.delete(deleted)
    assert rw.client.count(rw.name, count_filter=flt).count == 0
    _assert_gone(rw, deleted)


def test_search_after_writes_matches_brute_force(rw):
    m = rw.model
    recalls = []
    for q in rw.queries[:30]:
        got = rw.client.query_points(rw.name, query=q.tolist(), limit=10, search_params=EXACT).points
        expected = m.top(q, 10)
        assert_exact_results(m, q, got, expected)
        got = rw.client.query_points(rw.name, query=q.tolist(), limit=10).points
        recalls.append(recall([normalise_id(p.id) for p in got], [p for p, _ in expected]))
    assert np.mean(recalls) >= 0.95


def test_vector_update_moves_the_point(rw):
    m = rw.model
    live = [pid for pid in rw.ids[900:1000] if pid in m.payloads][:8]
    rng = np.random.default_rng(5)
    old = {pid: rw.vectors[rw.ids.index(pid)] for pid in live}
    new = {pid: (-old[pid] + 0.05 * rng.normal(size=m.dim)).astype(np.float32) for pid in live}
    rw.client.upsert(
        rw.name,
        points=[models.PointStruct(id=pid, vector=new[pid].tolist(), payload=m.payloads[pid]) for pid in live],
        wait=True,
    )
    for pid in live:
        m.upsert(pid, new[pid], m.payloads[pid])
    for pid in live:
        # found at its new place, exact and HNSW
        got = rw.client.query_points(rw.name, query=new[pid].tolist(), limit=10, search_params=EXACT).points
        assert_exact_results(m, new[pid], got, m.top(new[pid], 10))
        assert normalise_id(got[0].id) == pid
        got = rw.client.query_points(rw.name, query=new[pid].tolist(), limit=10).points
        assert normalise_id(got[0].id) == pid
        # and not at its old one
        assert pid not in [p for p, _ in m.top(old[pid], 10)]
        for params in (EXACT, None):
            got = rw.client.query_points(rw.name, query=old[pid].tolist(), limit=10, search_params=params).points
            assert pid not in [normalise_id(p.id) for p in got]
        rec = rw.client.retrieve(rw.name, ids=[pid], with_vectors=True)[0]
        np.testing.assert_allclose(rec.vector, m.vectors[pid], atol=1e-5)


def test_new_points_after_indexing_are_found(rw):
    m = rw.model
    rng = np.random.default_rng(9)
    ids = [10**9 + k for k in range(20)] + [f"00000000-0000-4000-8000-{k:012d}" for k in range(20)]
    vecs = rng.normal(size=(len(ids), m.dim)).astype(np.float32) * 3
    rw.client.upsert(rw.name, points=models.Batch(ids=ids, vectors=vecs.tolist(), payloads=[{"late": True}] * len(ids)), wait=True)
    for pid, v in zip(ids, vecs):
        m.upsert(pid, v, {"late": True})
    for pid, v in zip(ids, vecs):
        got = rw.client.query_points(rw.name, query=v.tolist(), limit=1).points
        assert normalise_id(got[0].id) == pid and abs(got[0].score - m.score(v, [pid])[0]) <= SCORE_TOL
    assert_matches_model(rw)
