"""Checkers for the trust boundary of the cluster configs: NetworkPolicy, torch pin, README.

Like invariants.py, each checker takes parsed data and returns a list of problems (empty when the
invariant holds), so tests can assert the shipped files are clean and a broken copy is flagged.
"""

from __future__ import annotations

import re
from typing import Any

from tests.cluster import invariants as inv

SUBMITTER = "ray-job-submitter"
OPERATOR = {"app.kubernetes.io/name": "kuberay-operator"}
JOB_API = 8265


def selector_matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """Kubernetes label-selector semantics (matchLabels and matchExpressions)."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values") or []
        present = key in labels
        ok = {
            "In": present and labels.get(key) in values,
            "NotIn": not present or labels.get(key) not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }[operator]
        if not ok:
            return False
    return True


def _labels(template: dict[str, Any] | None) -> dict[str, str]:
    return ((template or {}).get("metadata") or {}).get("labels") or {}


def ray_pod_labels(docs: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, str, dict]]:
    """(where, role, labels) of every head, worker and submitter pod template."""
    out = []
    for filename, doc in docs:
        kind = doc.get("kind")
        specs = []
        if kind == "RayCluster":
            specs.append(doc["spec"])
        elif kind == "RayJob":
            specs.append(doc["spec"].get("rayClusterSpec") or {})
            submitter = doc["spec"].get("submitterPodTemplate")
            out.append((f"{filename} {kind}", "submitter", _labels(submitter)))
        for spec in specs:
            for role, pod in inv.ray_cluster_pods(spec):
                out.append((f"{filename} {kind}", role, _labels(pod)))
    return out


def _admits_strangers(selector: dict[str, Any]) -> bool:
    """Whether a selector admits project pods that are neither Ray nodes nor the submitter."""
    part_of = {"app.kubernetes.io/part-of": "kp-platform"}
    strangers = [part_of, {**part_of, "app.kubernetes.io/component": "anything-else"}]
    return any(selector_matches(selector, labels) for labels in strangers)


def _is_own(peer: dict[str, Any], own: list[dict[str, str]]) -> bool:
    """A peer that admits Ray pods of the cluster (head, workers) and no other kind of pod."""
    selector = peer.get("podSelector") or {}
    if set(peer) != {"podSelector"} or not selector or _admits_strangers(selector):
        return False
    submitter = {"app.kubernetes.io/part-of": "kp-platform",
                 "app.kubernetes.io/component": SUBMITTER}
    if selector_matches(selector, submitter):
        return False
    return any(selector_matches(selector, labels) for labels in own)


def _peer_problem(peer: dict[str, Any], where: str) -> str | None:
    if "ipBlock" in peer:
        return f"{where}: admits an IP block {peer['ipBlock'].get('cidr')}"
    if "namespaceSelector" in peer and not (peer.get("podSelector") or {}):
        return f"{where}: admits every pod of the selected namespaces"
    if not (peer.get("podSelector") or {}):
        return f"{where}: admits every pod (empty podSelector)"
    return None


def check_network_policies(docs: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """The Ray heads (and workers) admit only the cluster's own pods, the job submitter and the
    operator; submitter and operator only on the job API port."""
    problems: list[str] = []
    policies = [(f, d) for f, d in docs if d.get("kind") == "NetworkPolicy"]
    pods = ray_pod_labels(docs)
    own = [labels for _, role, labels in pods if role != "submitter"]
    submitters = [labels for _, role, labels in pods if role == "submitter"]
    for filename, policy in policies:
        name = f"{filename} NetworkPolicy {policy['metadata']['name']}"
        if policy.get("apiVersion") != "networking.k8s.io/v1":
            problems.append(f"{name}: apiVersion {policy.get('apiVersion')}")
        for n, rule in enumerate(policy["spec"].get("ingress") or []):
            where = f"{name} ingress rule {n}"
            peers = rule.get("from") or []
            if not peers:
                problems.append(f"{where}: no 'from' admits every source")
                continue
            for peer in peers:
                problem = _peer_problem(peer, where)
                if problem:
                    problems.append(problem)
                    continue
                if _is_own(peer, own):
                    continue
                selector = peer["podSelector"]
                is_submitter = any(selector_matches(selector, s) for s in submitters)
                is_operator = selector_matches(selector, OPERATOR) and set(
                    selector.get("matchLabels") or {}) >= set(OPERATOR)
                if _admits_strangers(selector) or not (is_submitter or is_operator):
                    problems.append(f"{where}: admits pods other than the cluster's own, the "
                                    f"job submitter and the operator: {peer}")
                ports = {p.get("port") for p in rule.get("ports") or []}
                if not ports or ports - {JOB_API, "dashboard"}:
                    problems.append(f"{where}: the submitter and the operator may reach only "
                                    f"port {JOB_API}, not {sorted(map(str, ports)) or 'all'}")
    for where, role, labels in pods:
        selecting = [p for _, p in policies if selector_matches(p["spec"]["podSelector"], labels)
                     and "Ingress" in (p["spec"].get("policyTypes") or ["Ingress"])]
        if role == "submitter":
            if not any(_admits(p, labels, JOB_API) for p in _head_policies(policies, pods)):
                problems.append(f"{where}: the job submitter cannot reach the head's job API")
            continue
        if not selecting:
            problems.append(f"{where}: {role} pods are selected by no ingress NetworkPolicy "
                            "(every pod in the cluster reaches them)")
        elif role == "head":
            for worker in (lbl for _, r, lbl in pods if r.startswith("worker")):
                if not all(_admits(p, worker, port) for p in selecting
                           for port in inv.PRIVATE_PORTS):
                    problems.append(f"{where}: workers cannot reach the head's ports")
    return problems


def _head_policies(policies, pods) -> list[dict[str, Any]]:
    heads = [labels for _, role, labels in pods if role == "head"]
    return [p for _, p in policies
            if any(selector_matches(p["spec"]["podSelector"], h) for h in heads)]


def _admits(policy: dict[str, Any], labels: dict[str, str], port: int) -> bool:
    """Whether a pod-selector peer of one of the policy's rules admits `labels` on `port`."""
    for rule in policy["spec"].get("ingress") or []:
        ports = {p.get("port") for p in rule.get("ports") or []}
        if ports and port not in ports:
            continue
        for peer in rule.get("from") or []:
            if set(peer) == {"podSelector"} and selector_matches(peer["podSelector"], labels):
                return True
    return False


# --------------------------------------------------------------------------- torch in the image


def dockerfile_args(text: str) -> dict[str, str]:
    args = {}
    for instruction, rest in inv.dockerfile_instructions(text):
        if instruction == "ARG" and "=" in rest:
            name, _, default = rest.partition("=")
            args[name.strip()] = default.strip().strip("\"'")
    return args


def _expand(text: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), text)


def check_torch_pin(text: str) -> list[str]:
    """torch is installed as an exact version built for the base image's CUDA, from the index of
    that CUDA, and the project install cannot replace it."""
    args = dockerfile_args(text)
    instructions = [(i, _expand(rest, args)) for i, rest in inv.dockerfile_instructions(text)]
    base = next((rest.split()[0] for i, rest in instructions if i == "FROM"), "")
    cuda = re.search(r"-(cu\d+)$", base)
    if not cuda:
        return [f"Dockerfile: base {base} names no CUDA version (a -cuXXX tag, not -gpu)"]
    cuda = cuda.group(1)
    problems = []
    installs = [rest for i, rest in instructions
                if i == "RUN" and re.search(r"pip install[^&]*\btorch\b", rest)]
    pins = [re.search(r"\btorch(==|>=|<=|~=|>|<|!=)?([^\s\"',]*)", rest) for rest in installs]
    pins = [m for m in pins if m]
    if not pins:
        return ["Dockerfile: no pip install of torch"]
    for match, rest in zip(pins, installs, strict=True):
        operator, version = match.group(1), match.group(2)
        if operator != "==" or not re.fullmatch(r"\d+\.\d+\.\d+\+cu\d+", version):
            problems.append(f"Dockerfile: torch is not pinned to one CUDA build "
                            f"(torch{operator or ''}{version}; want torch==X.Y.Z+{cuda})")
        elif not version.endswith(f"+{cuda}"):
            problems.append(f"Dockerfile: torch {version} is not built for the base image's "
                            f"CUDA ({cuda})")
        index = re.search(r"--(?:index-url|extra-index-url)[= ]\"?(\S+?)\"?(\s|$)", rest)
        if not index or not index.group(1).rstrip("/").endswith(f"/whl/{cuda}"):
            problems.append(f"Dockerfile: torch is not installed from PyTorch's {cuda} index")
    project = [rest for i, rest in instructions
               if i == "RUN" and re.search(r"pip install (\S+ )*/app\b", rest)]
    if project and not all(re.search(r"(--constraint|-c)\s", rest) for rest in project):
        problems.append("Dockerfile: the project install may replace the pinned torch (no "
                        "--constraint)")
    return problems


# --------------------------------------------------------------------------- README


TRUST_TOPICS = {
    "storage_path": r"storage_path",
    "unpickling on restore": r"unpickl",
    "the token": r"RAY_AUTH_TOKEN",
    "the dashboard tunnel": r"tunnel",
    "the NetworkPolicy": r"networkpolicy\.yaml",
    "the torch pin": r"torch==",
}


def check_trust_section(readme: str) -> list[str]:
    match = re.search(r"^## Trust boundary\n(.*?)(?=^## )", readme, re.S | re.M)
    if not match:
        return ["cluster/README.md: no '## Trust boundary' section"]
    return [f"cluster/README.md: the trust-boundary section does not cover {topic}"
            for topic, pattern in TRUST_TOPICS.items() if not re.search(pattern, match.group(1))]
