"""Fixtures of the compatibility suite: real `shoal` nodes on temp data dirs and free loopback ports.

Helpers (node wrapper, data sets, brute-force model) are in support.py.
"""

import signal

import pytest

from support import Loaded, ShoalNode


def _node(tmp_path_factory, name: str, indexing_threshold: int | None):
    base = tmp_path_factory.mktemp(name)
    node = ShoalNode(base / "data", base / "shoal.log", indexing_threshold)
    node.start()
    try:
        yield node
    finally:
        code = node.stop()
        if code not in (0, -signal.SIGTERM):
            print(f"{name}: shoal exited with {code}; log tail:\n{node.tail_log()}")


@pytest.fixture(scope="session")
def indexed_node(tmp_path_factory):
    """A node that builds HNSW segments as soon as a shard holds 500 unindexed points."""
    yield from _node(tmp_path_factory, "indexed", 500)


@pytest.fixture(scope="session")
def plain_node(tmp_path_factory):
    """A node that never indexes (`--indexing-threshold 0`, Qdrant's way of disabling it): every
    point stays in the unindexed tail. (With the default threshold a tail this small would be
    indexed once writes stop for a few seconds.)"""
    yield from _node(tmp_path_factory, "plain", 0)


@pytest.fixture(scope="module")
def own_node(tmp_path_factory):
    """A node of the module's own (restart tests), HNSW threshold 500."""
    yield from _node(tmp_path_factory, "own", 500)



@pytest.fixture(scope="session")
def readonly(indexed_node, plain_node):
    """`readonly(metric, indexed)`: a filled collection shared by tests that never write to it.

    indexed=True: on the threshold-500 node, after its HNSW segments are built.
    indexed=False: on the node that never indexes, where every point stays in the unindexed tail.
    """
    cache = {}

    def get(metric, indexed: bool) -> Loaded:
        key = (metric, indexed)
        if key not in cache:
            node = indexed_node if indexed else plain_node
            name = f"ro_{metric.value.lower()}_{'hnsw' if indexed else 'flat'}"
            cache[key] = Loaded(node, name, metric, indexed)
        return cache[key]

    return get
