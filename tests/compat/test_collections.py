"""Collections: create for every metric, exists, get (parses as the client's CollectionInfo), list,
delete, and re-create under the same name."""

import pytest
from qdrant_client import models

from support import METRICS, create, make_dataset, upload


@pytest.mark.parametrize("metric", list(METRICS), ids=lambda m: m.value)
def test_create_get_list(plain_node, metric):
    client = plain_node.client()
    name = f"coll_{metric.value.lower()}"
    dim = METRICS[metric][0]
    assert not client.collection_exists(name)
    create(client, name, metric)
    assert client.collection_exists(name)

    info = client.get_collection(name)
    assert info.points_count == 0
    assert info.config.params.vectors.size == dim
    assert info.config.params.vectors.distance == metric
    assert info.status == models.CollectionStatus.GREEN
    assert name in {c.name for c in client.get_collections().collections}

    model, ids, vectors, payloads = make_dataset(metric, n=300, n_uuid=50, seed=3)
    upload(client, name, ids, vectors, payloads, chunk=100)
    info = client.get_collection(name)
    assert info.points_count == len(ids)
    assert client.count(name, exact=True).count == len(ids)


def test_create_with_hnsw_config_and_duplicate(plain_node):
    client = plain_node.client()
    name = "coll_hnsw_cfg"
    assert client.create_collection(
        name,
        vectors_config=models.VectorParams(size=8, distance=models.Distance.DOT),
        hnsw_config=models.HnswConfigDiff(m=8, ef_construct=64),
        shard_number=1,
        replication_factor=1,
        write_consistency_factor=1,
    )
    info = client.get_collection(name)
    assert (info.config.hnsw_config.m, info.config.hnsw_config.ef_construct) == (8, 64)
    # Creating it again is a client error (Qdrant: 400 "already exists").
    from qdrant_client.http.exceptions import UnexpectedResponse

    with pytest.raises(UnexpectedResponse) as e:
        client.create_collection(name, vectors_config=models.VectorParams(size=8, distance=models.Distance.DOT))
    assert 400 <= e.value.status_code < 500
    assert client.get_collection(name).config.params.vectors.size == 8


def test_delete_and_recreate(plain_node):
    client = plain_node.client()
    name = "coll_recreate"
    metric = models.Distance.EUCLID
    create(client, name, metric)
    model, ids, vectors, payloads = make_dataset(metric, n=200, n_uuid=20, seed=5)
    upload(client, name, ids, vectors, payloads, chunk=100)
    assert client.count(name).count == 200

    assert client.delete_collection(name) is True
    assert not client.collection_exists(name)
    assert name not in {c.name for c in client.get_collections().collections}

    create(client, name, metric)
    assert client.collection_exists(name)
    assert client.get_collection(name).points_count == 0
    assert client.count(name, exact=True).count == 0
    points, nxt = client.scroll(name, limit=100)
    assert points == [] and nxt is None
    assert client.retrieve(name, ids=ids[:10]) == []
    hits = client.query_points(name, query=vectors[0].tolist(), limit=5).points
    assert hits == []
