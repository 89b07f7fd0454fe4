"""Collection administration and the answers that must never be empty or silently wrong, through
the official client on one node and on a 3-node cluster (written through node 0, read through
node 2): aliases, collection updates, configuration reporting, 405s, `prefetch: []`, nested
`with_payload` paths and JavaScript-safe `operation_id`s."""

import asyncio
import time

import pytest
from qdrant_client import AsyncQdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

from support import assert_4xx, raw, start_cluster

DIM = 4
JS_MAX_SAFE = 2**53 - 1


class Target:
    """Where a test writes (`w`, `wn`) and where it reads (`r`, `rn`): the same node, or node 0
    and node 2 of a cluster."""

    def __init__(self, nodes):
        self.nodes = nodes
        self.wn, self.rn = nodes[0], nodes[-1]
        self.w, self.r = self.wn.client(), self.rn.client()

    def eventually(self, check, timeout=20.0):
        """Catalog changes reach every node by broadcast (at once) or, for a node that missed
        it, by the periodic sync; reads through another node retry for a while."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return check()
            except (AssertionError, UnexpectedResponse):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


@pytest.fixture(scope="module")
def three_nodes(tmp_path_factory):
    yield from start_cluster(tmp_path_factory.mktemp("admin_cluster"), first_ip=51)


@pytest.fixture(scope="module", params=["node", "cluster"])
def target(request, plain_node):
    if request.param == "node":
        return Target([plain_node])
    return Target(request.getfixturevalue("three_nodes"))


def unique(prefix: str) -> str:
    return f"{prefix}_{time.monotonic_ns()}"


def make(t: Target, name: str, **kw) -> None:
    assert t.w.create_collection(name, vectors_config=models.VectorParams(size=DIM, distance=models.Distance.DOT),
                                 **kw)


def fill(t: Target, name: str, n: int = 20) -> None:
    points = [models.PointStruct(id=i, vector=[1.0, float(i), 0.5, -1.0],
                                 payload={"k": i, "nested": {"a": i, "b": {"c": i * 2, "d": "x"}},
                                          "arr": [{"x": i, "y": 1}, {"x": -i}], "dotted.key": "v"})
              for i in range(n)]
    t.w.upsert(name, points=points, wait=True)


def status_of(call) -> int:
    try:
        call()
    except UnexpectedResponse as e:
        return e.status_code
    return 200


# ---------- no empty answers ----------


@pytest.mark.parametrize("method,path", [("PUT", "/collections"), ("POST", "/healthz"),
                                         ("DELETE", "/collections/x/points/scroll"), ("GET", "/aliasez")])
def test_every_wrong_method_or_route_gets_a_json_error(target, method, path):
    for node in target.nodes:
        r = raw(node, method, path)
        assert r.status_code in (404, 405), (r.status_code, r.text)
        body = r.json()
        assert isinstance(body["status"]["error"], str) and body["status"]["error"]
        assert "time" in body
        if r.status_code == 405:
            assert "allow" in {k.lower() for k in r.headers}


def test_empty_prefetch_is_accepted(target):
    name = unique("prefetch")
    make(target, name)
    fill(target, name)
    r = raw(target.rn, "POST", f"/collections/{name}/points/query",
            {"query": [1, 1, 1, 1], "prefetch": [], "limit": 3})
    assert r.status_code == 200, r.text
    assert [p["id"] for p in r.json()["result"]["points"]] == [19, 18, 17]
    r = raw(target.rn, "POST", f"/collections/{name}/points/query",
            {"query": [1, 1, 1, 1], "prefetch": [{"query": [1, 0, 0, 0]}], "limit": 3})
    assert r.status_code == 400, r.text


def test_nested_with_payload_paths(target):
    name = unique("nested")
    make(target, name)
    fill(target, name)
    c = target.r
    include = models.PayloadSelectorInclude(include=["nested.a", "nested.b.d", "arr[].x"])
    want_in = {"nested": {"a": 5, "b": {"d": "x"}}, "arr": [{"x": 5}, {"x": -5}]}
    exclude = models.PayloadSelectorExclude(exclude=["nested.b.c", "arr", "k"])
    want_ex = {"nested": {"a": 5, "b": {"d": "x"}}, "dotted.key": "v"}
    for sel, want in [(include, want_in), (exclude, want_ex), (["nested.a", "k"], {"nested": {"a": 5}, "k": 5}),
                      (['"dotted.key"'], {"dotted.key": "v"})]:
        assert c.retrieve(name, ids=[5], with_payload=sel)[0].payload == want
        got = c.query_points(name, query=[0, 1, 0, 0], limit=1, offset=14, with_payload=sel).points
        assert (got[0].id, got[0].payload) == (5, want)
        page, _ = c.scroll(name, limit=1, offset=5, with_payload=sel)
        assert page[0].payload == want
        body = {"vector": [0, 1, 0, 0], "limit": 1, "offset": 14,
                "with_payload": sel if isinstance(sel, list) else sel.model_dump(exclude_none=True)}
        hits = raw(target.rn, "POST", f"/collections/{name}/points/search", body)
        assert hits.status_code == 200, hits.text
        assert hits.json()["result"][0]["payload"] == want
    assert_4xx(lambda: c.retrieve(name, ids=[5], with_payload=["a..b"]), 400)


def test_operation_ids_are_exact_in_javascript(target):
    name = unique("opid")
    make(target, name)
    ids = []
    for i in range(5):
        r = target.w.upsert(name, points=[models.PointStruct(id=i, vector=[1, 2, 3, 4])], wait=True)
        ids.append(r.operation_id)
    ids.append(target.w.delete(name, points_selector=models.PointIdsList(points=[0])).operation_id)
    ids.append(target.w.set_payload(name, payload={"a": 1}, points=[1]).operation_id)
    assert all(0 < i <= JS_MAX_SAFE for i in ids), ids
    assert ids == sorted(set(ids)), "unique and increasing"


# ---------- configuration reporting ----------


def test_create_reports_every_field_it_was_given(target):
    name = unique("cfg")
    make(target, name,
         hnsw_config=models.HnswConfigDiff(m=12, ef_construct=50, full_scan_threshold=5000, on_disk=True),
         optimizers_config=models.OptimizersConfigDiff(indexing_threshold=12345, deleted_threshold=0.3,
                                                       vacuum_min_vector_number=500),
         quantization_config=models.ScalarQuantization(
             scalar=models.ScalarQuantizationConfig(type=models.ScalarType.INT8, quantile=0.95)))

    def check():
        cfg = target.r.get_collection(name).config
        assert (cfg.hnsw_config.m, cfg.hnsw_config.ef_construct, cfg.hnsw_config.full_scan_threshold) == (12, 50, 5000)
        o = cfg.optimizer_config
        assert (o.indexing_threshold, o.deleted_threshold, o.vacuum_min_vector_number) == (12345, 0.3, 500)
        assert cfg.quantization_config.scalar.quantile == 0.95
    target.eventually(check)
    default = unique("cfg_default")
    make(target, default)
    cfg = target.w.get_collection(default).config
    assert cfg.hnsw_config.full_scan_threshold == 10000


@pytest.mark.parametrize("kw", [
    {"hnsw_config": models.HnswConfigDiff(payload_m=4)},
    {"hnsw_config": models.HnswConfigDiff(on_disk=False)},
    {"hnsw_config": models.HnswConfigDiff(max_indexing_threads=3)},
    {"optimizers_config": models.OptimizersConfigDiff(flush_interval_sec=3)},
    {"optimizers_config": models.OptimizersConfigDiff(default_segment_number=2)},
    {"wal_config": models.WalConfigDiff(wal_capacity_mb=64)},
    {"sharding_method": models.ShardingMethod.CUSTOM},
    {"strict_mode_config": models.StrictModeConfig(enabled=True, max_query_limit=10)},
    {"metadata": {"owner": "team"}},
    {"sparse_vectors_config": {"text": models.SparseVectorParams()}},
])
def test_unsupported_config_fields_are_refused(target, kw):
    name = unique("refused")
    e = assert_4xx(lambda: make(target, name, **kw), 400)
    assert b"not supported" in e.content or b"only" in e.content, e.content
    assert not target.w.collection_exists(name)


@pytest.mark.parametrize("vector", [
    {"size": DIM, "distance": "Dot", "datatype": "float16"},
    {"size": DIM, "distance": "Dot", "on_disk": False},
    {"size": DIM, "distance": "Dot", "multivector_config": {"comparator": "max_sim"}},
])
def test_unsupported_vector_params_are_refused(target, vector):
    name = unique("refused_vector")
    r = raw(target.wn, "PUT", f"/collections/{name}", {"vectors": vector})
    assert r.status_code == 400, r.text
    assert "not supported" in r.json()["status"]["error"] or "only" in r.json()["status"]["error"]
    assert not target.w.collection_exists(name)
    ok = raw(target.wn, "PUT", f"/collections/{name}",
             {"vectors": {"size": DIM, "distance": "Dot", "datatype": "float32", "on_disk": True}})
    assert ok.status_code == 200, ok.text


# ---------- aliases ----------


def alias_map(client, collection=None) -> dict:
    got = client.get_collection_aliases(collection) if collection else client.get_aliases()
    return {a.alias_name: a.collection_name for a in got.aliases}


def create_alias(alias, collection):
    return models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name=collection, alias_name=alias))


def delete_alias(alias):
    return models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias))


def rename_alias(old, new):
    return models.RenameAliasOperation(rename_alias=models.RenameAlias(old_alias_name=old, new_alias_name=new))


def test_aliases_work_wherever_a_collection_name_does(target):
    blue, green = unique("blue"), unique("green")
    for name in (blue, green):
        make(target, name)
    fill(target, blue, n=10)
    fill(target, green, n=20)
    prod = unique("prod")
    assert target.w.update_collection_aliases(change_aliases_operations=[create_alias(prod, blue)])

    def through_alias(want_points):
        r = target.r
        assert alias_map(r)[prod] == (blue if want_points == 10 else green)
        assert r.count(prod, exact=True).count == want_points
        assert r.get_collection(prod).config.params.vectors.size == DIM
        assert r.collection_exists(prod)
        assert len(r.query_points(prod, query=[1, 1, 1, 1], limit=100).points) == want_points
        assert len(r.scroll(prod, limit=100)[0]) == want_points
        assert r.retrieve(prod, ids=[3])[0].payload["k"] == 3
    target.eventually(lambda: through_alias(10))

    # Writes through the alias reach the collection.
    target.w.upsert(prod, points=[models.PointStruct(id=100, vector=[1, 1, 1, 1], payload={"k": 100})], wait=True)
    target.w.set_payload(prod, payload={"via": "alias"}, points=[100], wait=True)
    assert target.w.retrieve(blue, ids=[100])[0].payload == {"k": 100, "via": "alias"}
    target.w.delete(prod, points_selector=models.PointIdsList(points=[100]), wait=True)
    assert target.w.count(blue, exact=True).count == 10

    # The blue/green switch: one request, every node sees the new target.
    assert target.w.update_collection_aliases(change_aliases_operations=[delete_alias(prod), create_alias(prod, green)])
    target.eventually(lambda: through_alias(20))
    assert alias_map(target.r, green) == {prod: green}
    assert alias_map(target.r, blue) == {}

    renamed = unique("renamed")
    target.w.update_collection_aliases(change_aliases_operations=[rename_alias(prod, renamed)])

    def moved():
        for n in target.nodes:
            assert alias_map(n.client(), green) == {renamed: green}
            assert status_of(lambda: n.client().count(prod)) == 404
            assert n.client().count(renamed).count == 20
    target.eventually(moved)


def test_alias_actions_are_all_or_none(target):
    a, b = unique("allornone_a"), unique("allornone_b")
    make(target, a)
    make(target, b)
    x = unique("x")
    target.w.update_collection_aliases(change_aliases_operations=[create_alias(x, a)])
    before = alias_map(target.w)
    e = assert_4xx(lambda: target.w.update_collection_aliases(
        change_aliases_operations=[delete_alias(x), create_alias(unique("y"), "no_such_collection")]), 404)
    assert b"doesn't exist" in e.content
    assert_4xx(lambda: target.w.update_collection_aliases(
        change_aliases_operations=[create_alias(unique("z"), a), rename_alias(unique("missing"), unique("m"))]), 404)
    # Name collisions: an alias may not be named like a collection, nor a collection like an alias.
    assert_4xx(lambda: target.w.update_collection_aliases(change_aliases_operations=[create_alias(b, a)]), 400)
    assert_4xx(lambda: target.w.update_collection_aliases(change_aliases_operations=[rename_alias(x, b)]), 400)
    assert_4xx(lambda: make(target, x), 400)
    assert alias_map(target.w) == before
    for n in target.nodes:
        assert alias_map(n.client()) == before
    # Deleting an alias that is not there is no error (as in Qdrant).
    assert target.w.update_collection_aliases(change_aliases_operations=[delete_alias(unique("never"))])
    assert_4xx(lambda: target.w.get_collection_aliases("no_such_collection"), 404)


def test_deleting_a_collection_drops_its_aliases_everywhere(target):
    name = unique("dropped")
    make(target, name)
    x = unique("x")
    target.w.update_collection_aliases(change_aliases_operations=[create_alias(x, name)])

    def known():
        assert alias_map(target.r, name) == {x: name}
    target.eventually(known)
    assert target.r.delete_collection(name)

    def gone():
        for n in target.nodes:
            assert x not in alias_map(n.client())
            assert status_of(lambda: n.client().count(x)) == 404
    target.eventually(gone)
    # The name is free again, for a collection or an alias.
    make(target, x)
    assert target.w.get_collection(x).points_count == 0


def test_async_client_aliases(target):
    name = unique("async")
    make(target, name)
    alias = unique("async_alias")

    async def run():
        client = AsyncQdrantClient(url=target.wn.url, prefer_grpc=False, timeout=30)
        try:
            assert await client.update_collection_aliases(change_aliases_operations=[create_alias(alias, name)])
            got = await client.get_aliases()
            assert {a.alias_name: a.collection_name for a in got.aliases}[alias] == name
            got = await client.get_collection_aliases(name)
            assert [a.alias_name for a in got.aliases] == [alias]
            assert (await client.count(alias)).count == 0
        finally:
            await client.close()
    asyncio.run(run())


# ---------- collection updates ----------


def config_of(client, name):
    return client.get_collection(name).config


def test_update_collection_is_reported_by_every_node(target):
    name = unique("patch")
    make(target, name, replication_factor=len(target.nodes))
    fill(target, name, n=50)
    assert target.w.update_collection(
        name,
        optimizers_config=models.OptimizersConfigDiff(indexing_threshold=0, deleted_threshold=0.5,
                                                      vacuum_min_vector_number=100, max_segment_size=300000),
        hnsw_config=models.HnswConfigDiff(m=24, ef_construct=80, full_scan_threshold=2000),
        collection_params=models.CollectionParamsDiff(write_consistency_factor=len(target.nodes),
                                                      on_disk_payload=False),
    )

    def check():
        for n in target.nodes:
            cfg = config_of(n.client(), name)
            assert (cfg.hnsw_config.m, cfg.hnsw_config.ef_construct, cfg.hnsw_config.full_scan_threshold) == (24, 80, 2000)
            o = cfg.optimizer_config
            assert (o.indexing_threshold, o.deleted_threshold, o.vacuum_min_vector_number) == (0, 0.5, 100)
            assert o.max_segment_size == 300000
            assert cfg.params.write_consistency_factor == len(target.nodes)
            assert cfg.params.on_disk_payload is False
    target.eventually(check)
    # The data stays, and unset fields keep their values on the next update.
    assert target.r.count(name, exact=True).count == 50
    target.w.update_collection(name, hnsw_config=models.HnswConfigDiff(ef_construct=90))

    def kept():
        cfg = config_of(target.r, name)
        assert (cfg.hnsw_config.m, cfg.hnsw_config.ef_construct, cfg.hnsw_config.full_scan_threshold) == (24, 90, 2000)
        assert cfg.optimizer_config.deleted_threshold == 0.5
    target.eventually(kept)


def test_update_quantization_and_through_an_alias(target):
    name = unique("patch_q")
    make(target, name, optimizers_config=models.OptimizersConfigDiff(indexing_threshold=1))
    fill(target, name, n=400)
    alias = unique("patch_alias")
    target.w.update_collection_aliases(change_aliases_operations=[create_alias(alias, name)])
    target.eventually(lambda: config_of(target.r, alias))
    scalar = models.ScalarQuantization(scalar=models.ScalarQuantizationConfig(type=models.ScalarType.INT8,
                                                                              quantile=0.97, always_ram=True))
    assert target.r.update_collection(alias, quantization_config=scalar,
                                      hnsw_config=models.HnswConfigDiff(m=6, ef_construct=32))

    def quantized():
        for n in target.nodes:
            cfg = config_of(n.client(), name)
            assert cfg.quantization_config.scalar.quantile == 0.97
            assert cfg.quantization_config.scalar.always_ram is True
            assert cfg.hnsw_config.m == 6
    target.eventually(quantized)

    def settled():
        info = target.r.get_collection(name)
        assert info.status == models.CollectionStatus.GREEN, info.status
    target.eventually(settled, timeout=120)
    # Rebuilt segments answer like before: the top hit of a query is the point it equals.
    for i in (5, 123, 399):
        got = target.r.query_points(name, query=[1.0, float(i), 0.5, -1.0], limit=1).points
        assert got[0].id == 399  # Dot: the largest second component wins
    assert target.r.count(name, exact=True).count == 400

    assert target.w.update_collection(name, quantization_config=models.Disabled.DISABLED)

    def disabled():
        for n in target.nodes:
            assert config_of(n.client(), name).quantization_config is None
    target.eventually(disabled)


@pytest.mark.parametrize("kw", [
    {"collection_params": models.CollectionParamsDiff(read_fan_out_factor=2)},
    {"hnsw_config": models.HnswConfigDiff(payload_m=8)},
    {"hnsw_config": models.HnswConfigDiff(m=1)},
    {"optimizers_config": models.OptimizersConfigDiff(flush_interval_sec=5)},
    {"optimizers_config": models.OptimizersConfigDiff(deleted_threshold=1.5)},
    {"vectors_config": {"image": models.VectorParamsDiff(on_disk=True)}},
    {"quantization_config": models.ProductQuantization(
        product=models.ProductQuantizationConfig(compression=models.CompressionRatio.X16))},
    {"strict_mode_config": models.StrictModeConfig(enabled=True)},
    {"collection_params": models.CollectionParamsDiff(write_consistency_factor=9)},
])
def test_unsupported_updates_are_refused_and_change_nothing(target, kw):
    name = unique("patch_refused")
    make(target, name)
    before = config_of(target.w, name)
    assert_4xx(lambda: target.w.update_collection(name, **kw), 400)
    assert config_of(target.w, name) == before
    assert_4xx(lambda: target.w.update_collection("no_such_collection", hnsw_config=models.HnswConfigDiff(m=8)), 404)


def test_async_client_update_collection(target):
    name = unique("patch_async")
    make(target, name)

    async def run():
        client = AsyncQdrantClient(url=target.wn.url, prefer_grpc=False, timeout=30)
        try:
            assert await client.update_collection(name, hnsw_config=models.HnswConfigDiff(m=10),
                                                  vectors_config={"": models.VectorParamsDiff(
                                                      hnsw_config=models.HnswConfigDiff(ef_construct=70))})
            cfg = (await client.get_collection(name)).config
            assert (cfg.hnsw_config.m, cfg.hnsw_config.ef_construct) == (10, 70)
        finally:
            await client.close()
    asyncio.run(run())


def test_update_replication_factor_keeps_every_point(target):
    name = unique("patch_rf")
    make(target, name, shard_number=3, replication_factor=1)
    fill(target, name, n=300)
    assert target.w.update_collection(name, collection_params=models.CollectionParamsDiff(replication_factor=2))

    def moved():
        for n in target.nodes:
            c = n.client()
            assert config_of(c, name).params.replication_factor == 2
            assert c.count(name, exact=True).count == 300
            assert len(c.scroll(name, limit=1000)[0]) == 300
    target.eventually(moved, timeout=60)
    target.w.upsert(name, points=[models.PointStruct(id=1000, vector=[1, 1, 1, 1])], wait=True)
    assert target.r.count(name, exact=True).count == 301


def test_a_node_that_was_down_catches_up_on_aliases_and_updates(target):
    if len(target.nodes) == 1:
        pytest.skip("a cluster matter")
    name = unique("catchup")
    make(target, name, replication_factor=len(target.nodes))
    old, new = unique("old_alias"), unique("new_alias")
    target.w.update_collection_aliases(change_aliases_operations=[create_alias(old, name)])
    down = target.nodes[-1]
    down.stop(kill=True)
    try:
        # Changed while shoal-2 is down: its pushes fail, it must pull them when it is back.
        target.w.update_collection_aliases(change_aliases_operations=[rename_alias(old, new)])
        target.w.update_collection(name, hnsw_config=models.HnswConfigDiff(m=20),
                                   optimizers_config=models.OptimizersConfigDiff(indexing_threshold=777))
    finally:
        down.start()
        target.r = down.client()  # stopping a node closes its clients
    back = target.r

    def caught_up():
        assert alias_map(back, name) == {new: name}
        cfg = config_of(back, new)
        assert (cfg.hnsw_config.m, cfg.optimizer_config.indexing_threshold) == (20, 777)
    target.eventually(caught_up, timeout=60)
