"""Unfiltered nearest-neighbour search through the Query API, the batch Query API and the older
`/points/search` routes, checked against numpy brute force.

Every metric runs twice: on a node that has built HNSW segments (threshold 500) and on one where all
points are still in the unindexed tail (default threshold)."""

import numpy as np
import pytest
from qdrant_client import models

from support import METRICS, SCORE_TOL, assert_exact_results, normalise_id, raw, recall

CASES = [(m, indexed) for m in METRICS for indexed in (True, False)]
CASE_IDS = [f"{m.value}-{'hnsw' if i else 'flat'}" for m, i in CASES]
EXACT = models.SearchParams(exact=True)


@pytest.fixture(params=CASES, ids=CASE_IDS)
def coll(request, readonly):
    return readonly(*request.param)


def test_collection_info(coll):
    info = coll.client.get_collection(coll.name)
    assert info.points_count == len(coll.ids)
    assert info.config.params.vectors.distance == coll.metric
    indexed = info.indexed_vectors_count or 0
    if coll.node.indexing_threshold == 500:
        assert indexed >= len(coll.ids) - 500
    else:
        assert indexed == 0
    assert coll.name in {c.name for c in coll.client.get_collections().collections}


def test_exact_equals_brute_force(coll):
    for q in coll.queries:
        got = coll.client.query_points(coll.name, query=q.tolist(), limit=10, search_params=EXACT).points
        assert_exact_results(coll.model, q, got, coll.model.top(q, 10))


def test_default_search(coll):
    """Unindexed: the default search is exact too. Indexed: recall@10 >= 0.95, ef default and 128."""
    params_list = [None, models.SearchParams(hnsw_ef=128)]
    for params in params_list:
        recalls = []
        for q in coll.queries:
            got = coll.client.query_points(coll.name, query=q.tolist(), limit=10, search_params=params).points
            expected = coll.model.top(q, 10)
            if coll.node.indexing_threshold != 500:
                assert_exact_results(coll.model, q, got, expected)
                continue
            assert len(got) == 10
            # Whatever HNSW returns must be real points with their true scores, best first.
            scores = [p.score for p in got]
            assert scores == sorted(scores, reverse=coll.model.higher_better)
            true = coll.model.score(q, [normalise_id(p.id) for p in got])
            np.testing.assert_allclose(scores, true, atol=SCORE_TOL)
            recalls.append(recall([normalise_id(p.id) for p in got], [p for p, _ in expected]))
        if recalls:
            assert np.mean(recalls) >= 0.95, f"recall@10 {np.mean(recalls):.3f} with {params}"


def test_limit_offset(coll):
    m = coll.model
    for q in coll.queries[:10]:
        for limit, offset in [(1, 0), (7, 5), (100, 0), (10, 90), (3, 2999), (10, 5000)]:
            got = coll.client.query_points(
                coll.name, query=q.tolist(), limit=limit, offset=offset, search_params=EXACT
            ).points
            assert_exact_results(m, q, got, m.top(q, limit, offset=offset))


def test_score_threshold(coll):
    m = coll.model
    checked = 0
    for q in coll.queries[:20]:
        ranked = m.top(q, 30)
        # A threshold half-way across a clear gap, so float rounding cannot move a point across it.
        gaps = [(abs(ranked[i][1] - ranked[i + 1][1]), i) for i in range(5, 25)]
        gap, i = max(gaps)
        if gap < 10 * SCORE_TOL:
            continue
        thr = (ranked[i][1] + ranked[i + 1][1]) / 2
        got = coll.client.query_points(coll.name, query=q.tolist(), limit=30, score_threshold=thr, search_params=EXACT).points
        assert_exact_results(m, q, got, m.top(q, 30, threshold=thr))
        assert len(got) == i + 1
        # with an offset the threshold still applies
        got = coll.client.query_points(
            coll.name, query=q.tolist(), limit=30, offset=2, score_threshold=thr, search_params=EXACT
        ).points
        assert_exact_results(m, q, got, m.top(q, 30, offset=2, threshold=thr))
        checked += 1
    assert checked >= 5


def test_with_payload_and_vectors(coll):
    m = coll.model
    q = coll.queries[0].tolist()

    got = coll.client.query_points(coll.name, query=q, limit=10, search_params=EXACT, with_payload=True).points
    for p in got:
        assert p.payload == m.payloads[normalise_id(p.id)]
        assert p.vector is None

    got = coll.client.query_points(coll.name, query=q, limit=10, search_params=EXACT, with_payload=False).points
    assert all(p.payload is None for p in got)
    assert_exact_results(m, coll.queries[0], got, m.top(q, 10))

    keys = ["color", "meta", "price"]
    got = coll.client.query_points(coll.name, query=q, limit=10, search_params=EXACT, with_payload=keys).points
    for p in got:
        full = m.payloads[normalise_id(p.id)]
        assert p.payload == {k: full[k] for k in keys if k in full}

    exclude = models.PayloadSelectorExclude(exclude=["tags", "note"])
    got = coll.client.query_points(coll.name, query=q, limit=10, search_params=EXACT, with_payload=exclude).points
    for p in got:
        full = m.payloads[normalise_id(p.id)]
        assert p.payload == {k: v for k, v in full.items() if k not in ("tags", "note")}

    got = coll.client.query_points(
        coll.name, query=q, limit=10, search_params=EXACT, with_payload=False, with_vectors=True
    ).points
    for p in got:
        assert isinstance(p.vector, list) and len(p.vector) == m.dim
        # stored form: Cosine vectors come back normalised
        np.testing.assert_allclose(p.vector, m.vectors[normalise_id(p.id)], atol=1e-5)


def test_query_by_point_id(coll):
    """`query: <id>` searches with that point's vector and leaves the point itself out."""
    m = coll.model
    for pid in coll.ids[:5] + coll.ids[-5:]:
        got = coll.client.query_points(coll.name, query=pid, limit=10, search_params=EXACT).points
        expected = [(p, s) for p, s in m.top(m.vectors[pid], 11) if p != pid][:10]
        assert pid not in [normalise_id(p.id) for p in got]
        assert_exact_results(m, m.vectors[pid], got, expected)


def test_query_batch(coll):
    m = coll.model
    qs = coll.queries[:6]
    requests = [
        models.QueryRequest(query=qs[0].tolist(), limit=10, params=EXACT),
        models.QueryRequest(query=qs[1].tolist(), limit=3, offset=4, params=EXACT, with_payload=True),
        models.QueryRequest(query=models.NearestQuery(nearest=qs[2].tolist()), limit=5, params=EXACT),
        models.QueryRequest(query=qs[3].tolist(), limit=10, params=models.SearchParams(hnsw_ef=128)),
        models.QueryRequest(
            query=qs[4].tolist(),
            limit=10,
            params=EXACT,
            filter=models.Filter(must=[models.FieldCondition(key="color", match=models.MatchValue(value="red"))]),
        ),
    ]
    results = coll.client.query_batch_points(coll.name, requests=requests)
    assert len(results) == len(requests)
    assert_exact_results(m, qs[0], results[0].points, m.top(qs[0], 10))
    assert_exact_results(m, qs[1], results[1].points, m.top(qs[1], 3, offset=4))
    for p in results[1].points:
        assert p.payload == m.payloads[normalise_id(p.id)]
    assert_exact_results(m, qs[2], results[2].points, m.top(qs[2], 5))
    assert len(results[3].points) == 10
    flt = requests[4].filter
    assert_exact_results(m, qs[4], results[4].points, m.top(qs[4], 10, flt=flt), flt=flt)


def _scored(result: list) -> list:
    return [models.ScoredPoint.model_validate(p) for p in result]


def test_legacy_search_routes(coll):
    """qdrant-client 1.20 dropped `client.search`; the REST routes must still answer like Qdrant."""
    m = coll.model
    q = coll.queries[1]
    body = {"vector": q.tolist(), "limit": 10, "params": {"exact": True}, "with_payload": True}
    r = raw(coll.node, "POST", f"/collections/{coll.name}/points/search", body)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "ok"
    got = _scored(r.json()["result"])
    assert_exact_results(m, q, got, m.top(q, 10))
    assert all(p.payload == m.payloads[normalise_id(p.id)] for p in got)

    flt = models.Filter(must=[models.FieldCondition(key="group", match=models.MatchAny(any=[1, 2, 3]))])
    searches = [
        {"vector": q.tolist(), "limit": 5, "offset": 3, "params": {"exact": True}},
        {"vector": coll.queries[2].tolist(), "limit": 10, "params": {"exact": True},
         "filter": flt.model_dump(exclude_none=True)},
    ]
    r = raw(coll.node, "POST", f"/collections/{coll.name}/points/search/batch", {"searches": searches})
    assert r.status_code == 200, r.text
    res = r.json()["result"]
    assert len(res) == 2
    assert_exact_results(m, q, _scored(res[0]), m.top(q, 5, offset=3))
    q2 = coll.queries[2]
    assert_exact_results(m, q2, _scored(res[1]), m.top(q2, 10, flt=flt), flt=flt)
