"""Payload indexes through qdrant-client: `create_payload_index` for every schema type, filtered
search, count and scroll answering the same with and without the indexes (and exact filtered
search's recall kept), `payload_schema` in collection info, facets and scroll `order_by` against
counts and orders computed here, and Qdrant's 400s where an index is missing."""

import datetime as dt
import random
import uuid
from collections import Counter

import pytest
from qdrant_client import models
from qdrant_client.http.exceptions import UnexpectedResponse

from support import create, make_dataset, normalise_id, queries, recall, upload, wait_indexed

F = models.FieldCondition
MV = models.MatchValue
NAME = "payload_indexes"
METRIC = models.Distance.EUCLID
N = 1500


def _extra(rnd: random.Random, i: int) -> dict:
    """Fields for the types make_payload lacks: a uuid (or, for some points, a string that is
    not one, which a uuid index must not hide) and a datetime."""
    u = str(uuid.UUID(int=i % 40, version=4))
    return {
        "uid": "not-a-uuid" if i % 10 == 0 else u,
        "when": (dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(hours=7 * i)).isoformat(),
    }


@pytest.fixture(scope="module")
def loaded(indexed_node):
    client = indexed_node.client()
    model, ids, vectors, payloads = make_dataset(METRIC, n=N, n_uuid=200, seed=19)
    rnd = random.Random(19)
    for pid, p in zip(ids, payloads):
        p.update(_extra(rnd, p["i"]))
        model.payloads[normalise_id(pid)] = p
    create(client, NAME, METRIC)
    upload(client, NAME, ids, vectors, payloads)
    wait_indexed(client, NAME, at_least=N // 2)
    return client, model


FEB = dt.datetime(2024, 2, 1, tzinfo=dt.timezone.utc)
MAR = dt.datetime(2024, 3, 1, 12, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))


def _filters(model) -> dict:
    some_uuid = str(uuid.UUID(int=3, version=4))
    return {
        "keyword": models.Filter(must=[F(key="color", match=MV(value="red"))]),
        "keyword_any": models.Filter(must=[F(key="tags", match=models.MatchAny(any=["alpha", "zeta"]))]),
        "integer": models.Filter(must=[F(key="group", match=MV(value=3))]),
        "integer_range": models.Filter(must=[F(key="nums", range=models.Range(gte=10, lt=14))]),
        "float_range": models.Filter(must=[F(key="price", range=models.Range(gte=20, lt=30.5))]),
        "bool": models.Filter(must=[F(key="flag", match=MV(value=False))]),
        "uuid": models.Filter(must=[F(key="uid", match=MV(value=some_uuid))]),
        "uuid_not_a_uuid": models.Filter(must=[F(key="uid", match=MV(value="not-a-uuid"))]),
        "text": models.Filter(must=[F(key="note", match=models.MatchText(text="fox"))]),
        "text_two_words": models.Filter(must=[F(key="note", match=models.MatchText(text="lazy n3"))]),
        "rare": models.Filter(must=[F(key="rare", match=MV(value="yes"))]),
        "datetime_range": models.Filter(must=[F(key="when", range=models.DatetimeRange(gte=FEB, lt=MAR))]),
        "combined": models.Filter(
            must=[F(key="color", match=MV(value="blue")), F(key="price", range=models.Range(gte=30))],
            must_not=[F(key="flag", match=MV(value=True))],
        ),
    }


SCHEMAS = {
    "color": models.PayloadSchemaType.KEYWORD,
    "tags": models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=False),
    "group": models.PayloadSchemaType.INTEGER,
    "nums": models.IntegerIndexParams(type=models.IntegerIndexType.INTEGER, lookup=False, range=True),
    "price": models.PayloadSchemaType.FLOAT,
    "flag": models.PayloadSchemaType.BOOL,
    "uid": models.PayloadSchemaType.UUID,
    "when": models.PayloadSchemaType.DATETIME,
    "note": models.TextIndexParams(type=models.TextIndexType.TEXT, tokenizer=models.TokenizerType.WORD,
                                   lowercase=True, min_token_len=1, max_token_len=20),
    "rare": models.PayloadSchemaType.KEYWORD,
}


def _answers(client, model, filters: dict) -> dict:
    out = {}
    for name, flt in filters.items():
        exact = []
        approx_recall = []
        for q in queries(METRIC, n=5, data_seed=19):
            hits = client.query_points(NAME, query=q.tolist(), query_filter=flt, limit=10,
                                       search_params=models.SearchParams(exact=True)).points
            exact.append([normalise_id(p.id) for p in hits])
            found = client.query_points(NAME, query=q.tolist(), query_filter=flt, limit=10).points
            approx_recall.append(recall([normalise_id(p.id) for p in found], exact[-1]))
        count = client.count(NAME, count_filter=flt, exact=True).count
        scrolled, _ = client.scroll(NAME, scroll_filter=flt, limit=N, with_payload=False)
        out[name] = (exact, count, sorted(map(str, (normalise_id(p.id) for p in scrolled))),
                     sum(approx_recall) / len(approx_recall))
    return out


def test_every_schema_type_answers_like_no_index(loaded):
    client, model = loaded
    filters = _filters(model)
    before = _answers(client, model, filters)
    for name, (_, count, scrolled, r) in before.items():
        assert count == len(scrolled), name
        assert r >= 0.95, f"{name}: recall {r} without indexes"
    assert before["uuid_not_a_uuid"][1] == N // 10
    in_february = sum(1 for p in model.payloads.values() if FEB <= dt.datetime.fromisoformat(p["when"]) < MAR)
    assert before["datetime_range"][1] == in_february > 0

    for field, schema in SCHEMAS.items():
        res = client.create_payload_index(NAME, field_name=field, field_schema=schema, wait=True)
        assert res.status == models.UpdateStatus.COMPLETED
    info = client.get_collection(NAME)
    assert set(info.payload_schema) == set(SCHEMAS)
    assert info.payload_schema["color"].data_type == models.PayloadSchemaType.KEYWORD
    assert info.payload_schema["note"].data_type == models.PayloadSchemaType.TEXT
    assert info.payload_schema["nums"].params.range is True
    assert info.payload_schema["uid"].points == N - N // 10, "points holding a uuid"
    with_price = sum(1 for p in model.payloads.values() if "price" in p)
    assert info.payload_schema["price"].points == with_price

    after = _answers(client, model, filters)
    for name in filters:
        exact_b, count_b, scrolled_b, _ = before[name]
        exact_a, count_a, scrolled_a, r = after[name]
        assert r >= 0.95, f"{name}: recall {r} with indexes"
        if name == "text_two_words":
            # With a full-text index, Qdrant's match.text means every token, anywhere (without
            # one, a substring: "lazy n3" side by side).
            both = sorted(str(pid) for pid, p in model.payloads.items()
                          if {"lazy", "n3"} <= set((p.get("note") or "").split()))
            assert scrolled_a == both and count_a == len(both) > count_b
            continue
        assert (count_a, scrolled_a) == (count_b, scrolled_b), name
        assert exact_a == exact_b, name

    client.delete_payload_index(NAME, field_name="price", wait=True)
    assert "price" not in client.get_collection(NAME).payload_schema
    assert _answers(client, model, {"float_range": filters["float_range"]})["float_range"][1] == before["float_range"][1]
    client.create_payload_index(NAME, field_name="price", field_schema="float", wait=True)


def test_facet_counts_are_exact_and_need_an_index(loaded):
    client, model = loaded
    for field in ("color", "group", "flag"):
        client.create_payload_index(NAME, field_name=field, field_schema=SCHEMAS[field], wait=True)
    payloads = list(model.payloads.values())

    def expected(key, keep=lambda p: True, limit=10):
        c = Counter()
        for p in payloads:
            if not keep(p) or key not in p:
                continue
            vals = p[key] if isinstance(p[key], list) else [p[key]]
            for v in set(vals):
                c[v] += 1
        ordered = sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))
        return ordered[:limit]

    got = client.facet(NAME, key="color", exact=True)
    assert [(h.value, h.count) for h in got.hits] == expected("color")
    got = client.facet(NAME, key="group", limit=3, exact=True)
    assert [(h.value, h.count) for h in got.hits] == expected("group", limit=3)
    red = models.Filter(must=[F(key="color", match=MV(value="red"))])
    got = client.facet(NAME, key="flag", facet_filter=red, exact=True)
    assert [(h.value, h.count) for h in got.hits] == expected("flag", lambda p: p.get("color") == "red")

    with pytest.raises(UnexpectedResponse) as e:
        client.facet(NAME, key="meta.level")
    assert e.value.status_code == 400
    assert "No appropriate index for faceting" in e.value.content.decode()


def test_scroll_order_by_needs_a_range_index(loaded):
    client, model = loaded
    client.create_payload_index(NAME, field_name="price", field_schema="float", wait=True)
    client.create_payload_index(NAME, field_name="when", field_schema="datetime", wait=True)
    priced = [(p["price"], pid) for pid, p in model.payloads.items() if "price" in p]

    points, nxt = client.scroll(NAME, order_by="price", limit=25)
    assert nxt is None
    assert [p.payload["price"] for p in points] == sorted(x for x, _ in priced)[:25]
    assert all(p.order_value == p.payload["price"] for p in points)

    points, _ = client.scroll(NAME, limit=30, order_by=models.OrderBy(key="price", direction="desc", start_from=50))
    want = sorted((x for x, _ in priced if x <= 50), reverse=True)[:30]
    assert [p.payload["price"] for p in points] == want

    blue = models.Filter(must=[F(key="color", match=MV(value="blue"))])
    points, _ = client.scroll(NAME, limit=1000, scroll_filter=blue, order_by=models.OrderBy(key="price"))
    want = sorted(p["price"] for p in model.payloads.values() if "price" in p and p["color"] == "blue")
    assert [p.payload["price"] for p in points] == want

    since = dt.datetime(2024, 3, 1, tzinfo=dt.timezone.utc)
    points, _ = client.scroll(NAME, limit=10, order_by=models.OrderBy(key="when", start_from=since))
    whens = sorted(p["when"] for p in model.payloads.values() if dt.datetime.fromisoformat(p["when"]) >= since)
    assert [p.payload["when"] for p in points] == whens[:10]

    for bad in ("color", "meta.level"):
        with pytest.raises(UnexpectedResponse) as e:
            client.scroll(NAME, order_by=bad, limit=5)
        assert e.value.status_code == 400
        assert "No range index for `order_by` key" in e.value.content.decode()
    with pytest.raises(UnexpectedResponse) as e:
        client.scroll(NAME, order_by="price", offset=5, limit=5)
    assert e.value.status_code == 400
    assert "Cannot use an `offset` when using `order_by`" in e.value.content.decode()
