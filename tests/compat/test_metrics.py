"""`/metrics` is Prometheus text that a Prometheus parser accepts, and its counters move with traffic."""

import httpx
from prometheus_client.parser import text_string_to_metric_families
from qdrant_client import models


def scrape(node) -> dict:
    text = httpx.get(f"{node.url}/metrics", timeout=10).text
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def requests_to(samples: dict, route: str, method: str, status: str) -> float:
    key = ("shoal_http_requests_total", tuple(sorted({"route": route, "method": method, "status": status}.items())))
    return samples.get(key, 0.0)


def test_metrics_parse_and_move_with_traffic(plain_node):
    client = plain_node.client()
    name = "metrics_probe"
    client.create_collection(name, vectors_config=models.VectorParams(size=4, distance=models.Distance.DOT))
    client.upsert(name, points=[models.PointStruct(id=i, vector=[i, 1, 0, 0]) for i in range(10)], wait=True)

    before = scrape(plain_node)
    route = "/collections/{name}/points/query"
    for _ in range(7):
        client.query_points(name, query=[1, 0, 0, 0], limit=3)
    httpx.post(f"{plain_node.url}/collections/{name}/points/query", json={"query": [1, 2]}, timeout=10)
    after = scrape(plain_node)

    assert requests_to(after, route, "POST", "200") - requests_to(before, route, "POST", "200") == 7
    assert requests_to(after, route, "POST", "400") - requests_to(before, route, "POST", "400") == 1
    points = [v for (n, labels), v in after.items() if n == "shoal_collection_points" and ("collection", name) in labels]
    assert points == [10.0]
    assert any(n == "shoal_http_request_duration_seconds_count" for n, _ in after)
    client.delete_collection(name)
