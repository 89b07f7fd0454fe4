"""Client errors: the client raises `UnexpectedResponse` with a 4xx status and Qdrant's error body,
and the collection is left exactly as it was."""

import pytest
from qdrant_client import models

from support import METRICS, assert_4xx, create, make_dataset, normalise_id, raw, upload

METRIC = models.Distance.DOT
DIM = METRICS[METRIC][0]


@pytest.fixture(scope="module")
def coll(plain_node):
    client = plain_node.client()
    name = "errors"
    create(client, name, METRIC)
    model, ids, vectors, payloads = make_dataset(METRIC, n=500, n_uuid=100, seed=21)
    upload(client, name, ids, vectors, payloads, chunk=250)
    return plain_node, client, name, model


def assert_unchanged(coll) -> None:
    node, client, name, model = coll
    assert client.count(name, exact=True).count == len(model.payloads)
    sample = list(model.payloads)[:50]
    got = {normalise_id(r.id): r.payload for r in client.retrieve(name, ids=sample)}
    assert got == {pid: model.payloads[pid] for pid in sample}


def test_wrong_vector_size(coll):
    node, client, name, model = coll
    e = assert_4xx(lambda: client.upsert(name, points=[models.PointStruct(id=10**8, vector=[0.1] * (DIM + 1))]))
    assert b"error" in e.content
    # one bad point in a batch: nothing of the batch is applied
    good = [models.PointStruct(id=10**8 + k, vector=[0.5] * DIM, payload={"k": k}) for k in range(5)]
    bad = models.PointStruct(id=10**8 + 9, vector=[0.5] * (DIM - 1))
    assert_4xx(lambda: client.upsert(name, points=good + [bad] + good[:0]))
    assert_4xx(lambda: client.upsert(name, points=models.Batch(ids=[10**8, 10**8 + 1], vectors=[[0.1] * DIM, [0.1] * 3])))
    assert client.retrieve(name, ids=[p.id for p in good]) == []
    # and an existing point's vector is not replaced by a bad one
    pid = next(iter(model.payloads))
    assert_4xx(lambda: client.upsert(name, points=[models.PointStruct(id=pid, vector=[1.0] * (DIM + 3), payload={})]))
    # querying with the wrong size
    assert_4xx(lambda: client.query_points(name, query=[0.1] * (DIM - 1), limit=3))
    assert_4xx(lambda: client.query_points(name, query=[0.1] * (DIM + 1), limit=3, search_params=models.SearchParams(exact=True)))
    assert_unchanged(coll)


def test_unknown_collection(coll):
    node, client, name, model = coll
    nope = "no_such_collection"
    assert client.collection_exists(nope) is False
    assert_4xx(lambda: client.get_collection(nope), 404)
    assert_4xx(lambda: client.upsert(nope, points=[models.PointStruct(id=1, vector=[0.1] * DIM)]), 404)
    assert_4xx(lambda: client.query_points(nope, query=[0.1] * DIM), 404)
    assert_4xx(lambda: client.count(nope), 404)
    assert_4xx(lambda: client.scroll(nope), 404)
    assert_4xx(lambda: client.retrieve(nope, ids=[1]), 404)
    assert_4xx(lambda: client.delete(nope, points_selector=[1]), 404)
    assert_4xx(lambda: client.set_payload(nope, payload={"a": 1}, points=[1]), 404)
    assert nope not in {c.name for c in client.get_collections().collections}
    assert_unchanged(coll)


def test_bad_ids(coll):
    node, client, name, model = coll
    assert_4xx(lambda: client.retrieve(name, ids=["not-a-uuid"]))
    assert_4xx(lambda: client.upsert(name, points=[models.PointStruct(id="not-a-uuid", vector=[0.1] * DIM)]))
    assert_4xx(lambda: client.upsert(name, points=[models.PointStruct(id=-1, vector=[0.1] * DIM)]))
    assert_4xx(lambda: client.delete(name, points_selector=["nope"]))
    assert_4xx(lambda: client.query_points(name, query=[0.1] * DIM, query_filter=models.Filter(
        must=[models.HasIdCondition(has_id=["xyz"])])))
    r = raw(node, "POST", f"/collections/{name}/points", {"ids": [1.5]})
    assert r.status_code == 400 and "error" in r.json()["status"], r.text
    assert_unchanged(coll)


MALFORMED = [
    {"must": [{"key": "color", "match": {"nope": 1}}]},
    {"mustt": [{"key": "color", "match": {"value": "red"}}]},
    {"must": [{"key": "price", "range": {"gte": "ten"}}]},
    {"must": [{"is_empty": {}}]},
    {"must": {"unknown_condition": 1}},
]


@pytest.mark.parametrize("flt", MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_filter(coll, flt):
    node, client, name, model = coll
    for path, body in [
        ("points/count", {"filter": flt, "exact": True}),
        ("points/scroll", {"filter": flt, "limit": 10}),
        ("points/query", {"query": [0.1] * DIM, "filter": flt, "limit": 3}),
        ("points/delete?wait=true", {"filter": flt}),
        ("points/payload?wait=true", {"payload": {"x": 1}, "filter": flt}),
    ]:
        r = raw(node, "POST", f"/collections/{name}/{path}", body)
        assert r.status_code == 400, (path, r.status_code, r.text)
        assert isinstance(r.json()["status"]["error"], str)
    assert_unchanged(coll)


def test_field_condition_without_a_condition(coll):
    """Qdrant rejects a field condition that tests nothing ("At least one field condition must be
    specified"); matching everything instead would turn a delete into delete-all."""
    node, client, name, model = coll
    empty = models.Filter(must=[models.FieldCondition(key="color")])
    assert_4xx(lambda: client.count(name, count_filter=empty))
    assert_4xx(lambda: client.delete(name, points_selector=models.FilterSelector(filter=empty)))
    assert_unchanged(coll)


def test_error_body_shape(coll):
    node, client, name, model = coll
    r = raw(node, "GET", "/collections/no_such_collection")
    assert r.status_code == 404
    body = r.json()
    assert isinstance(body["status"]["error"], str) and body["status"]["error"]
    assert "time" in body
