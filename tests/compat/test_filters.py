"""Filtered search, scroll and count, against a Python evaluator of Qdrant's filter semantics
(support.filter_matches: an array field matches when any element does; a missing key satisfies no
match/range; `is_empty` = missing, null or []; `is_null` = explicit null)."""

import numpy as np
import pytest
from qdrant_client import models

from support import METRICS, SCORE_TOL, assert_exact_results, filter_matches, normalise_id, recall

F = models.FieldCondition
MV = models.MatchValue


def _filters(ids: list) -> dict:
    some_ids = ids[::60]  # 50 ids, integers and UUIDs mixed
    return {
        "keyword": models.Filter(must=[F(key="color", match=MV(value="red"))]),
        "bool_broad": models.Filter(must=[F(key="flag", match=MV(value=True))]),
        "int": models.Filter(must=[F(key="group", match=MV(value=3))]),
        "array_value": models.Filter(must=[F(key="tags", match=MV(value="beta"))]),
        "any_keywords_array": models.Filter(must=[F(key="tags", match=models.MatchAny(any=["alpha", "zeta"]))]),
        "any_ints_half": models.Filter(must=[F(key="group", match=models.MatchAny(any=[1, 2, 3, 4, 5]))]),
        "any_ints_array": models.Filter(must=[F(key="nums", match=models.MatchAny(any=[7, 8, 9]))]),
        "except_scalar": models.Filter(must=[F(key="color", match=models.MatchExcept(**{"except": ["red", "green"]}))]),
        "text": models.Filter(must=[F(key="note", match=models.MatchText(text="fox"))]),
        "text_suffix": models.Filter(must=[F(key="note", match=models.MatchText(text="n3"))]),
        "range_float": models.Filter(must=[F(key="price", range=models.Range(gte=20, lt=30.5))]),
        "range_array": models.Filter(must=[F(key="nums", range=models.Range(gt=45))]),
        "range_open": models.Filter(must=[F(key="price", range=models.Range(lte=1.5))]),
        "has_id": models.Filter(must=[models.HasIdCondition(has_id=some_ids)]),
        "not_has_id": models.Filter(must_not=[models.HasIdCondition(has_id=some_ids)]),
        "is_empty_array": models.Filter(must=[models.IsEmptyCondition(is_empty=models.PayloadField(key="tags"))]),
        "is_empty_missing": models.Filter(must=[models.IsEmptyCondition(is_empty=models.PayloadField(key="price"))]),
        "is_empty_null": models.Filter(must=[models.IsEmptyCondition(is_empty=models.PayloadField(key="maybe"))]),
        "is_null": models.Filter(must=[models.IsNullCondition(is_null=models.PayloadField(key="maybe"))]),
        "is_null_note": models.Filter(must=[models.IsNullCondition(is_null=models.PayloadField(key="note"))]),
        "not_empty_meta": models.Filter(must_not=[models.IsEmptyCondition(is_empty=models.PayloadField(key="meta"))]),
        "nested_key": models.Filter(must=[F(key="meta.level", match=MV(value=2))]),
        "nested_deep": models.Filter(must=[F(key="meta.origin.country", match=models.MatchAny(any=["fr", "jp"]))]),
        "nested_range": models.Filter(must=[F(key="meta.level", range=models.Range(lte=1))]),
        "should": models.Filter(should=[F(key="color", match=MV(value="blue")), F(key="group", match=MV(value=7))]),
        "must_not": models.Filter(must_not=[F(key="color", match=MV(value="blue")), F(key="flag", match=MV(value=False))]),
        "min_should": models.Filter(
            min_should=models.MinShould(
                conditions=[
                    F(key="flag", match=MV(value=True)),
                    F(key="color", match=MV(value="white")),
                    F(key="meta.level", match=MV(value=0)),
                    F(key="tags", match=MV(value="gamma")),
                ],
                min_count=2,
            )
        ),
        "selective_1pct": models.Filter(must=[F(key="rare", match=MV(value="yes"))]),
        "combined": models.Filter(
            must=[F(key="price", range=models.Range(gte=50))],
            should=[F(key="tags", match=MV(value="alpha")), F(key="tags", match=MV(value="beta"))],
            must_not=[F(key="color", match=MV(value="black"))],
        ),
        "nested_filter": models.Filter(
            must=[
                models.Filter(should=[F(key="group", match=MV(value=0)), F(key="group", match=MV(value=9))]),
                models.Filter(must_not=[models.IsNullCondition(is_null=models.PayloadField(key="maybe"))]),
            ]
        ),
        "no_match": models.Filter(must=[F(key="color", match=MV(value="purple"))]),
    }


D = models.Distance
ALL = [(m, indexed) for m in METRICS for indexed in (True, False)]
# Filtering does not depend on the metric: the costlier checks run on fewer collections.
SOME = [(D.COSINE, True), (D.EUCLID, True), (D.DOT, False), (D.MANHATTAN, False)]
FEW = [(D.COSINE, True), (D.DOT, False)]


def _case_id(case) -> str:
    return f"{case[0].value}-{'hnsw' if case[1] else 'flat'}"


def test_filter_selectivity_sanity(readonly):
    """The data set really exercises selective, broad and empty filters."""
    c = readonly(models.Distance.COSINE, False)
    n = len(c.ids)
    sizes = {name: len(c.model.select(f)) for name, f in _filters(c.ids).items()}
    assert 0.005 * n <= sizes["selective_1pct"] <= 0.02 * n
    assert 0.4 * n <= sizes["any_ints_half"] <= 0.6 * n
    assert sizes["no_match"] == 0
    assert all(s > 10 for name, s in sizes.items() if name not in ("no_match",)), sizes


@pytest.mark.parametrize("case", FEW, ids=_case_id)
def test_count_and_scroll_with_filters(readonly, case):
    coll = readonly(*case)
    m = coll.model
    for name, flt in _filters(coll.ids).items():
        expected = m.scroll_order(flt)
        assert coll.client.count(coll.name, count_filter=flt, exact=True).count == len(expected), name
        got, offset = [], None
        while True:
            page, offset = coll.client.scroll(
                coll.name, scroll_filter=flt, limit=100, offset=offset, with_payload=False
            )
            got += [normalise_id(p.id) for p in page]
            if offset is None:
                break
        assert got == expected, name


@pytest.mark.parametrize("case", ALL, ids=_case_id)
def test_filtered_exact_search(readonly, case):
    coll = readonly(*case)
    m = coll.model
    for k, (name, flt) in enumerate(_filters(coll.ids).items()):
        q = coll.queries[k % len(coll.queries)]
        got = coll.client.query_points(
            coll.name, query=q.tolist(), query_filter=flt, limit=10, search_params=models.SearchParams(exact=True)
        ).points
        assert_exact_results(m, q, got, m.top(q, 10, flt=flt), flt=flt)


@pytest.mark.parametrize("case", SOME, ids=_case_id)
def test_filtered_default_search(readonly, case):
    """Without `exact`: `limit` results whenever `limit` points match, all matching, true scores."""
    coll = readonly(*case)
    m = coll.model
    recalls = []
    for k, (name, flt) in enumerate(_filters(coll.ids).items()):
        for q in coll.queries[k % 10:: 10][:3]:
            for params in (None, models.SearchParams(hnsw_ef=128)):
                got = coll.client.query_points(
                    coll.name, query=q.tolist(), query_filter=flt, limit=10, search_params=params
                ).points
                expected = m.top(q, 10, flt=flt)
                assert len(got) == len(expected), f"{name}: {len(got)} results, {len(expected)} expected"
                got_ids = [normalise_id(p.id) for p in got]
                for pid in got_ids:
                    assert pid in m.payloads and filter_matches(flt, pid, m.payloads[pid]), f"{name}: {pid}"
                np.testing.assert_allclose([p.score for p in got], m.score(q, got_ids), atol=SCORE_TOL)
                if expected:
                    recalls.append(recall(got_ids, [p for p, _ in expected]))
    assert np.mean(recalls) >= 0.95


# --- Edge cases of the filter semantics on a small hand-made collection ------------------------------

EDGE_PAYLOADS = {
    1: {"a": [None]},
    2: {"a": []},
    3: {"a": None},
    4: {},
    5: {"a": [1, 2]},
    6: {"a": 1},
    7: {"a": "x"},
    8: {"a": ["x", "y"]},
    9: {"a": {"b": 3}},
    10: {"items": [{"k": "x", "v": 1}, {"k": "y", "v": 2}]},
    11: {"items": {"k": "y", "v": 5}},
    12: {"a": 2.5, "t": "Hello World"},
    13: {"a": True},
}


def _edge(name, flt, marks=()):
    return pytest.param(flt, id=name, marks=marks)


def _cond(**kw):
    return models.Filter(must=[F(**kw)])


EDGE_FILTERS = [
    _edge("is_empty", models.Filter(must=[models.IsEmptyCondition(is_empty=models.PayloadField(key="a"))])),
    _edge("is_null", models.Filter(must=[models.IsNullCondition(is_null=models.PayloadField(key="a"))])),
    _edge("not_is_empty", models.Filter(must_not=[models.IsEmptyCondition(is_empty=models.PayloadField(key="a"))])),
    _edge("value_int", _cond(key="a", match=MV(value=1))),
    _edge("value_int_vs_float", _cond(key="a", match=MV(value=2))),
    _edge("value_bool", _cond(key="a", match=MV(value=True))),
    _edge("value_keyword", _cond(key="a", match=MV(value="x"))),
    _edge("any_mixed", _cond(key="a", match=models.MatchAny(any=["y", "z"]))),
    _edge("range", _cond(key="a", range=models.Range(gte=1.5, lte=2.5))),
    _edge("nested_object", _cond(key="a.b", match=MV(value=3))),
    _edge("array_of_objects", _cond(key="items[].k", match=MV(value="y"))),
    _edge("array_of_objects_dot", _cond(key="items.v", range=models.Range(gte=2))),
    _edge("text", _cond(key="t", match=models.MatchText(text="lo Wo"))),
    _edge("except_keyword_array", _cond(key="a", match=models.MatchExcept(**{"except": ["x"]}))),
    _edge("except_int", _cond(key="a", match=models.MatchExcept(**{"except": [1]}))),
    _edge("has_id", models.Filter(must=[models.HasIdCondition(has_id=[3, 5, 99])])),
    _edge("should_empty_list", models.Filter(should=[])),
    _edge("min_should", models.Filter(min_should=models.MinShould(
        conditions=[_cond(key="a", match=MV(value=1)), _cond(key="a", match=MV(value=2)),
                    models.HasIdCondition(has_id=[5, 6])], min_count=2))),
]


@pytest.fixture(scope="module")
def edge(plain_node):
    from support import Model

    client = plain_node.client()
    name = "edge_semantics"
    client.create_collection(name, vectors_config=models.VectorParams(size=4, distance=models.Distance.DOT))
    model = Model(models.Distance.DOT, 4)
    points = []
    for pid, payload in EDGE_PAYLOADS.items():
        v = [float(pid), 1.0, 0.0, -1.0]
        points.append(models.PointStruct(id=pid, vector=v, payload=payload))
        model.upsert(pid, v, payload)
    client.upsert(name, points=points, wait=True)
    return client, name, model


@pytest.mark.parametrize("flt", EDGE_FILTERS)
def test_edge_semantics(edge, flt):
    client, name, model = edge
    expected = model.scroll_order(flt)
    got = [normalise_id(p.id) for p in client.scroll(name, scroll_filter=flt, limit=100)[0]]
    assert got == expected
