"""A 3-node cluster on loopback driven by the official client through node 0 and node 2.

Pods shoal-0..2 listen on 127.0.0.41-43 (same ports), and find each other through a DNS server
run by this test that answers the headless Service's names. Answers must equal brute force over
all the data, i.e. what one node holding everything would return, also with one node killed.
"""

import numpy as np
import pytest
from qdrant_client import models

from support import (METRICS, assert_exact_results, make_dataset, normalise_id, queries, recall, start_cluster,
                     upload)

METRIC = models.Distance.EUCLID


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    yield from start_cluster(tmp_path_factory.mktemp("cluster"), first_ip=41)


def test_cluster_answers_like_one_node(cluster):
    n0, n1, n2 = cluster
    c0, c2 = n0.client(), n2.client()
    name = "spread"
    c0.create_collection(name, vectors_config=models.VectorParams(size=METRICS[METRIC][0], distance=METRIC),
                         shard_number=6, replication_factor=2)
    assert c2.collection_exists(name)
    model, ids, vectors, payloads = make_dataset(METRIC, n=3000, n_uuid=300)
    upload(c0, name, ids, vectors, payloads)
    qs = queries(METRIC, n=20)
    flt = models.Filter(must=[models.FieldCondition(key="group", match=models.MatchAny(any=[1, 2]))])

    def check(clients):
        for c in clients:
            assert c.count(name, exact=True).count == len(ids)
            for q in qs[:8]:
                got = c.query_points(name, query=q.tolist(), limit=10,
                                     search_params=models.SearchParams(exact=True)).points
                assert_exact_results(model, q, got, model.top(q, 10))
            got = c.query_points(name, query=qs[0].tolist(), query_filter=flt, limit=10,
                                 search_params=models.SearchParams(exact=True)).points
            assert_exact_results(model, qs[0], got, model.top(qs[0], 10, flt), flt)

    check([c0, c2])
    # HNSW through the cluster keeps recall.
    r = np.mean([recall([normalise_id(p.id) for p in c2.query_points(name, query=q.tolist(), limit=10).points],
                        [p for p, _ in model.top(q, 10)]) for q in qs])
    assert r >= 0.95, r
    # Scroll through node 2 returns every point once, in id order.
    seen, offset = [], None
    while True:
        page, offset = c2.scroll(name, limit=250, offset=offset)
        seen += [normalise_id(p.id) for p in page]
        if offset is None:
            break
    assert seen == model.scroll_order()

    # Losing shoal-1 costs no query with replication factor 2.
    n1.stop(kill=True)
    check([c0, c2])
