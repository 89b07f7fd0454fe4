"""Vector updates and deletes, batches of writes and group searches through the official client, on
one node (HNSW segments built, so updated points are sealed ones) and on a 3-node cluster (3 shards,
2 replicas each): every answer is checked against the brute-force model."""

import numpy as np
import pytest
from qdrant_client import models
from qdrant_client.http.exceptions import UnexpectedResponse

from support import (METRICS, _flat, _values, assert_exact_results, create, filter_matches, make_dataset,
                     normalise_id, queries, raw, upload, wait_indexed)
from test_cluster import cluster  # noqa: F401  (the 3-node cluster fixture)

METRIC = models.Distance.COSINE
DIM = METRICS[METRIC][0]
EXACT = models.SearchParams(exact=True)
F = models.FieldCondition
MV = models.MatchValue
N = 1500
MISSING = 10**12 + 7  # ids of the data set are below 10 * N


class Target:
    """Where a test writes (`write`) and reads (`read`): one node, or two nodes of the cluster."""

    def __init__(self, write_node, read_node, shards: int, replicas: int):
        self.node = write_node
        self.write = write_node.client()
        self.read = read_node.client()
        self.read_node = read_node
        self.shards, self.replicas = shards, replicas


@pytest.fixture(scope="module", params=["node", "cluster"])
def target(request):
    if request.param == "node":
        node = request.getfixturevalue("indexed_node")
        return Target(node, node, 1, 1)
    nodes = request.getfixturevalue("cluster")
    return Target(nodes[0], nodes[2], 3, 2)


_count = [0]


class Coll:
    """A fresh collection of N points, indexed, and its model."""

    def __init__(self, t: Target, seed: int):
        _count[0] += 1
        self.t, self.name = t, f"ops_{_count[0]}_{seed}"
        t.write.create_collection(self.name, vectors_config=models.VectorParams(size=DIM, distance=METRIC),
                                  shard_number=t.shards, replication_factor=t.replicas)
        self.model, self.ids, self.vectors, self.payloads = make_dataset(METRIC, n=N, n_uuid=150, seed=seed)
        upload(t.write, self.name, self.ids, self.vectors, self.payloads)
        wait_indexed(t.write, self.name, at_least=N // 2)


def check_points(c: Coll, pids) -> None:
    """Retrieved through the read node: the model's payloads and vectors, missing ids absent."""
    m = c.model
    got = {normalise_id(r.id): r for r in c.t.read.retrieve(c.name, ids=list(pids), with_payload=True,
                                                            with_vectors=True)}
    assert set(got) == {p for p in pids if p in m.payloads}
    for pid, r in got.items():
        assert r.payload == m.payloads[pid], pid
        np.testing.assert_allclose(r.vector, m.vectors[pid], atol=1e-5)


def check_search(c: Coll, qs, flt=None) -> None:
    for q in qs:
        got = c.t.read.query_points(c.name, query=q.tolist(), query_filter=flt, limit=10,
                                    search_params=EXACT).points
        assert_exact_results(c.model, q, got, c.model.top(q, 10, flt), flt)


def error_of(call) -> tuple[int, str]:
    with pytest.raises(UnexpectedResponse) as e:
        call()
    return e.value.status_code, e.value.content.decode()


# ---------------------------------------------------------------------------------------------
# update_vectors
# ---------------------------------------------------------------------------------------------


def test_update_vectors_moves_sealed_points(target):
    c, m = Coll(target, seed=21), None
    m = c.model
    rng = np.random.default_rng(3)
    pids = c.ids[:40]
    old = {pid: c.vectors[c.ids.index(pid)] for pid in pids}
    new = {pid: rng.normal(size=DIM) for pid in pids}
    # Plain lists, then the default name's form `{"": [...]}`.
    r = target.write.update_vectors(c.name, points=[models.PointVectors(id=p, vector=new[p].tolist())
                                                    for p in pids[:20]], wait=True)
    assert r.status == models.UpdateStatus.COMPLETED
    r = target.write.update_vectors(c.name, points=[models.PointVectors(id=p, vector={"": new[p].tolist()})
                                                    for p in pids[20:]], wait=True)
    assert r.status == models.UpdateStatus.COMPLETED
    for p in pids:
        m.vectors[p] = m.prepare(new[p])
    check_points(c, pids)  # payloads kept
    # Found by the new vector, exact and through HNSW; the old one finds what brute force says.
    for p in pids[:12]:
        got = target.read.query_points(c.name, query=new[p].tolist(), limit=5, search_params=EXACT).points
        assert_exact_results(m, new[p], got, m.top(new[p], 5))
        assert normalise_id(got[0].id) == p
        got = target.read.query_points(c.name, query=new[p].tolist(), limit=5).points
        assert normalise_id(got[0].id) == p
    check_search(c, [old[p] for p in pids[:12]])
    assert target.read.count(c.name, exact=True).count == N

    # A missing point: Qdrant's 404, and nothing of the request is written.
    before = target.read.retrieve(c.name, ids=[pids[0]], with_vectors=True)[0].vector
    status, body = error_of(lambda: target.write.update_vectors(c.name, points=[
        models.PointVectors(id=pids[0], vector=[1.0] * DIM), models.PointVectors(id=MISSING, vector=[1.0] * DIM)],
        wait=True))
    assert status == 404 and f"No point with id {MISSING} found" in body, body
    np.testing.assert_allclose(target.read.retrieve(c.name, ids=[pids[0]], with_vectors=True)[0].vector, before)
    # An unknown vector name, a wrong dimension, no points: 400s in Qdrant's error shape.
    for body in ({"points": [{"id": pids[1], "vector": {"image": [0.5] * DIM}}]},
                 {"points": [{"id": pids[1], "vector": [0.5] * (DIM + 1)}]},
                 {"points": []}):
        r = raw(target.node, "PUT", f"/collections/{c.name}/points/vectors?wait=true", body)
        assert r.status_code == 400, r.text
        assert r.json()["status"]["error"], r.text
    r = raw(target.node, "PUT", f"/collections/{c.name}/points/vectors?wait=true",
            {"points": [{"id": pids[1], "vector": {"image": [0.5] * DIM}}]})
    assert "Not existing vector name error: image" in r.json()["status"]["error"]
    check_points(c, pids)
    target.write.delete_collection(c.name)


# ---------------------------------------------------------------------------------------------
# delete_vectors
# ---------------------------------------------------------------------------------------------


def test_delete_vectors_keeps_the_point_out_of_searches(target):
    c = Coll(target, seed=24)
    m = c.model
    pids = c.ids[:20]
    flt = models.Filter(must=[F(key="group", match=MV(value=4)), F(key="color", match=MV(value="blue"))])
    r = target.write.delete_vectors(c.name, vectors=[""], points=pids, wait=True)
    assert r.status == models.UpdateStatus.COMPLETED
    target.write.delete_vectors(c.name, vectors=[""], points=models.FilterSelector(filter=flt), wait=True)
    vectorless = list(dict.fromkeys(pids + list(m.select(flt))))
    assert len(vectorless) > len(pids)
    # The points stay, with their payloads; their vector is Qdrant's empty `{}`.
    got = target.read.retrieve(c.name, ids=vectorless, with_vectors=True, with_payload=True)
    assert len(got) == len(vectorless)
    for r in got:
        assert r.payload == m.payloads[normalise_id(r.id)] and r.vector == {}, r
    assert raw(target.node, "POST", f"/collections/{c.name}/points",
               {"ids": [pids[0]], "with_vector": True}).json()["result"][0]["vector"] == {}
    assert target.read.count(c.name, exact=True).count == N
    assert target.read.count(c.name, count_filter=flt, exact=True).count == len(m.select(flt))
    if target.shards == 1:  # (in a cluster, collection info counts the node's own replicas)
        assert target.read.get_collection(c.name).points_count == N
    # A payload change of a vectorless point keeps it so.
    target.write.set_payload(c.name, payload={"touched": 1}, points=[pids[0]], wait=True)
    m.set_payload(pids[0], {**m.payloads[pids[0]], "touched": 1})
    r = target.read.retrieve(c.name, ids=[pids[0]], with_vectors=True)[0]
    assert r.vector == {} and r.payload == m.payloads[pids[0]]
    # No search finds them, by their old vectors or otherwise, exact or HNSW, filtered or not.
    old = [c.vectors[c.ids.index(p)] for p in vectorless[:8]]
    m.delete(vectorless)
    check_search(c, old)
    check_search(c, old[:3], flt)
    check_search(c, old[:3], models.Filter(must=[F(key="group", match=MV(value=4))]))
    for q in old:
        got = target.read.query_points(c.name, query=q.tolist(), limit=10).points
        assert not {normalise_id(p.id) for p in got} & set(vectorless)
    # A query by the id of a vectorless point is refused.
    r = raw(target.node, "POST", f"/collections/{c.name}/points/query", {"query": pids[1]})
    assert r.status_code == 400 and "has no vector" in r.text, r.text
    # A new vector makes a point searchable again.
    v = np.random.default_rng(9).normal(size=DIM)
    target.write.update_vectors(c.name, points=[models.PointVectors(id=pids[1], vector=v.tolist())], wait=True)
    m.upsert(pids[1], v, c.payloads[c.ids.index(pids[1])])
    check_search(c, [v])
    # Unknown vector names and an empty list: 400s.
    for body in ({"points": [pids[2]], "vector": ["image"]}, {"points": [pids[2]], "vector": []},
                 {"points": [pids[2]]}):
        r = raw(target.node, "POST", f"/collections/{c.name}/points/vectors/delete?wait=true", body)
        assert r.status_code == 400, r.text
    target.write.delete_collection(c.name)


# ---------------------------------------------------------------------------------------------
# batch_update_points
# ---------------------------------------------------------------------------------------------


def test_batch_applies_in_order(target):
    c = Coll(target, seed=22)
    m = c.model
    rng = np.random.default_rng(4)
    fresh, fresh2 = MISSING + 1, "8c5a3d0e-5b7a-4a44-9f51-0c2a1e1f0b77"
    v1, v2, v3 = (rng.normal(size=DIM) for _ in range(3))
    a, b, cc, d, gone = [p for p in c.ids if "rare" not in m.payloads[p]][1:6]
    rare = models.Filter(must=[F(key="rare", match=MV(value="yes"))])
    reds = models.Filter(must=[F(key="color", match=MV(value="red")), F(key="group", match=MV(value=3))])
    ops = [
        models.UpsertOperation(upsert=models.PointsList(points=[
            models.PointStruct(id=fresh, vector=v1.tolist(), payload={"batch": 1}),
            models.PointStruct(id=fresh2, vector=v3.tolist(), payload={"batch": 2})])),
        models.DeleteOperation(delete=models.PointIdsList(points=[gone])),
        models.DeleteOperation(delete=models.FilterSelector(filter=rare)),
        models.SetPayloadOperation(set_payload=models.SetPayload(payload={"k": 1}, points=[a, fresh])),
        models.OverwritePayloadOperation(overwrite_payload=models.SetPayload(payload={"only": True}, points=[b])),
        models.DeletePayloadOperation(delete_payload=models.DeletePayload(keys=["color"], points=[cc])),
        models.ClearPayloadOperation(clear_payload=models.PointIdsList(points=[d])),
        models.SetPayloadOperation(set_payload=models.SetPayload(payload={"red3": True}, filter=reds)),
        models.UpdateVectorsOperation(update_vectors=models.UpdateVectors(points=[
            models.PointVectors(id=fresh, vector=v2.tolist())])),
        models.SetPayloadOperation(set_payload=models.SetPayload(payload={"k": 2}, points=[a])),  # later wins
        models.DeleteVectorsOperation(delete_vectors=models.DeleteVectors(points=[fresh2], vector=[""])),
    ]
    res = target.write.batch_update_points(c.name, ops, wait=True)
    assert len(res) == len(ops)
    assert all(r.status == models.UpdateStatus.COMPLETED for r in res)
    assert [r.operation_id for r in res] == sorted(r.operation_id for r in res)
    # The same, on the model.
    red3 = list(m.select(reds))
    m.upsert(fresh, v1, {"batch": 1})
    m.upsert(fresh2, v3, {"batch": 2})
    m.delete([gone])
    m.delete(list(m.select(rare)))
    m.set_payload(a, {**m.payloads[a], "k": 1})
    m.set_payload(fresh, {**m.payloads[fresh], "k": 1})
    m.set_payload(b, {"only": True})
    m.set_payload(cc, {k: v for k, v in m.payloads[cc].items() if k != "color"})
    m.set_payload(d, {})
    for p in red3:
        if p in m.payloads:
            m.set_payload(p, {**m.payloads[p], "red3": True})
    m.vectors[fresh] = m.prepare(v2)
    m.set_payload(a, {**m.payloads[a], "k": 2})
    assert red3 and len(m.payloads) < N
    # fresh2 lost its vector: it is still there, with its payload, and no search finds it.
    r = target.read.retrieve(c.name, ids=[fresh2], with_vectors=True, with_payload=True)
    assert len(r) == 1 and r[0].vector == {} and r[0].payload == {"batch": 2}
    assert target.read.count(c.name, exact=True).count == len(m.payloads)
    m.delete([fresh2])
    check_points(c, [fresh, a, b, cc, d, gone] + red3[:20] + c.ids[:100])
    check_search(c, [v1, v2, v3] + list(queries(METRIC, n=4)))
    check_search(c, [v2], models.Filter(must=[F(key="red3", match=MV(value=True))]))

    # One bad operation anywhere refuses the whole batch before anything is applied.
    later = MISSING + 2
    for bad in (models.UpdateVectorsOperation(update_vectors=models.UpdateVectors(points=[
                    models.PointVectors(id=a, vector=[1.0] * (DIM - 1))])),
                models.UpsertOperation(upsert=models.PointsList(points=[
                    models.PointStruct(id=later + 1, vector=[1.0] * (DIM + 2))])),
                models.DeletePayloadOperation(delete_payload=models.DeletePayload(keys=["a..b"], points=[a]))):
        batch = [models.UpsertOperation(upsert=models.PointsList(points=[
                     models.PointStruct(id=later, vector=v1.tolist(), payload={})])),
                 models.DeleteOperation(delete=models.PointIdsList(points=[b])),
                 bad]
        status, body = error_of(lambda: target.write.batch_update_points(c.name, batch, wait=True))
        assert status == 400 and "operation 2" in body, body
    r = raw(target.node, "POST", f"/collections/{c.name}/points/batch?wait=true",
            {"operations": [{"upsert": {"points": [{"id": later, "vector": v1.tolist()}]}}, {"explode": {}}]})
    assert r.status_code == 400, r.text
    check_points(c, [later, b])
    assert target.read.count(c.name, exact=True).count == len(m.payloads) + 1  # fresh2
    # A missing point in update_vectors is found when the batch gets there: a 404, as in Qdrant.
    status, body = error_of(lambda: target.write.batch_update_points(c.name, [
        models.UpdateVectorsOperation(update_vectors=models.UpdateVectors(points=[
            models.PointVectors(id=MISSING + 99, vector=v1.tolist())]))], wait=True))
    assert status == 404, body
    target.write.delete_collection(c.name)


# ---------------------------------------------------------------------------------------------
# search_groups / query_points_groups
# ---------------------------------------------------------------------------------------------


def group_ids_of(payload: dict, key: str) -> list:
    out = []
    for v in _flat(_values(payload, key)):
        if (isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool))) and v not in out:
            out.append(v)
    return out


def brute_groups(m, q, key: str, limit: int, size: int, flt=None) -> list:
    """[(group id, [(id, score)])]: groups by their best hit, each with its best `size` hits."""
    groups: dict = {}
    for pid, score in m.top(q, len(m.payloads), flt):
        for g in group_ids_of(m.payloads[pid], key):
            hits = groups.setdefault(g, [])
            if len(hits) < size:
                hits.append((pid, score))
    return list(groups.items())[:limit]


def search_groups(t: Target, name: str, **body) -> list:
    """`/points/search/groups`, which qdrant-client 1.20 no longer wraps: its answer read as the
    client's `GroupsResult`."""
    r = raw(t.read_node, "POST", f"/collections/{name}/points/search/groups", body)
    assert r.status_code == 200, r.text
    return models.GroupsResult.model_validate(r.json()["result"]).groups


def check_groups(m, q, got, expected, flt=None) -> None:
    assert [g.id for g in got] == [k for k, _ in expected]
    for g, (_, hits) in zip(got, expected):
        assert_exact_results(m, q, g.hits, hits, flt)


@pytest.fixture(scope="module")
def grouped(target):
    c = Coll(target, seed=23)
    # The lookup collection: one point per value of `group` (ids 0..9).
    lookup = f"{c.name}_docs"
    target.write.create_collection(lookup, vectors_config=models.VectorParams(size=4, distance=models.Distance.DOT),
                                   shard_number=target.shards, replication_factor=target.replicas)
    target.write.upsert(lookup, points=[models.PointStruct(id=i, vector=[float(i), 1.0, 0.0, 0.0],
                                                           payload={"title": f"doc {i}"}) for i in range(10)],
                        wait=True)
    yield c, lookup
    target.write.delete_collection(c.name)
    target.write.delete_collection(lookup)


@pytest.mark.parametrize("key,limit,size", [
    ("group", 4, 3),        # integers
    ("color", 5, 7),        # strings, every group
    ("tags", 6, 4),         # arrays: a point in every group of its values
    ("meta.origin.country", 3, 2),  # a nested key
    ("rare", 3, 5),         # one group of few points: found by widening, filled by its own search
    ("maybe", 20, 2),       # integers, null and missing: more groups asked than exist
    ("flag", 3, 3),         # booleans make no group
])
def test_search_groups_equal_brute_force(target, grouped, key, limit, size):
    c, _ = grouped
    m = c.model
    for q in queries(METRIC, n=3, seed=31):
        got = search_groups(target, c.name, vector=q.tolist(), group_by=key, limit=limit, group_size=size,
                            params={"exact": True}, with_payload=True)
        check_groups(m, q, got, brute_groups(m, q, key, limit, size))
        for g in got:
            assert all(h.payload == m.payloads[normalise_id(h.id)] for h in g.hits)
            assert all(h.vector is None for h in g.hits)
            assert g.lookup is None
        got = target.read.query_points_groups(c.name, query=q.tolist(), group_by=key, limit=limit, group_size=size,
                                              search_params=EXACT, with_payload=False).groups
        check_groups(m, q, got, brute_groups(m, q, key, limit, size))
        assert all(h.payload is None for g in got for h in g.hits)
    if key == "flag":
        assert got == []


def test_groups_with_filter_threshold_vectors_and_lookup(target, grouped):
    c, lookup = grouped
    m = c.model
    flt = models.Filter(must=[F(key="price", range=models.Range(gte=20.0))])
    q = queries(METRIC, n=1, seed=32)[0]
    got = target.read.query_points_groups(
        c.name, query=q.tolist(), query_filter=flt, group_by="group", limit=5, group_size=3, search_params=EXACT,
        with_vectors=True, with_payload=models.PayloadSelectorInclude(include=["group"]),
        with_lookup=models.WithLookup(collection=lookup, with_payload=True, with_vectors=True)).groups
    check_groups(m, q, got, brute_groups(m, q, "group", 5, 3, flt), flt)
    for g in got:
        assert g.lookup is not None and g.lookup.id == g.id
        assert g.lookup.payload == {"title": f"doc {g.id}"}
        np.testing.assert_allclose(g.lookup.vector, [float(g.id), 1.0, 0.0, 0.0])
        for h in g.hits:
            assert h.payload == {"group": g.id}
            np.testing.assert_allclose(h.vector, m.vectors[normalise_id(h.id)], atol=1e-5)
    # The plain collection name: payload, no vector.
    got = search_groups(target, c.name, vector=q.tolist(), group_by="group", limit=2, group_size=1,
                        params={"exact": True}, with_lookup=lookup)
    assert [g.lookup.payload for g in got] == [{"title": f"doc {g.id}"} for g in got]
    assert all(g.lookup.vector is None for g in got)
    # A string group id names no point: no lookup.
    got = search_groups(target, c.name, vector=q.tolist(), group_by="color", limit=2, group_size=1,
                        with_lookup=lookup)
    assert len(got) == 2 and all(g.lookup is None for g in got)
    # A score threshold keeps every hit on the right side of it.
    best = m.top(q, 50)
    threshold = best[30][1]
    got = search_groups(target, c.name, vector=q.tolist(), group_by="tags", limit=6, group_size=10,
                        score_threshold=threshold, params={"exact": True})
    assert got and all(h.score >= threshold - 1e-6 for g in got for h in g.hits)
    # A query by point id: that point is left out, as in a plain query.
    pid = c.ids[7]
    got = target.read.query_points_groups(c.name, query=pid, group_by="group", limit=3, group_size=2,
                                          search_params=EXACT).groups
    assert pid not in [normalise_id(h.id) for g in got for h in g.hits]
    # HNSW (no exact): close to brute force.
    got = target.read.query_points_groups(c.name, query=q.tolist(), group_by="group", limit=5, group_size=3).groups
    exp = brute_groups(m, q, "group", 5, 3)
    assert len(got) == 5 and len({g.id for g in got} & {k for k, _ in exp}) >= 4


def test_group_errors(target, grouped):
    c, _ = grouped
    q = [0.1] * DIM
    base = f"/collections/{c.name}/points"
    for path, body, status in [
        ("search/groups", {"vector": q, "group_by": "group", "group_size": 0, "limit": 3}, 400),
        ("search/groups", {"vector": q, "group_by": "group", "group_size": 3, "limit": 0}, 400),
        ("search/groups", {"vector": q, "group_by": "group", "group_size": 1000, "limit": 1000}, 400),
        ("search/groups", {"vector": q, "group_by": "a..b", "group_size": 3, "limit": 3}, 400),
        ("search/groups", {"vector": q, "limit": 3, "group_size": 3}, 400),
        ("search/groups", {"vector": q[:-1], "group_by": "group", "group_size": 3, "limit": 3}, 400),
        ("query/groups", {"query": q, "group_by": "group", "with_lookup": "no_such_collection"}, 404),
        ("query/groups", {"query": q, "group_by": "group", "using": "image"}, 400),
    ]:
        r = raw(target.node, "POST", f"{base}/{path}", body)
        assert r.status_code == status, (path, body, r.text)
        assert r.json()["status"]["error"], r.text
    r = raw(target.node, "POST", f"/collections/no_such/points/query/groups", {"query": q, "group_by": "group"})
    assert r.status_code == 404


def test_vector_writes_acknowledged_with_wait_survive_kill_9(own_node):
    client = own_node.client()
    name = "ops_durable"
    create(client, name, METRIC)
    model, ids, vectors, payloads = make_dataset(METRIC, n=800, n_uuid=100, seed=25)
    upload(client, name, ids, vectors, payloads)
    wait_indexed(client, name, at_least=300)
    rng = np.random.default_rng(6)
    moved = {p: rng.normal(size=DIM) for p in ids[:10]}
    client.update_vectors(name, points=[models.PointVectors(id=p, vector=v.tolist()) for p, v in moved.items()],
                          wait=True)
    client.delete_vectors(name, vectors=[""], points=ids[10:15], wait=True)
    client.batch_update_points(name, [
        models.SetPayloadOperation(set_payload=models.SetPayload(payload={"after": 1}, points=ids[:3])),
        models.UpdateVectorsOperation(update_vectors=models.UpdateVectors(points=[
            models.PointVectors(id=ids[20], vector=moved[ids[0]].tolist())])),
    ], wait=True)
    own_node.restart(kill=True)
    client = own_node.client()
    got = {normalise_id(r.id): r for r in client.retrieve(name, ids=ids[:21], with_vectors=True, with_payload=True)}
    for p, v in moved.items():
        np.testing.assert_allclose(got[p].vector, model.prepare(v), atol=1e-5)
    for p in ids[:3]:
        assert got[p].payload == {**model.payloads[p], "after": 1}
    for p in ids[10:15]:
        assert got[p].vector == {} and got[p].payload == model.payloads[p]
    np.testing.assert_allclose(got[ids[20]].vector, model.prepare(moved[ids[0]]), atol=1e-5)
    hits = client.query_points(name, query=moved[ids[0]].tolist(), limit=2, search_params=EXACT).points
    assert {normalise_id(h.id) for h in hits} == {ids[0], ids[20]}
    assert client.count(name, exact=True).count == 800
