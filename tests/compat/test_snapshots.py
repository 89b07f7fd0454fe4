"""Snapshots through qdrant-client: collection snapshots (create, list, download, delete, recover
from a URL, from a `file://` location and from an upload) and full-storage snapshots, on a single
node and on a 3-node cluster, and a snapshot taken on one restored on the other in both
directions: searches after a recovery answer exactly what they answered before.

Refusals: a truncated file, a flipped byte, a wrong checksum, another format version and a
dimension mismatch each get a 4xx and leave the collection as it was.

The cluster is three pods on 127.0.0.55-57 (started like test_cluster.py's);
every URL a node downloads from is on loopback.
"""

import io
import json
import tarfile

import httpx
import pytest
from qdrant_client import models
from qdrant_client.http.exceptions import UnexpectedResponse

from support import ShoalNode, make_dataset, normalise_id, queries, start_cluster, upload

METRIC = models.Distance.COSINE
DIM = 24


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    base = tmp_path_factory.mktemp("snap_single")
    node = ShoalNode(base / "data", base / "shoal.log", 300)
    node.start()
    yield node
    node.stop(kill=True)


@pytest.fixture(scope="module")
def trio(tmp_path_factory):
    yield from start_cluster(tmp_path_factory.mktemp("snap_cluster"), first_ip=55)


def fill(client, name, n=1500, seed=3, **create):
    client.create_collection(name, vectors_config=models.VectorParams(size=DIM, distance=METRIC), **create)
    _, ids, vectors, payloads = make_dataset(METRIC, n=n, n_uuid=n // 5, seed=seed)
    upload(client, name, ids, vectors, payloads)
    return ids


def answers(client, name):
    """What a few exact and filtered searches answer, and every point (id, payload) by scroll."""
    flt = models.Filter(must=[models.FieldCondition(key="group", match=models.MatchValue(value=1))])
    out = []
    for q in queries(METRIC, n=6):
        for f in (None, flt):
            got = client.query_points(name, query=q.tolist(), limit=10, query_filter=f, with_payload=True,
                                      search_params=models.SearchParams(exact=True)).points
            out.append([(normalise_id(p.id), round(p.score, 4), json.dumps(p.payload, sort_keys=True)) for p in got])
    points, offset = [], None
    while True:
        page, offset = client.scroll(name, limit=500, offset=offset, with_vectors=True)
        points += [(normalise_id(p.id), json.dumps(p.payload, sort_keys=True), [round(x, 5) for x in p.vector])
                   for p in page]
        if offset is None:
            break
    return out, points


def download(node, name, snapshot) -> bytes:
    r = httpx.get(f"{node.url}/collections/{name}/snapshots/{snapshot}", timeout=60)
    assert r.status_code == 200, r.text
    return r.content


def upload_snapshot(node, name, data: bytes, **params):
    return httpx.post(f"{node.url}/collections/{name}/snapshots/upload", params=params,
                      files={"snapshot": ("x.snapshot", data)}, timeout=120)


def test_collection_snapshot_lifecycle_on_one_node(single):
    c = single.client()
    fill(c, "life")
    before = answers(c, "life")

    snap = c.create_snapshot("life", wait=True)
    assert snap.name.startswith("life-") and snap.name.endswith(".snapshot")
    assert snap.size > 0 and len(snap.checksum) == 64 and snap.creation_time
    listed = c.list_snapshots("life")
    assert [s.name for s in listed] == [snap.name]
    assert listed[0].checksum == snap.checksum and listed[0].size == snap.size

    data = download(single, "life", snap.name)
    assert len(data) == snap.size
    import hashlib
    assert hashlib.sha256(data).hexdigest() == snap.checksum
    assert {m.name for m in tarfile.open(fileobj=io.BytesIO(data)).getmembers()} >= {"snapshot.json", "checksums.json"}

    # Recover from a URL (this node's own download route) into another name, and with the
    # checksum; and into the same collection after it changed: back to the snapshot's state.
    url = f"{single.url}/collections/life/snapshots/{snap.name}"
    assert c.recover_snapshot("life_copy", url, checksum=snap.checksum, priority=models.SnapshotPriority.SNAPSHOT)
    assert answers(c, "life_copy") == before
    assert c.get_collection("life_copy").config.params.vectors.size == DIM
    c.delete("life", points_selector=models.PointIdsList(points=[normalise_id(before[1][0][0])]), wait=True)
    c.upsert("life", points=[models.PointStruct(id=999_999, vector=[0.5] * DIM)], wait=True)
    assert answers(c, "life") != before
    assert c.recover_snapshot("life", url)
    assert answers(c, "life") == before

    # Upload (what the client's `recover_from_uploaded_snapshot` sends).
    r = c.http.snapshots_api.recover_from_uploaded_snapshot(
        "life_up", wait=True, priority=models.SnapshotPriority.REPLICA, snapshot=io.BytesIO(data))
    assert r.result is True
    assert answers(c, "life_up") == before

    # file:// inside the node's snapshots directory.
    path = single.data_dir / "snapshots" / "collections" / "life" / snap.name
    assert c.recover_snapshot("life_file", path.as_uri())
    assert answers(c, "life_file") == before

    # Not waited for: accepted, then done.
    assert c.create_snapshot("life", wait=False) is None
    assert c.delete_snapshot("life", snap.name, wait=True)
    assert snap.name not in [s.name for s in c.list_snapshots("life")]
    with pytest.raises(UnexpectedResponse) as e:
        c.delete_snapshot("life", snap.name)
    assert e.value.status_code == 404
    r = httpx.get(f"{single.url}/collections/life/snapshots/..%2F..%2Fcatalog.snapshot")
    assert r.status_code in (400, 404) and "error" in r.json()["status"]
    with pytest.raises(UnexpectedResponse) as e:
        c.list_snapshots("no_such_collection")
    assert e.value.status_code == 404


def test_full_snapshots(single):
    c = single.client()
    fill(c, "full_a", n=200)
    snap = c.create_full_snapshot(wait=True)
    assert snap.name.startswith("full-snapshot") and snap.size > 0 and len(snap.checksum) == 64
    assert snap.name in [s.name for s in c.list_full_snapshots()]
    r = httpx.get(f"{single.url}/snapshots/{snap.name}", timeout=60)
    assert r.status_code == 200 and len(r.content) == snap.size
    tar = tarfile.open(fileobj=io.BytesIO(r.content))
    index = json.load(tar.extractfile("full.json"))
    assert "full_a" in index["collections"]
    # A collection snapshot inside restores on its own.
    inner = tar.extractfile(index["collections"]["full_a"]).read()
    assert upload_snapshot(single, "full_a_back", inner).status_code == 200
    assert c.count("full_a_back", exact=True).count == 200
    assert c.delete_full_snapshot(snap.name)
    assert snap.name not in [s.name for s in c.list_full_snapshots()]


def _rewrite(data: bytes, change) -> bytes:
    """The archive with `change(name, bytes) -> bytes` applied to each entry (checksums kept)."""
    src = tarfile.open(fileobj=io.BytesIO(data))
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as dst:
        for m in src.getmembers():
            body = change(m.name, src.extractfile(m).read())
            m.size = len(body)
            dst.addfile(m, io.BytesIO(body))
    return out.getvalue()


def test_bad_snapshots_are_refused_and_change_nothing(single):
    c = single.client()
    fill(c, "keep", n=400)
    before = answers(c, "keep")
    snap = c.create_snapshot("keep")
    data = download(single, "keep", snap.name)
    c.create_collection("other_dim", vectors_config=models.VectorParams(size=8, distance=METRIC))
    other = download(single, "other_dim", c.create_snapshot("other_dim").name)

    def bump_version(name, body):
        if name == "snapshot.json":
            head = json.loads(body)
            head["version"] = 99
            return json.dumps(head).encode()
        return body

    def flip_point(name, body):
        if name.startswith("shards/") and body:
            return body[:40] + bytes([body[40] ^ 0x55]) + body[41:]
        return body

    bad = {
        "truncated": data[: len(data) // 2],
        "truncated at an entry boundary": data[:1024],
        "flipped byte in a point": _rewrite(data, flip_point),
        "flipped byte anywhere": data[:700] + bytes([data[700] ^ 0xFF]) + data[701:],
        "other format version": _rewrite(data, bump_version),
        "not a tar": b"hello" * 1000,
        "dimension mismatch": other,
    }
    for what, blob in bad.items():
        r = upload_snapshot(single, "keep", blob)
        assert 400 <= r.status_code < 500, (what, r.status_code, r.text)
        assert r.json()["status"]["error"], what
        assert answers(c, "keep") == before, what
    # A wrong checksum, by URL and by upload.
    url = f"{single.url}/collections/keep/snapshots/{snap.name}"
    with pytest.raises(UnexpectedResponse) as e:
        c.recover_snapshot("keep", url, checksum="0" * 64)
    assert e.value.status_code == 400 and b"checksum" in e.value.content
    assert upload_snapshot(single, "keep", data, checksum="ab" * 32).status_code == 400
    # Locations a node does not read.
    for location in ["file:///etc/passwd", "ftp://127.0.0.1/x.snapshot", "/tmp/x.snapshot",
                     f"{single.url}/collections/keep/snapshots/missing.snapshot"]:
        with pytest.raises(UnexpectedResponse) as e:
            c.recover_snapshot("keep", location)
        assert e.value.status_code == 400, location
    assert answers(c, "keep") == before
    # An upload without the file field.
    r = httpx.post(f"{single.url}/collections/keep/snapshots/upload", files={"other": ("x", b"x")})
    assert r.status_code == 400


def test_cluster_snapshot_covers_every_shard_and_restores_both_ways(single, trio):
    n0, n1, n2 = trio
    c0, c2 = n0.client(), n2.client()
    ids = fill(c0, "spread", n=2000, seed=5, shard_number=6, replication_factor=2)
    before = answers(c2, "spread")
    assert len(before[1]) == len(ids)

    # Taken through node 2: every shard, whichever nodes hold it.
    snap = c2.create_snapshot("spread")
    assert [s.name for s in c2.list_snapshots("spread")] == [snap.name]

    # Cluster -> single node, by URL from the cluster node.
    s = single.client()
    url = f"{n2.url}/collections/spread/snapshots/{snap.name}"
    assert s.recover_snapshot("from_cluster", url, checksum=snap.checksum)
    assert answers(s, "from_cluster") == before

    # Single node -> cluster (by upload through node 1), replacing what the cluster had, and
    # every node answers the same.
    s.upsert("from_cluster", points=[models.PointStruct(id=123_456_789, vector=[0.25] * DIM, payload={"k": 1})],
             wait=True)
    changed = answers(s, "from_cluster")
    local = s.create_snapshot("from_cluster")
    data = download(single, "from_cluster", local.name)
    r = upload_snapshot(n1, "spread", data, priority="snapshot")
    assert r.status_code == 200, r.text
    for client in (c0, c2, n1.client()):
        assert answers(client, "spread") == changed
    # And into a collection the cluster did not have.
    assert c0.recover_snapshot("fresh", f"{single.url}/collections/from_cluster/snapshots/{local.name}")
    assert answers(c2, "fresh") == changed
