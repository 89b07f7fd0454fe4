"""Property-based fuzzing of the public REST API from its own OpenAPI description.

Starts a real `shoal` node (binary from $SHOAL_BIN, default target/debug/shoal) on a free
loopback port with a temporary data dir, creates two collections so that collection routes have
something to hit, and lets schemathesis generate valid and invalid requests for every operation in
`/openapi.json`. Every answer must not be a 5xx other than the documented 503 of the limits, must
match the documented schema and content type, and the node must still be alive at the end.

Bounded: SHOAL_FUZZ_EXAMPLES examples per operation (default 25), so the file runs in well under
90 s on 2 cores.
"""

import os
import random
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("SHOAL_BIN", str(ROOT / "target" / "debug" / "shoal"))
EXAMPLES = int(os.environ.get("SHOAL_FUZZ_EXAMPLES", "25"))
COLLECTIONS = ["fuzz_a", "fuzz_b"]
DIM = 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def node():
    tmp = tempfile.TemporaryDirectory(prefix="shoal-fuzz-")
    port, peer = free_port(), free_port()
    log = open(Path(tmp.name) / "shoal.log", "wb")
    proc = subprocess.Popen(
        [BIN, "--data-dir", str(Path(tmp.name) / "data"), "--listen", f"127.0.0.1:{port}",
         "--peer-listen", f"127.0.0.1:{peer}"],
        stdout=subprocess.DEVNULL, stderr=log,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        assert proc.poll() is None, f"shoal exited early: {(Path(tmp.name) / 'shoal.log').read_text()[-2000:]}"
        try:
            if requests.get(url + "/readyz", timeout=1).status_code == 200:
                break
        except requests.RequestException:
            pass
        assert time.time() < deadline, "shoal did not become ready"
        time.sleep(0.05)
    rng = random.Random(7)
    for i, name in enumerate(COLLECTIONS):
        distance = ["Cosine", "Euclid"][i]
        r = requests.put(f"{url}/collections/{name}", json={"vectors": {"size": DIM, "distance": distance}})
        assert r.status_code == 200, r.text
        points = [{"id": j, "vector": [rng.uniform(-1, 1) for _ in range(DIM)], "payload": {"i": j, "tag": f"t{j % 3}"}}
                  for j in range(20)]
        r = requests.put(f"{url}/collections/{name}/points?wait=true", json={"points": points})
        assert r.status_code == 200, r.text
    yield url, proc
    alive = proc.poll() is None
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)
    log.close()
    tail = (Path(tmp.name) / "shoal.log").read_text(errors="replace")[-4000:]
    tmp.cleanup()
    assert alive, f"shoal died during fuzzing:\n{tail}"


@pytest.fixture(scope="module")
def api_schema(node):
    url, _ = node
    return schemathesis.openapi.from_url(f"{url}/openapi.json")


def operations(api_schema):
    return [result.ok() for result in api_schema.get_all_operations()]


def strategy(operation, mode):
    """Cases for one operation; path `name` is mostly one of the fixtures' collections so that
    requests reach the handlers' logic (a DELETE of a collection keeps a random name so the
    fixtures survive)."""
    plain = operation.as_strategy(generation_mode=mode)
    if "{name}" not in operation.path or operation.method.upper() == "DELETE":
        return plain
    fixed = [operation.as_strategy(generation_mode=mode, path_parameters={"name": c}) for c in COLLECTIONS]
    return st.one_of(*fixed, plain)


CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_api(api_schema, node, mode):
    """Every operation, EXAMPLES generated cases each; failures are collected over all operations."""
    url, proc = node
    failures = []
    ops = operations(api_schema)
    assert len(ops) >= 20, [op.label for op in ops]
    for op in ops:
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck), phases=[Phase.generate, Phase.shrink])
        @given(case=strategy(op, mode))
        def run(case):
            case.call_and_validate(base_url=url, checks=CHECKS, timeout=30)

        try:
            run()
        except Unsatisfiable:
            # Negative mode: nothing in this operation can be made invalid (no body, string path).
            assert mode == GenerationMode.NEGATIVE, f"{op.label}: no valid case could be generated"
        except Exception as e:  # noqa: BLE001 - every failure is reported below
            failures.append(f"{op.label}: {type(e).__name__}: {e}")
        assert proc.poll() is None, f"shoal exited while fuzzing {op.label}; failures so far: {failures}"
    assert not failures, "\n\n".join(failures)


def test_node_survived(node):
    url, proc = node
    assert proc.poll() is None
    assert requests.get(url + "/readyz", timeout=5).status_code == 200
    for name in COLLECTIONS:
        r = requests.post(f"{url}/collections/{name}/points/count", json={"exact": True}, timeout=5)
        assert r.status_code == 200, r.text
