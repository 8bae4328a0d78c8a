"""Static checks of the deployment configs under cluster/ (fast, no network, no cloud, no Docker).

Launcher YAMLs go through Ray's own config pipeline (prepare_config + validate_config, the JSON
schema ray-schema.json shipped with the installed Ray); Kubernetes manifests, the Dockerfile and
the README are parsed and checked against the invariants in invariants.py. Every invariant also
has a test that breaks a copy of a shipped config and asserts that the checker flags it.
"""

from __future__ import annotations

import copy
import re
import shlex
import socket
from collections.abc import Callable
from typing import Any

import jsonschema
import pytest
import ray
import yaml
from packaging.version import Version

from tests.cluster import invariants as inv


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Validation must not reach any cloud: any connection attempt fails the test."""

    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("cluster config checks must not open network connections")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _raw(name: str) -> dict[str, Any]:
    return inv.load_yaml(inv.CLUSTER / "launcher" / f"{name}.yaml")


def _prepared(name: str) -> dict[str, Any]:
    return inv.validated_launcher_config(_raw(name))


LAUNCHERS = [p.stem for p in inv.LAUNCHER_FILES]


# ------------------------------------------------------------------- the pin and the validator


def test_pin_is_read_from_pyproject_and_installed_ray_satisfies_it() -> None:
    req = inv.ray_requirement()
    assert {"default", "tune"} <= req.extras
    assert str(req.specifier), "ray must be pinned to a release range"
    # The schema the configs are validated against is the one of a Ray inside the pin.
    assert Version(ray.__version__) in req.specifier, (ray.__version__, str(req.specifier))


def test_both_clouds_have_a_launcher_config() -> None:
    assert set(LAUNCHERS) >= {"aws", "gcp"}


@pytest.mark.parametrize("name", LAUNCHERS)
def test_launcher_config_passes_rays_validator(name: str) -> None:
    prepared = _prepared(name)
    # prepare_config merged the provider defaults and filled per-type bounds like `ray up` does.
    assert prepared["provider"]["type"] == name
    for node_type in prepared["available_node_types"].values():
        assert "max_workers" in node_type and "min_workers" in node_type


@pytest.mark.parametrize("name", LAUNCHERS)
@pytest.mark.parametrize(
    "breakage",
    [
        # resources are integers for the autoscaler: a fractional CPU is a schema error
        lambda c: c["available_node_types"][c["head_node_type"]]["resources"].update(CPU=0.5),
        # node types accept only the schema's keys
        lambda c: c["available_node_types"][c["head_node_type"]].update(min_worker=0),
        # top-level keys too
        lambda c: c.update(idle_timeout=5),
        # the head type must be one of the node types
        lambda c: c.update(head_node_type="no-such-type"),
    ],
    ids=["fractional-resource", "unknown-node-type-key", "unknown-top-level-key", "bad-head"],
)
def test_rays_validator_rejects_broken_launcher_configs(
    name: str, breakage: Callable[[dict[str, Any]], None]
) -> None:
    raw = _raw(name)
    breakage(raw)
    with pytest.raises((jsonschema.ValidationError, ValueError)):
        inv.validated_launcher_config(raw)


# ------------------------------------------------------------------- launcher invariants


@pytest.mark.parametrize("name", LAUNCHERS)
def test_launcher_invariants_hold(name: str) -> None:
    assert inv.check_launcher(_prepared(name)) == []


@pytest.mark.parametrize("name", LAUNCHERS)
def test_launcher_head_runs_no_trials_and_workers_scale_from_zero(name: str) -> None:
    config = _prepared(name)
    head = config["available_node_types"][config["head_node_type"]]
    assert head["resources"]["CPU"] == 0 and head["resources"].get("GPU", 0) == 0
    workers = {k: v for k, v in config["available_node_types"].items()
               if k != config["head_node_type"]}
    assert workers and all(w["min_workers"] == 0 for w in workers.values())
    assert all(w["resources"].get("GPU", 0) >= 1 for w in workers.values())
    assert 0 < config["max_workers"] <= 16
    assert config["idle_timeout_minutes"] > 0


@pytest.mark.parametrize("name", LAUNCHERS)
def test_launcher_notes_shared_storage_for_the_sweep(name: str) -> None:
    text = (inv.CLUSTER / "launcher" / f"{name}.yaml").read_text()
    scheme = {"aws": "s3://", "gcp": "gs://"}[name]
    assert f"KP_STORAGE={scheme}" in text
    assert "storage_path=$KP_STORAGE" in text


def _head(c: dict[str, Any]) -> dict[str, Any]:
    return c["available_node_types"][c["head_node_type"]]


def _gpu_workers(c: dict[str, Any]) -> list[dict[str, Any]]:
    return [v for k, v in c["available_node_types"].items()
            if k != c["head_node_type"] and v["resources"].get("GPU")]


def _set_head_start(c: dict[str, Any], old: str, new: str) -> None:
    c["head_start_ray_commands"] = [s.replace(old, new) for s in c["head_start_ray_commands"]]


def _drop_run_option(c: dict[str, Any], needle: str) -> None:
    c["docker"]["run_options"] = [o for o in c["docker"]["run_options"] if needle not in o]


def _open_port(port: int, cidr: str = "0.0.0.0/0") -> Callable[[dict[str, Any]], None]:
    def mutate(c: dict[str, Any]) -> None:
        group = c["provider"].setdefault("security_group", {"GroupName": "g"})
        rule = {"FromPort": port, "ToPort": port, "IpProtocol": "tcp"}
        if ":" in cidr:
            rule["Ipv6Ranges"] = [{"CidrIpv6": cidr}]
        else:
            rule["IpRanges"] = [{"CidrIp": cidr}]
        group.setdefault("IpPermissions", []).append(rule)
    return mutate


LAUNCHER_BREAKAGES: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("head-cpu", lambda c: _head(c)["resources"].update(CPU=4), "advertises CPU"),
    ("head-gpu", lambda c: _head(c)["resources"].update(GPU=1), "advertises GPU"),
    ("min-workers", lambda c: _gpu_workers(c)[0].update(min_workers=1), "min_workers"),
    ("gpu-undeclared", lambda c: [w["resources"].pop("GPU") for w in _gpu_workers(c)],
     "declares GPU 0"),
    ("gpu-count", lambda c: [w["resources"].update(GPU=2) for w in _gpu_workers(c)],
     "declares GPU 2"),
    ("no-spot", lambda c: [w["node_config"].pop(k, None) for w in _gpu_workers(c)
                           for k in ("InstanceMarketOptions", "scheduling")], "spot"),
    ("no-idle-timeout", lambda c: c.update(idle_timeout_minutes=0), "idle_timeout"),
    ("image-tag", lambda c: c["docker"].update(image="rayproject/ray:2.59.0-py311-gpu"),
     "does not satisfy"),
    ("image-latest", lambda c: c["docker"].update(image="rayproject/ray:latest-gpu"),
     "not stated"),
    ("worker-image-drift", lambda c: c["docker"].update(
        worker_image="rayproject/ray:2.61.0-py311-gpu"), "2.61.0"),
    ("no-project-install", lambda c: c.update(setup_commands=[]), "install the project"),
    ("public-dashboard", lambda c: _set_head_start(
        c, "--dashboard-host=127.0.0.1", "--dashboard-host=0.0.0.0"), "dashboard to 0.0.0.0"),
    ("sg-8265", _open_port(8265), "8265"),
    ("sg-10001-v6", _open_port(10001, "::/0"), "10001"),
    ("sg-all", lambda c: c["provider"].setdefault("security_group", {}).setdefault(
        "IpPermissions", []).append({"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}),
     "all ports"),
    ("own-sg", lambda c: _head(c)["node_config"].update(SecurityGroupIds=["sg-1"]),
     "SecurityGroupIds"),
    ("no-auth-mode", lambda c: _drop_run_option(c, "RAY_AUTH_MODE"), "RAY_AUTH_MODE"),
    ("no-token-source", lambda c: _drop_run_option(c, "RAY_AUTH_TOKEN_PATH"), "token source"),
    ("pip-other-ray", lambda c: c["setup_commands"].append("pip install 'ray[default]==2.59.1'"),
     "does not satisfy"),
    ("inline-token", lambda c: c["docker"]["run_options"].append(
        "--env RAY_AUTH_TOKEN=0123456789abcdef"), "inline"),
    ("inline-wandb", lambda c: c["setup_commands"].append(
        "export WANDB_API_KEY=abc123 && true"), "inline"),
]


@pytest.mark.parametrize("name", LAUNCHERS)
@pytest.mark.parametrize(
    "breakage,expected", [(b, e) for _, b, e in LAUNCHER_BREAKAGES],
    ids=[i for i, _, _ in LAUNCHER_BREAKAGES],
)
def test_launcher_checker_flags_broken_config(
    name: str, breakage: Callable[[dict[str, Any]], None], expected: str
) -> None:
    config = copy.deepcopy(_prepared(name))
    breakage(config)
    problems = inv.check_launcher(config)
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize("name", LAUNCHERS)
def test_provider_default_start_command_would_expose_the_dashboard(name: str) -> None:
    """Dropping our head_start_ray_commands falls back to Ray's default (--dashboard-host=0.0.0.0),
    which the checker must catch: the override is load-bearing."""
    raw = _raw(name)
    del raw["head_start_ray_commands"]
    problems = inv.check_launcher(inv.validated_launcher_config(raw))
    assert any("dashboard to 0.0.0.0" in p for p in problems), problems


@pytest.mark.parametrize("name", LAUNCHERS)
def test_provider_default_setup_would_install_another_ray(name: str) -> None:
    """Without our setup_commands, fillout_defaults (a shallow merge with the provider's
    defaults.yaml) brings Ray's nightly-wheel install back: the checker must catch it."""
    raw = _raw(name)
    del raw["setup_commands"]
    problems = inv.check_launcher(inv.validated_launcher_config(raw))
    assert any("installs" in p and "does not satisfy" in p for p in problems), problems


@pytest.mark.parametrize("name", LAUNCHERS)
def test_auth_mode_and_token_reach_head_and_workers_from_the_container_env(name: str) -> None:
    docker = _prepared(name)["docker"]
    env = inv._docker_env(docker["run_options"])
    assert env["RAY_AUTH_MODE"] == "token"
    token_path = env["RAY_AUTH_TOKEN_PATH"]
    # the token file is mounted read-only at that path from the host file the init command writes
    mounts = [shlex.split(o) for o in docker["run_options"] if o.startswith("-v ")]
    sources = {m[1].split(":")[0]: m[1].split(":")[1] for m in mounts}
    host_file = next(src for src, dst in sources.items() if dst == token_path)
    init = " ".join(_prepared(name)["initialization_commands"])
    assert f"> {host_file}" in init
    assert "umask 077" in init


# ------------------------------------------------------------------- Kubernetes


@pytest.fixture(scope="module")
def k8s_docs() -> list[tuple[str, dict[str, Any]]]:
    return inv.load_k8s_docs()


def _doc(docs: list[tuple[str, dict[str, Any]]], kind: str) -> dict[str, Any]:
    return next(d for _, d in docs if d.get("kind") == kind)


def test_kuberay_manifests_parse_and_hold_the_invariants(
    k8s_docs: list[tuple[str, dict[str, Any]]]
) -> None:
    kinds = [d["kind"] for _, d in k8s_docs]
    assert {"RayCluster", "RayJob", "Secret", "PersistentVolumeClaim"} <= set(kinds)
    assert inv.check_k8s(k8s_docs) == []


def test_raycluster_gpu_group_matches_num_gpus(k8s_docs: list[tuple[str, Any]]) -> None:
    for spec in (_doc(k8s_docs, "RayCluster")["spec"],
                 _doc(k8s_docs, "RayJob")["spec"]["rayClusterSpec"]):
        group = spec["workerGroupSpecs"][0]
        resources = group["template"]["spec"]["containers"][0]["resources"]
        assert (resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"]
                == group["rayStartParams"]["num-gpus"] == "1")
        assert group["minReplicas"] == 0
        assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"


def test_rayjob_runs_a_sweep_and_cleans_up(k8s_docs: list[tuple[str, Any]]) -> None:
    spec = _doc(k8s_docs, "RayJob")["spec"]
    assert spec["entrypoint"].startswith("kp sweep run search_spaces/")
    assert "storage_path=" in spec["entrypoint"]
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["ttlSecondsAfterFinished"] >= 0
    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert runtime_env["working_dir"] and runtime_env["env_vars"]["WANDB_MODE"]


def test_rayjob_keeps_its_study_in_postgresql_with_the_password_from_a_secret(
    k8s_docs: list[tuple[str, Any]]
) -> None:
    spec = _doc(k8s_docs, "RayJob")["spec"]
    words = dict(w.split("=", 1) for w in spec["entrypoint"].split() if "=" in w)
    assert words["search.storage"].startswith("postgresql://")
    assert "@" in words["search.storage"] and ":" not in words["search.storage"].split("@")[0][13:]
    head = spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    ref = _env_entry(head, words["search.storage_password_env"])["valueFrom"]["secretKeyRef"]
    assert (ref["name"], ref["key"]) == ("kp-postgres", "password")
    assert inv.check_study_storage(spec["entrypoint"], spec["rayClusterSpec"], "rayjob") == []


def test_rayjob_cluster_matches_the_raycluster(k8s_docs: list[tuple[str, Any]]) -> None:
    """rayjob.yaml embeds a copy of raycluster.yaml's spec: keep the copies identical."""
    assert (_doc(k8s_docs, "RayJob")["spec"]["rayClusterSpec"]
            == _doc(k8s_docs, "RayCluster")["spec"])


def test_secret_example_documents_the_commands_and_holds_no_values(
    k8s_docs: list[tuple[str, Any]]
) -> None:
    text = (inv.CLUSTER / "kuberay" / "secret.example.yaml").read_text()
    assert re.search(r"#\s+kubectl create secret generic kp-ray-auth --from-literal=auth_token=",
                     text)
    assert re.search(r"#\s+kubectl create secret generic kp-wandb --from-literal=api_key=", text)
    assert re.search(r"#\s+kubectl create secret generic kp-postgres --from-literal=password=",
                     text)
    names = {d["metadata"]["name"] for _, d in k8s_docs if d["kind"] == "Secret"}
    # every Secret the manifests reference is documented in the example
    referenced = {v["name"] for _, d in k8s_docs for p, v in inv.walk(d)
                  if p.endswith("secretKeyRef")}
    referenced |= {d["spec"]["authOptions"]["secretName"] for _, d in k8s_docs
                   if d["kind"] == "RayCluster"}
    assert referenced <= names, referenced - names


def _rc(docs: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    return _doc(docs, "RayCluster")


def _rj(docs: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    return _doc(docs, "RayJob")


def _worker(d: dict[str, Any]) -> dict[str, Any]:
    return d["spec"]["workerGroupSpecs"][0]


def _worker_container(d: dict[str, Any]) -> dict[str, Any]:
    return _worker(d)["template"]["spec"]["containers"][0]


def _head_container(d: dict[str, Any]) -> dict[str, Any]:
    return d["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]


def _env_entry(container: dict[str, Any], name: str) -> dict[str, Any]:
    return next(e for e in container["env"] if e["name"] == name)


def _add_doc(doc: dict[str, Any]) -> Callable[[list[tuple[str, dict[str, Any]]]], None]:
    return lambda docs: docs.append(("extra.yaml", doc))


K8S_BREAKAGES: list[tuple[str, Callable[[list[tuple[str, dict[str, Any]]]], None], str]] = [
    ("head-cpus", lambda d: _rc(d)["spec"]["headGroupSpec"]["rayStartParams"].update(
        {"num-cpus": "4"}), "num-cpus"),
    ("no-autoscaling", lambda d: _rc(d)["spec"].update(enableInTreeAutoscaling=False),
     "enableInTreeAutoscaling"),
    ("gpu-limit", lambda d: _worker_container(_rc(d))["resources"]["limits"].update(
        {"nvidia.com/gpu": "2"}), "must be equal"),
    ("num-gpus", lambda d: _worker(_rc(d))["rayStartParams"].update({"num-gpus": "2"}),
     "must be equal"),
    ("min-replicas", lambda d: _worker(_rc(d)).update(minReplicas=1), "minReplicas"),
    ("image", lambda d: _head_container(_rc(d)).update(image="rayproject/ray:2.59.1-gpu"),
     "does not satisfy"),
    ("ray-version", lambda d: _rc(d)["spec"].update(rayVersion="2.61.0"), "rayVersion"),
    ("load-balancer", lambda d: _rc(d)["spec"]["headGroupSpec"].update(
        serviceType="LoadBalancer"), "serviceType"),
    ("node-port-service", _add_doc({"apiVersion": "v1", "kind": "Service",
                                    "metadata": {"name": "dash"},
                                    "spec": {"type": "NodePort"}}), "NodePort"),
    ("ingress", _add_doc({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                          "metadata": {"name": "dash"}, "spec": {}}), "Ingress"),
    ("annotations", lambda d: _rc(d)["spec"].update(headServiceAnnotations={
        "service.beta.kubernetes.io/aws-load-balancer-type": "nlb"}), "headServiceAnnotations"),
    ("enable-ingress", lambda d: _rc(d)["spec"]["headGroupSpec"].update(enableIngress=True),
     "enableIngress"),
    ("inline-wandb", lambda d: _env_entry(_worker_container(_rc(d)), "WANDB_API_KEY").update(
        value="abc", valueFrom=None), "WANDB_API_KEY"),
    ("inline-token", lambda d: _env_entry(_head_container(_rc(d)), "RAY_AUTH_TOKEN").update(
        value="abc"), "RAY_AUTH_TOKEN"),
    ("no-auth-mode", lambda d: _head_container(_rc(d))["env"].remove(
        _env_entry(_head_container(_rc(d)), "RAY_AUTH_MODE")), "RAY_AUTH_MODE"),
    ("auth-disabled", lambda d: _rc(d)["spec"]["authOptions"].update(mode="disabled"),
     "authOptions.mode"),
    ("token-other-secret", lambda d: _env_entry(_worker_container(_rc(d)), "RAY_AUTH_TOKEN")[
        "valueFrom"]["secretKeyRef"].update(name="other"), "authOptions uses"),
    ("no-shutdown", lambda d: _rj(d)["spec"].update(shutdownAfterJobFinishes=False),
     "shutdownAfterJobFinishes"),
    ("no-ttl", lambda d: _rj(d)["spec"].pop("ttlSecondsAfterFinished"), "ttlSeconds"),
    ("entrypoint", lambda d: _rj(d)["spec"].update(entrypoint="python train.py"), "kp sweep"),
    ("local-storage", lambda d: _rj(d)["spec"].update(
        entrypoint="kp sweep run search_spaces/demo.yaml storage_path=/tmp/results"),
     "storage_path"),
    ("sqlite-study", lambda d: _rj(d)["spec"].update(
        entrypoint="kp sweep run search_spaces/demo.yaml storage_path=/mnt/kp-results"),
     "SQLite"),
    ("password-in-url", lambda d: _rj(d)["spec"].update(entrypoint=_rj(d)["spec"][
        "entrypoint"].replace("postgresql://kp@", "postgresql://kp:hunter2@")),
     "carries a password"),
    ("password-env-elsewhere", lambda d: _rj(d)["spec"].update(entrypoint=_rj(d)["spec"][
        "entrypoint"].replace("_env=KP_STUDY_PASSWORD", "_env=PGPASS_OTHER")),
     "PGPASS_OTHER is not set on the head"),
    ("secret-in-runtime-env", lambda d: _rj(d)["spec"].update(
        runtimeEnvYAML="working_dir: /app\nenv_vars:\n  WANDB_API_KEY: abc\n"), "runtimeEnvYAML"),
    ("rayjob-cluster", lambda d: _rj(d)["spec"]["rayClusterSpec"]["workerGroupSpecs"][0].update(
        minReplicas=2), "rayClusterSpec"),
    ("secret-value", lambda d: _doc(d, "Secret")["stringData"].update(auth_token="s3cr3t"),
     "holds a value"),
    ("rwo-claim", lambda d: _doc(d, "PersistentVolumeClaim")["spec"].update(
        accessModes=["ReadWriteOnce"]), "ReadWriteMany"),
]


@pytest.mark.parametrize("breakage,expected", [(b, e) for _, b, e in K8S_BREAKAGES],
                         ids=[i for i, _, _ in K8S_BREAKAGES])
def test_k8s_checker_flags_broken_manifests(
    k8s_docs: list[tuple[str, dict[str, Any]]],
    breakage: Callable[[list[tuple[str, dict[str, Any]]]], None],
    expected: str,
) -> None:
    docs = copy.deepcopy(k8s_docs)
    breakage(docs)
    problems = inv.check_k8s(docs)
    assert any(expected in p for p in problems), problems


# ------------------------------------------------------------------- image


def test_dockerfile_base_matches_the_pin_and_installs_cuda_torch_and_the_project() -> None:
    text = inv.DOCKERFILE.read_text()
    assert inv.check_dockerfile(text) == []
    base = next(rest for ins, rest in inv.dockerfile_instructions(text) if ins == "FROM")
    # the same Ray as every cluster config
    launcher_images = {_prepared(n)["docker"]["image"] for n in LAUNCHERS}
    assert {inv.image_ray_version(base)} == {inv.image_ray_version(i) for i in launcher_images}


@pytest.mark.parametrize(
    "old,new,expected",
    [
        ("rayproject/ray:2.60.0-py311-${CUDA}", "rayproject/ray:2.59.0-py311-${CUDA}",
         "does not satisfy"),
        ("rayproject/ray:2.60.0-py311-${CUDA}", "rayproject/ray:2.60.0-py311", "not a CUDA image"),
        ("rayproject/ray:2.60.0-py311-${CUDA}", "python:3.11-slim", "not a Ray image"),
        ('pip install --no-cache-dir "torch==', 'true "', "torch"),
        ("RUN pip install --no-cache-dir --constraint /home/ray/constraints.txt /app",
         "RUN true", "pip-installed"),
    ],
    ids=["old-ray", "cpu-base", "not-ray", "no-torch", "no-project"],
)
def test_dockerfile_checker_flags_broken_dockerfile(old: str, new: str, expected: str) -> None:
    text = inv.DOCKERFILE.read_text()
    assert old in text
    problems = inv.check_dockerfile(text.replace(old, new))
    assert any(expected in p for p in problems), problems


def test_dockerfile_checker_resolves_build_args() -> None:
    text = "ARG RAY=2.58.0\nFROM rayproject/ray:${RAY}-py311-gpu\n"
    assert any("does not satisfy" in p for p in inv.check_dockerfile(text))


def test_build_context_ignore_keeps_local_state_out_of_the_image() -> None:
    patterns = inv.ignore_patterns(inv.DOCKERIGNORE.read_text())
    assert {".git", ".venv"} <= patterns
    gitignored = inv.ignore_patterns((inv.REPO / ".gitignore").read_text())
    assert gitignored <= patterns, gitignored - patterns
    # the Dockerfile's instructions name this ignore file's location
    assert "Dockerfile.dockerignore" in inv.DOCKERFILE.read_text()


def test_image_reference_parsing() -> None:
    assert inv.image_ray_version("rayproject/ray:2.60.0-py311-gpu") == "2.60.0"
    assert inv.image_ray_version("docker.io/rayproject/ray:2.60.0") == "2.60.0"
    assert inv.image_ray_version("ghcr.io/o/kp-platform:0.1.0-ray2.60.0") == "2.60.0"
    assert inv.image_ray_version("registry:5000/kp-platform") is None
    assert inv.image_ray_version("rayproject/ray:latest-gpu") is None


# ------------------------------------------------------------------- README


README = inv.README.read_text() if inv.README.exists() else ""


def test_readme_paths_exist() -> None:
    paths = set(re.findall(r"\bcluster/[\w./-]+\.(?:yaml|md|dockerignore)\b", README))
    paths |= set(re.findall(r"\bcluster/docker/Dockerfile\b", README))
    assert paths
    missing = [p for p in paths if not (inv.REPO / p).exists()]
    assert not missing, missing


def test_readme_walks_through_every_target() -> None:
    for step in [
        "ray up cluster/launcher/aws.yaml", "ray dashboard cluster/launcher/aws.yaml",
        "ray up cluster/launcher/gcp.yaml", "ray down cluster/launcher/aws.yaml",
        "RAY_AUTH_MODE=token ray job submit --address http://localhost:8265 --working-dir .",
        "kp sweep run search_spaces/demo.yaml storage_path=$KP_STORAGE", "ray job logs -f",
        "ray status", "helm install kuberay-operator", "kubectl create secret generic",
        "kubectl apply -f cluster/kuberay/raycluster.yaml", "kubectl port-forward",
        "kubectl apply -f cluster/kuberay/rayjob.yaml", "kp sweep sync", "-best",
        "min_workers: 0", "idle_timeout_minutes", "docker build -f cluster/docker/Dockerfile",
    ]:
        assert step in README, step


def _firewall_rules(text: str) -> list[dict[str, str]]:
    commands = re.findall(r"gcloud compute firewall-rules create(?:[^\n]*\\\n)*[^\n]*", text)
    rules = []
    for command in commands:
        words = shlex.split(command.replace("\\\n", " "))
        rules.append(dict(w[2:].split("=", 1) for w in words if w.startswith("--") and "=" in w))
    return rules


def check_firewall_rules(rules: list[dict[str, str]], tags: set[str]) -> list[str]:
    problems = []
    for rule in rules:
        sources = set(rule.get("source-ranges", "0.0.0.0/0").split(","))
        if sources & inv.WORLD and rule.get("allow") != "tcp:22":
            problems.append(f"firewall rule opens {rule.get('allow')} to the world")
        if rule.get("target-tags") not in tags:
            problems.append(f"firewall rule targets {rule.get('target-tags')}, nodes carry {tags}")
    return problems


def test_gcp_firewall_in_readme_admits_only_ssh_from_outside() -> None:
    config = _prepared("gcp")
    tags = {t for nt in config["available_node_types"].values()
            for t in nt["node_config"]["tags"]["items"]}
    rules = _firewall_rules(README)
    assert len(rules) >= 2
    assert check_firewall_rules(rules, tags) == []
    broken = copy.deepcopy(rules) + [{"allow": "tcp:8265", "source-ranges": "0.0.0.0/0",
                                      "target-tags": next(iter(tags))}]
    assert any("tcp:8265" in p for p in check_firewall_rules(broken, tags))
    untagged = [{**rules[0], "target-tags": "other"}]
    assert check_firewall_rules(untagged, tags)
