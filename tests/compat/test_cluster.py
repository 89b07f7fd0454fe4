"""A 3-node cluster on loopback driven by the official client through node 0 and node 2.

Pods shoal-0..2 listen on 127.0.0.41-43 (same ports), and find each other through a DNS server
run by this test that answers the headless Service's names. Answers must equal brute force over
all the data, i.e. what one node holding everything would return, also with one node killed.
"""

import socket
import struct
import threading

import numpy as np
import pytest
from qdrant_client import models

from support import (METRICS, ShoalNode, assert_exact_results, free_port, make_dataset, normalise_id, queries, recall,
                     upload)

SERVICE = "shoal-headless.default.svc.cluster.local"
# The peer port's shared secret: a cluster node does not start without one.
CLUSTER_TOKEN = "compat-cluster-token-5d1e"
METRIC = models.Distance.EUCLID


class LoopbackDns:
    """Answers A queries for `shoal-<i>.<SERVICE>` from a dict; NXDOMAIN for anything else."""

    def __init__(self, records: dict):
        self.records = records
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                q, addr = self.sock.recvfrom(512)
            except OSError:
                return
            reply = self._answer(q)
            if reply:
                self.sock.sendto(reply, addr)

    def _answer(self, q: bytes):
        if len(q) < 12:
            return None
        i, labels = 12, []
        while i < len(q) and q[i]:
            labels.append(q[i + 1:i + 1 + q[i]].decode(errors="replace").lower())
            i += 1 + q[i]
        qtype = struct.unpack(">H", q[i + 1:i + 3])[0]
        end = i + 5
        ip = self.records.get(".".join(labels))
        answers = [ip] if ip and qtype == 1 else []
        rcode = 0 if ip else 3
        head = q[:2] + bytes([0x84 | (q[2] & 1), 0x80 | rcode]) + struct.pack(">HHHH", 1, len(answers), 0, 0)
        body = q[12:end]
        for a in answers:
            body += b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 1, 4) + socket.inet_aton(a)
        return head + body

    def close(self):
        self.sock.close()


def run_cluster(tmp_path_factory, name: str, first_host: int):
    """Three pods on 127.0.0.<first_host>..+2 and the DNS server naming them; yields the nodes."""
    base = tmp_path_factory.mktemp(name)
    ips = [f"127.0.0.{first_host + i}" for i in range(3)]
    dns = LoopbackDns({f"shoal-{i}.{SERVICE}": ips[i] for i in range(3)})
    port, peer_port = free_port(), free_port()
    nodes = []
    try:
        for i in range(3):  # OrderedReady: each pod starts once the previous one is Ready
            args = ("--hostname", f"shoal-{i}", "--service", SERVICE, "--cluster-size", "3",
                    "--dns-server", f"127.0.0.1:{dns.port}", "--cluster-token", CLUSTER_TOKEN)
            node = ShoalNode(base / f"shoal-{i}", base / f"shoal-{i}.log", 200, host=ips[i], port=port,
                             peer_port=peer_port, extra_args=args)
            node.start()
            nodes.append(node)
        yield nodes
    finally:
        for n in nodes:
            n.stop(kill=True)
        dns.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    yield from run_cluster(tmp_path_factory, "cluster", 41)


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
