"""Static checks of the cluster's trust boundary: who reaches the Ray head, which torch the image
holds, and what cluster/README.md says about storage_path, the token and the dashboard tunnel.

As in test_configs.py, every invariant has a test that breaks a copy of a shipped file and
asserts the checker flags it.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

import pytest

from tests.cluster import invariants as inv
from tests.cluster import trust_invariants as trust

Docs = list[tuple[str, dict[str, Any]]]


@pytest.fixture(scope="module")
def k8s_docs() -> Docs:
    return inv.load_k8s_docs()


def _policy(docs: Docs, name: str) -> dict[str, Any]:
    return next(d for _, d in docs if d.get("kind") == "NetworkPolicy"
                and d["metadata"]["name"] == name)


def _kind(docs: Docs, kind: str) -> dict[str, Any]:
    return next(d for _, d in docs if d.get("kind") == kind)


def _head_labels(doc: dict[str, Any]) -> dict[str, str]:
    return doc["spec"]["headGroupSpec"]["template"]["metadata"]["labels"]


def test_shipped_network_policies_admit_only_the_cluster_and_the_submitter(k8s_docs) -> None:
    assert trust.check_network_policies(k8s_docs) == []
    head = _policy(k8s_docs, "kp-ray-head")
    rc, rj = _kind(k8s_docs, "RayCluster"), _kind(k8s_docs, "RayJob")
    for doc in (rc, {"spec": rj["spec"]["rayClusterSpec"]}):
        assert trust.selector_matches(head["spec"]["podSelector"], _head_labels(doc))
    submitter = rj["spec"]["submitterPodTemplate"]["metadata"]["labels"]
    assert not trust.selector_matches(head["spec"]["podSelector"], submitter)


def test_selector_semantics() -> None:
    labels = {"a": "1", "b": "2"}
    assert trust.selector_matches({"matchLabels": {"a": "1"}}, labels)
    assert not trust.selector_matches({"matchLabels": {"a": "2"}}, labels)
    assert trust.selector_matches(
        {"matchExpressions": [{"key": "b", "operator": "In", "values": ["2", "3"]},
                              {"key": "c", "operator": "DoesNotExist"}]}, labels)
    assert not trust.selector_matches(
        {"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, labels)


def _rule(docs: Docs, n: int) -> dict[str, Any]:
    return _policy(docs, "kp-ray-head")["spec"]["ingress"][n]


def _drop_policies(docs: Docs) -> None:
    docs[:] = [(f, d) for f, d in docs if d.get("kind") != "NetworkPolicy"]


POLICY_BREAKAGES: list[tuple[str, Callable[[Docs], None], str]] = [
    ("no-policy", _drop_policies, "selected by no ingress NetworkPolicy"),
    ("open-to-all", lambda d: _policy(d, "kp-ray-head")["spec"]["ingress"].append({}),
     "no 'from' admits every source"),
    ("ip-block", lambda d: _rule(d, 0)["from"].append({"ipBlock": {"cidr": "0.0.0.0/0"}}),
     "IP block"),
    ("namespaces", lambda d: _rule(d, 1)["from"].append({"namespaceSelector": {}}),
     "every pod of the selected namespaces"),
    ("any-pod", lambda d: _rule(d, 0)["from"].append({"podSelector": {}}), "every pod"),
    ("submitter-all-ports", lambda d: _rule(d, 1).pop("ports"), "only port 8265"),
    ("submitter-gcs", lambda d: _rule(d, 1)["ports"].append({"protocol": "TCP", "port": 6379}),
     "only port 8265"),
    ("other-app", lambda d: _rule(d, 1)["from"].append(
        {"podSelector": {"matchLabels": {"app": "notebook"}}}), "other than the cluster's own"),
    ("whole-project", lambda d: _rule(d, 0)["from"][0].update(
        {"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "kp-platform"}}}),
     "other than the cluster's own"),
    ("head-relabelled", lambda d: _head_labels(_kind(d, "RayCluster")).update(
        {"app.kubernetes.io/component": "head"}), "head pods are selected by no"),
    ("submitter-relabelled", lambda d: _kind(d, "RayJob")["spec"]["submitterPodTemplate"][
        "metadata"]["labels"].update({"app.kubernetes.io/component": "submit"}),
     "cannot reach the head's job API"),
    ("workers-shut-out", lambda d: _rule(d, 0)["from"][0]["podSelector"]["matchExpressions"][1]
     .update(values=["ray-head"]), "workers cannot reach"),
    ("workers-open", lambda d: d.remove(next(x for x in d if x[1].get("kind") == "NetworkPolicy"
                                             and x[1]["metadata"]["name"] == "kp-ray-workers")),
     "gpu pods are selected by no"),
]


@pytest.mark.parametrize("breakage,expected", [(b, e) for _, b, e in POLICY_BREAKAGES],
                         ids=[i for i, _, _ in POLICY_BREAKAGES])
def test_network_policy_checker_flags_broken_policies(k8s_docs, breakage, expected) -> None:
    docs = copy.deepcopy(k8s_docs)
    breakage(docs)
    problems = trust.check_network_policies(docs)
    assert any(expected in p for p in problems), problems


def test_network_policy_is_applied_in_the_walkthrough() -> None:
    readme = inv.README.read_text()
    assert "kubectl apply -f cluster/kuberay/networkpolicy.yaml" in readme


# ------------------------------------------------------------------- torch in the image

PINNED = '"torch==${TORCH_VERSION}+${CUDA}"'


def test_dockerfile_pins_torch_to_the_base_images_cuda() -> None:
    assert trust.check_torch_pin(inv.DOCKERFILE.read_text()) == []


@pytest.mark.parametrize(
    "old,new,expected",
    [
        (PINNED, '"torch>=2.4,<3"', "not pinned to one CUDA build"),
        (PINNED, '"torch==2.13.0"', "not pinned to one CUDA build"),
        (PINNED, '"torch==${TORCH_VERSION}+cu126"', "not built for the base image's"),
        ("ARG CUDA=cu128", "ARG CUDA=gpu", "names no CUDA version"),
        ('--index-url "https://download.pytorch.org/whl/${CUDA}"', "", "from PyTorch's cu128"),
        ("--constraint /home/ray/constraints.txt /app", "/app", "may replace the pinned torch"),
    ],
    ids=["range", "no-cuda-build", "other-cuda", "gpu-alias", "pypi", "no-constraint"],
)
def test_torch_pin_checker_flags_broken_dockerfile(old: str, new: str, expected: str) -> None:
    text = inv.DOCKERFILE.read_text()
    assert old in text
    problems = trust.check_torch_pin(text.replace(old, new))
    assert any(expected in p for p in problems), problems


# ------------------------------------------------------------------- README


def test_readme_has_a_trust_boundary_section() -> None:
    assert trust.check_trust_section(inv.README.read_text()) == []


@pytest.mark.parametrize("topic", sorted(trust.TRUST_TOPICS))
def test_trust_section_checker_flags_a_missing_topic(topic: str) -> None:
    readme = inv.README.read_text()
    section = readme.index("## Trust boundary")
    end = readme.index("\n## ", section + 1)
    pattern = trust.TRUST_TOPICS[topic]
    stripped = readme[:section] + re.sub(pattern, "", readme[section:end]) + readme[end:]
    assert any(topic in p for p in trust.check_trust_section(stripped))
