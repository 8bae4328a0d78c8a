"""Checkers for the deployment configs under cluster/.

Each checker takes parsed config data and returns a list of problems (empty when the invariant
holds), so that tests can both assert the shipped files are clean and that a broken copy of them
is flagged. Nothing here touches the network.
"""

from __future__ import annotations

import copy
import re
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "cluster"
LAUNCHER_FILES = sorted((CLUSTER / "launcher").glob("*.yaml"))
KUBERAY_FILES = sorted((CLUSTER / "kuberay").glob("*.yaml"))
DOCKERFILE = CLUSTER / "docker" / "Dockerfile"
DOCKERIGNORE = CLUSTER / "docker" / "Dockerfile.dockerignore"
README = CLUSTER / "README.md"

SECRET_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD")
WORLD = {"0.0.0.0/0", "::/0"}
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
# Ports that must never be reachable from outside: GCS, dashboard + job API, Ray Client.
PRIVATE_PORTS = (6379, 8265, 10001)


# --------------------------------------------------------------------------- the Ray pin


def ray_requirement(pyproject: Path = REPO / "pyproject.toml") -> Requirement:
    """The `ray[...]` requirement of the project's dependencies."""
    data = tomllib.loads(pyproject.read_text())
    for dep in data["project"]["dependencies"]:
        req = Requirement(dep)
        if req.name == "ray":
            return req
    raise AssertionError(f"{pyproject}: no ray dependency")


def ray_pin() -> SpecifierSet:
    return ray_requirement().specifier


def image_ray_version(image: str) -> str | None:
    """The Ray version an image reference is built on, or None when the tag does not say.

    `rayproject/ray:2.60.0-py311-gpu` -> 2.60.0; a project image carries it in its tag,
    `.../kp-platform:0.1.0-ray2.60.0` -> 2.60.0.
    """
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:
        return None  # no tag (":" belonged to a registry port) or untagged
    if name.split("/")[-1] == "ray" and name.startswith(("rayproject/", "docker.io/rayproject/")):
        match = re.match(r"(\d+\.\d+\.\d+)", tag)
    else:
        match = re.search(r"ray-?(\d+\.\d+\.\d+)", tag)
    return match.group(1) if match else None


def check_ray_version(version: str | None, where: str, pin: SpecifierSet) -> list[str]:
    if version is None:
        return [f"{where}: Ray version not stated (tag without a Ray version)"]
    try:
        parsed = Version(version)
    except InvalidVersion:
        return [f"{where}: {version!r} is not a version"]
    if parsed not in pin:
        return [f"{where}: Ray {version} does not satisfy the project's pin ray{pin}"]
    return []


def check_images(images: dict[str, str], pin: SpecifierSet) -> list[str]:
    """Every image is on a Ray version in the pin, and all of them on the same one."""
    problems: list[str] = []
    versions = {}
    for where, image in images.items():
        version = image_ray_version(image)
        problems += check_ray_version(version, f"{where} image {image!r}", pin)
        if version:
            versions[where] = version
    if len(set(versions.values())) > 1:
        problems.append(f"images disagree on the Ray version: {versions}")
    return problems


# --------------------------------------------------------------------------- helpers


def walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Yields (dotted path, value) for every dict/list node and leaf."""
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk(value, f"{path}[{i}]")


def is_secret_name(name: str) -> bool:
    return any(word in name.upper() for word in SECRET_WORDS)


# Shell-style assignments NAME=VALUE at the start of a word (not inside a quoted format string).
_ASSIGNMENT = re.compile(r"(?:^|[\s;&|(])(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(\S*)")


def inline_secrets_in_text(text: str, where: str) -> list[str]:
    """NAME=literal assignments of secret-looking names (a $-expansion or a file path is fine)."""
    problems = []
    for name, value in _ASSIGNMENT.findall(text):
        if not is_secret_name(name):
            continue
        value = value.strip("'\"")
        if value.startswith("$"):
            continue  # taken from the environment / a command at run time
        if name.upper().endswith(("_PATH", "_FILE")) and value.startswith("/"):
            continue  # a file the secret is read from
        problems.append(f"{where}: {name} is given inline ({name}={value[:4]}...)")
    return problems


# --------------------------------------------------------------------------- cluster launcher


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def validated_launcher_config(raw: dict[str, Any]) -> dict[str, Any]:
    """Ray's own pipeline for a launcher config, minus the cloud calls.

    `ray up` runs `_bootstrap_config`: prepare_config (merge the provider's defaults.yaml, merge
    setup commands, check the docker section, fill per-type min/max workers), then the provider's
    `fillout_available_node_types_resources` (AWS asks EC2 for instance types: skipped here, the
    configs declare every node type's resources), then validate_config (the JSON schema
    ray-schema.json plus cross-field checks), then the provider's bootstrap (IAM, key pairs,
    subnets: cloud calls, skipped). Returns the prepared config; raises on an invalid one.
    """
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(raw))
    validate_config(prepared)
    return prepared


def _launcher_images(config: dict[str, Any]) -> dict[str, str]:
    docker = config.get("docker") or {}
    images = {f"docker.{k}": docker[k] for k in ("image", "head_image", "worker_image")
              if docker.get(k)}
    for name, node_type in config["available_node_types"].items():
        image = (node_type.get("docker") or {}).get("worker_image")
        if image:
            images[f"available_node_types.{name}.docker.worker_image"] = image
    return images


def _gpu_hardware(provider: str, node_config: dict[str, Any]) -> int | None:
    """GPUs the machine has: a count, 0, or None when it has GPUs of an unknown count."""
    if provider == "gcp":
        return sum(int(a.get("acceleratorCount", 0))
                   for a in node_config.get("guestAccelerators", []))
    if provider == "aws":
        instance = node_config.get("InstanceType", "")
        known = {"g4dn.xlarge": 1, "g4dn.2xlarge": 1, "g4dn.4xlarge": 1, "g4dn.8xlarge": 1,
                 "g4dn.12xlarge": 4, "g5.xlarge": 1, "g5.2xlarge": 1, "g5.4xlarge": 1,
                 "g5.8xlarge": 1, "g5.12xlarge": 4, "g5.48xlarge": 8, "g6.xlarge": 1,
                 "g6.2xlarge": 1, "g6.4xlarge": 1, "g6.12xlarge": 4, "p3.2xlarge": 1,
                 "p3.8xlarge": 4, "p4d.24xlarge": 8, "p5.48xlarge": 8}
        if instance in known:
            return known[instance]
        return None if re.match(r"^(g\d|p\d)", instance) else 0
    return None


def _is_spot(provider: str, node_config: dict[str, Any]) -> bool:
    if provider == "aws":
        return (node_config.get("InstanceMarketOptions") or {}).get("MarketType") == "spot"
    if provider == "gcp":
        scheduling = node_config.get("scheduling") or {}
        items = scheduling if isinstance(scheduling, list) else [scheduling]
        return any(i.get("provisioningModel") == "SPOT" or i.get("preemptible") for i in items)
    return False


def _docker_env(options: list[str]) -> dict[str, str]:
    """Environment given to the container by `docker run` options (-e/--env NAME=VALUE)."""
    env = {}
    for option in options:
        words = shlex.split(option)
        for flag, value in zip(words[:-1], words[1:], strict=True):
            if flag in ("-e", "--env") and "=" in value:
                name, _, val = value.partition("=")
                env[name] = val
        for word in words:
            if word.startswith("--env=") and "=" in word[6:]:
                name, _, val = word[6:].partition("=")
                env[name] = val
    return env


def _ray_start_commands(commands: list[str]) -> list[str]:
    return [c for c in commands if re.search(r"\bray start\b", c)]


def _start_flags(command: str) -> dict[str, str]:
    words = shlex.split(command.replace(";", " ; "))
    flags = {}
    for i, word in enumerate(words):
        if word.startswith("--"):
            name, eq, value = word[2:].partition("=")
            if not eq and i + 1 < len(words) and not words[i + 1].startswith("-"):
                value = words[i + 1]
            flags[name] = value
    return flags


def _auth_mode_token(role: str, config: dict[str, Any]) -> bool:
    """RAY_AUTH_MODE=token in the environment of the Ray processes of a node role."""
    docker = config.get("docker") or {}
    options = list(docker.get("run_options", [])) + list(docker.get(f"{role}_run_options", []))
    if docker.get("image") or docker.get(f"{role}_image"):
        if _docker_env(options).get("RAY_AUTH_MODE") == "token":
            return True
    starts = _ray_start_commands(config.get(f"{role}_start_ray_commands", []))
    return bool(starts) and all(re.search(r"\bRAY_AUTH_MODE=token\b", c) for c in starts)


def _token_source(role: str, config: dict[str, Any]) -> bool:
    docker = config.get("docker") or {}
    options = list(docker.get("run_options", [])) + list(docker.get(f"{role}_run_options", []))
    env = _docker_env(options)
    if env.get("RAY_AUTH_TOKEN_PATH") or env.get("RAY_AUTH_TOKEN", "").startswith("$"):
        return True
    starts = _ray_start_commands(config.get(f"{role}_start_ray_commands", []))
    return bool(starts) and all(re.search(r"RAY_AUTH_TOKEN(_PATH)?=", c) for c in starts)


def check_launcher(config: dict[str, Any]) -> list[str]:
    """Invariants of a (prepared) cluster launcher config."""
    problems: list[str] = []
    provider = config["provider"]["type"]
    node_types = config["available_node_types"]
    head_name = config["head_node_type"]
    head = node_types[head_name]

    # The head advertises no CPU and no GPU: no trial can be placed on it.
    if head.get("resources", {}).get("CPU") != 0:
        problems.append(f"head {head_name} advertises CPU {head.get('resources', {}).get('CPU')}"
                        " (must be 0: no trials on the head)")
    if head.get("resources", {}).get("GPU", 0) != 0:
        problems.append(f"head {head_name} advertises GPUs")

    # Workers: scale to zero, GPUs declared as the hardware has them, a spot option.
    gpu_types = []
    for name, node_type in node_types.items():
        if name == head_name:
            continue
        if node_type.get("min_workers", 0) != 0:
            problems.append(f"worker type {name}: min_workers {node_type['min_workers']} "
                            "(must be 0 to scale to zero)")
        declared = node_type.get("resources", {}).get("GPU", 0)
        hardware = _gpu_hardware(provider, node_type.get("node_config", {}))
        if hardware and declared != hardware:
            problems.append(f"worker type {name}: has {hardware} GPU(s) but declares GPU "
                            f"{declared}")
        if hardware is None and not declared:
            problems.append(f"worker type {name}: GPU machine but declares no GPU resource")
        if declared and hardware == 0:
            problems.append(f"worker type {name}: declares GPU {declared} on a machine without")
        if declared:
            gpu_types.append(name)
    if not any(node_types[n].get("max_workers", 0) > 0 for n in gpu_types):
        problems.append("no GPU worker type that may launch (GPU declared and max_workers > 0)")
    if not any(_is_spot(provider, node_types[n].get("node_config", {})) for n in gpu_types):
        problems.append("no spot/preemptible GPU worker type")
    if not config.get("idle_timeout_minutes", 0) > 0:
        problems.append("idle_timeout_minutes must be > 0 (idle workers are removed)")

    # Images pinned to the project's Ray.
    images = _launcher_images(config)
    if not images:
        problems.append("no docker image: the Ray version of the nodes is not pinned")
    problems += check_images(images, ray_pin())

    # The project is installed on every node: the project image, or a pip install of the
    # repository copied by file_mounts.
    project_image = any("kp-platform" in image for image in images.values())
    mounted = [remote for remote, local in (config.get("file_mounts") or {}).items()
               if Path(local).expanduser().resolve() == REPO or local in (".", "./")]
    installs = [c for c in config.get("setup_commands", [])
                if "pip install" in c and any(m in c for m in mounted)]
    if not project_image and not installs:
        problems.append("setup_commands do not install the project (pip install of the "
                        "repository mounted by file_mounts), and the image is not the project's")

    # No command swaps the image's Ray for another (Ray's provider defaults install a nightly
    # `ray-3.0.0.dev0` wheel when setup_commands are left out).
    for key in ("initialization_commands", "setup_commands", "head_setup_commands",
                "worker_setup_commands"):
        for command in config.get(key, []):
            for spec in re.findall(r"\bray(?:\[[\w,]*\])?\s*(?:@\s*\S+|==\s*[\w.]+)", command):
                found = re.search(r"ray-(\d[\w.]*?)-cp|==\s*([\w.]+)", spec)
                version = next((g for g in found.groups() if g), None) if found else None
                problems += [f"{key}: installs {p}" for p in
                             check_ray_version(version, spec.strip(), ray_pin())]

    # Dashboard / job API / Ray Client never public.
    for command in _ray_start_commands(config.get("head_start_ray_commands", [])):
        host = _start_flags(command).get("dashboard-host")
        if host is not None and host not in LOOPBACK:
            problems.append(f"head binds the dashboard to {host} (must be loopback: SSH tunnel)")
    security_group = config["provider"].get("security_group") or {}
    for rule in security_group.get("IpPermissions", []) or []:
        cidrs = {r.get("CidrIp") for r in rule.get("IpRanges", [])}
        cidrs |= {r.get("CidrIpv6") for r in rule.get("Ipv6Ranges", [])}
        if not cidrs & WORLD:
            continue
        lo, hi = rule.get("FromPort", -1), rule.get("ToPort", -1)
        protocol = str(rule.get("IpProtocol"))
        if protocol == "-1" or lo == -1:
            problems.append(f"security group opens all ports to the world: {rule}")
        elif (lo, hi) != (22, 22):
            opened = [p for p in PRIVATE_PORTS if lo <= p <= hi]
            problems.append(f"security group opens ports {lo}-{hi} to the world"
                            + (f" (Ray's {opened})" if opened else "") + " (only SSH may be)")
    for name, node_type in node_types.items():
        if "SecurityGroupIds" in node_type.get("node_config", {}):
            problems.append(f"node type {name} brings its own SecurityGroupIds (the launcher's "
                            "SSH-only group is bypassed)")

    # Token authentication on every node, the token from outside the file.
    for role in ("head", "worker"):
        if not _auth_mode_token(role, config):
            problems.append(f"{role}: RAY_AUTH_MODE=token not set for the Ray processes")
        if not _token_source(role, config):
            problems.append(f"{role}: no token source (RAY_AUTH_TOKEN_PATH or $RAY_AUTH_TOKEN)")

    # No secret written in the config.
    for path, value in walk(config):
        if isinstance(value, str):
            problems += inline_secrets_in_text(value, path)
    return problems


# --------------------------------------------------------------------------- Kubernetes


def load_k8s_docs(paths: list[Path] = KUBERAY_FILES) -> list[tuple[str, dict[str, Any]]]:
    """(file name, document) for every non-empty document of every manifest."""
    docs = []
    for path in paths:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((path.name, doc))
    return docs


def _quantity(value: Any) -> int:
    return int(str(value))


def _containers(pod_template: dict[str, Any]) -> list[dict[str, Any]]:
    return (pod_template.get("spec") or {}).get("containers") or []


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env") or []}


def _secret_ref(env_entry: dict[str, Any] | None) -> dict[str, Any] | None:
    if not env_entry or "value" in env_entry:
        return None
    return (env_entry.get("valueFrom") or {}).get("secretKeyRef")


def check_env_secrets(doc: Any, where: str) -> list[str]:
    """Every env var named like a secret takes its value from a Secret (secretKeyRef)."""
    problems = []
    for path, value in walk(doc):
        if not (path.endswith("env") and isinstance(value, list)):
            continue
        for entry in value:
            if isinstance(entry, dict) and is_secret_name(str(entry.get("name", ""))):
                if _secret_ref(entry) is None:
                    problems.append(f"{where}: {path} {entry.get('name')} is not taken from a "
                                    "Secret (valueFrom.secretKeyRef)")
    return problems


def _auth_problems(container_env: dict[str, dict[str, Any]], where: str,
                   secret_name: str | None) -> list[str]:
    problems = []
    mode = container_env.get("RAY_AUTH_MODE")
    if not mode or mode.get("value") != "token":
        problems.append(f"{where}: RAY_AUTH_MODE=token not set")
    ref = _secret_ref(container_env.get("RAY_AUTH_TOKEN"))
    if ref is None:
        problems.append(f"{where}: RAY_AUTH_TOKEN not taken from a Secret")
    elif secret_name and (ref.get("name"), ref.get("key")) != (secret_name, "auth_token"):
        problems.append(f"{where}: RAY_AUTH_TOKEN from {ref.get('name')}/{ref.get('key')}, "
                        f"authOptions uses {secret_name}/auth_token")
    return problems


def _mounts(container: dict[str, Any], volumes: list[dict[str, Any]]) -> dict[str, str]:
    """mountPath -> claimName for the PVC-backed mounts of a container."""
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in volumes
              if "persistentVolumeClaim" in v}
    return {m["mountPath"]: claims[m["name"]] for m in container.get("volumeMounts") or []
            if m.get("name") in claims}


def ray_cluster_pods(spec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(role, pod template) for the head and each worker group."""
    pods = [("head", spec["headGroupSpec"]["template"])]
    for group in spec.get("workerGroupSpecs") or []:
        pods.append((f"worker group {group.get('groupName')}", group["template"]))
    return pods


def shared_mounts(spec: dict[str, Any]) -> dict[str, str]:
    """PVC mounts present, at the same path and claim, on the head and every worker group."""
    common: dict[str, str] | None = None
    for _, pod in ray_cluster_pods(spec):
        volumes = (pod.get("spec") or {}).get("volumes") or []
        containers = _containers(pod)
        mounts = _mounts(containers[0], volumes) if containers else {}
        common = mounts if common is None else {
            k: v for k, v in common.items() if mounts.get(k) == v}
    return common or {}


def check_ray_cluster_spec(spec: dict[str, Any], where: str) -> list[str]:
    problems: list[str] = []
    pin = ray_pin()
    if spec.get("enableInTreeAutoscaling") is not True:
        problems.append(f"{where}: enableInTreeAutoscaling is not true")
    problems += check_ray_version(spec.get("rayVersion"), f"{where}: rayVersion", pin)

    head = spec["headGroupSpec"]
    params = {k: str(v) for k, v in (head.get("rayStartParams") or {}).items()}
    if params.get("num-cpus") != "0":
        problems.append(f"{where}: head rayStartParams num-cpus is {params.get('num-cpus')!r}"
                        " (must be \"0\": no trials on the head)")
    if params.get("num-gpus", "0") != "0":
        problems.append(f"{where}: head advertises GPUs")
    for container in _containers(head["template"]):
        for section in ("requests", "limits"):
            if (container.get("resources") or {}).get(section, {}).get("nvidia.com/gpu"):
                problems.append(f"{where}: head container {section} a GPU")

    # Exposure: the head Service stays ClusterIP, nothing publishes the dashboard.
    service_type = head.get("serviceType", "ClusterIP")
    if service_type != "ClusterIP":
        problems.append(f"{where}: head serviceType {service_type} (must be ClusterIP)")
    head_service_type = ((head.get("headService") or {}).get("spec") or {}).get("type")
    if head_service_type not in (None, "ClusterIP"):
        problems.append(f"{where}: headService type {head_service_type} (must be ClusterIP)")
    if head.get("enableIngress"):
        problems.append(f"{where}: enableIngress exposes the dashboard")
    if spec.get("headServiceAnnotations"):
        problems.append(f"{where}: headServiceAnnotations set (load-balancer/ingress annotations"
                        " expose the dashboard)")

    # Workers: scale to zero; GPU requests == limits == num-gpus.
    gpu_groups = 0
    for group in spec.get("workerGroupSpecs") or []:
        name = f"{where}: worker group {group.get('groupName')}"
        if group.get("minReplicas", 0) != 0:
            problems.append(f"{name}: minReplicas {group.get('minReplicas')} (must be 0)")
        if group.get("replicas", 0) > group.get("minReplicas", 0):
            problems.append(f"{name}: replicas above minReplicas keeps GPU pods up at start")
        if not group.get("maxReplicas", 0) > 0:
            problems.append(f"{name}: maxReplicas must be > 0")
        num_gpus = _quantity((group.get("rayStartParams") or {}).get("num-gpus", 0))
        resources = (_containers(group["template"]) or [{}])[0].get("resources") or {}
        requests = _quantity((resources.get("requests") or {}).get("nvidia.com/gpu", 0))
        limits = _quantity((resources.get("limits") or {}).get("nvidia.com/gpu", 0))
        if not requests == limits == num_gpus:
            problems.append(f"{name}: nvidia.com/gpu requests {requests}, limits {limits}, "
                            f"rayStartParams num-gpus {num_gpus} (must be equal)")
        gpu_groups += limits > 0
    if not gpu_groups:
        problems.append(f"{where}: no GPU worker group")

    # Images pinned, and on the same Ray as rayVersion.
    images = {}
    for role, pod in ray_cluster_pods(spec):
        for container in _containers(pod):
            images[f"{where}: {role} container {container.get('name')}"] = container["image"]
    problems += check_images(images, pin)
    versions = {image_ray_version(i) for i in images.values()} - {None}
    if spec.get("rayVersion") and versions and versions != {spec["rayVersion"]}:
        problems.append(f"{where}: rayVersion {spec['rayVersion']} but images are on {versions}")

    # Token authentication on every Ray process, from a Secret.
    auth = spec.get("authOptions") or {}
    if auth and auth.get("mode", "token") != "token":
        problems.append(f"{where}: authOptions.mode is {auth.get('mode')!r}")
    secret_name = auth.get("secretName")
    for role, pod in ray_cluster_pods(spec):
        containers = _containers(pod)
        if containers:
            problems += _auth_problems(_env(containers[0]), f"{where}: {role}", secret_name)
    if spec.get("enableInTreeAutoscaling"):
        autoscaler_env = {e["name"]: e for e in (spec.get("autoscalerOptions") or {}).get(
            "env") or []}
        if not auth:  # without authOptions nothing else gives the sidecar its token
            problems += _auth_problems(autoscaler_env, f"{where}: autoscaler", None)
        elif autoscaler_env:
            problems += _auth_problems(autoscaler_env, f"{where}: autoscaler", secret_name)
    return problems


def _storage_path(entrypoint: str) -> str | None:
    return _setting(entrypoint, "storage_path")


def _setting(entrypoint: str, key: str) -> str | None:
    """The value of `key=value` on a `kp sweep` command line, or None."""
    for word in shlex.split(entrypoint):
        if word.startswith(f"{key}="):
            return word.partition("=")[2]
    return None


def check_study_storage(entrypoint: str, cluster_spec: dict[str, Any], where: str
                        ) -> list[str]:
    """The sweep's study is an RDB without a password in its URL, the password coming from a
    Secret on the head (where the driver runs), named by search.storage_password_env."""
    url = _setting(entrypoint, "search.storage")
    if not url or url.startswith("sqlite"):
        return [f"{where}: the Optuna study would be SQLite on shared storage (kp sweep refuses "
                "it); give search.storage=postgresql://USER@HOST:PORT/DB"]
    problems = []
    if re.search(r"://[^/@:]+:[^/@]*@", url) or "password=" in url:
        problems.append(f"{where}: search.storage carries a password (the entrypoint is shown "
                        "by `ray job list`); use search.storage_password_env and a Secret")
    name = _setting(entrypoint, "search.storage_password_env")
    if not name:
        problems.append(f"{where}: no search.storage_password_env: the study's password must "
                        "come from a Secret by reference")
        return problems
    head = _containers(cluster_spec["headGroupSpec"]["template"])
    if not head or _secret_ref(_env(head[0]).get(name)) is None:
        problems.append(f"{where}: search.storage_password_env={name} is not set on the head "
                        "container from a Secret (valueFrom.secretKeyRef)")
    return problems


def is_shared_storage(path: str | None, spec: dict[str, Any]) -> bool:
    if not path:
        return False
    if re.match(r"^(s3|gs|gcs|abfss?)://", path):
        return True
    return any(path == mount or path.startswith(mount.rstrip("/") + "/")
               for mount in shared_mounts(spec))


def check_ray_job(doc: dict[str, Any], where: str) -> list[str]:
    spec = doc["spec"]
    problems = []
    if spec.get("shutdownAfterJobFinishes") is not True:
        problems.append(f"{where}: shutdownAfterJobFinishes is not true (cluster would linger)")
    ttl = spec.get("ttlSecondsAfterFinished")
    if not isinstance(ttl, int) or ttl < 0:
        problems.append(f"{where}: ttlSecondsAfterFinished missing or invalid ({ttl!r})")
    entrypoint = spec.get("entrypoint", "")
    if shlex.split(entrypoint)[:3] != ["kp", "sweep", "run"]:
        problems.append(f"{where}: entrypoint {entrypoint!r} does not run `kp sweep run`")
    if "rayClusterSpec" not in spec:
        problems.append(f"{where}: no rayClusterSpec (shutdownAfterJobFinishes only deletes a "
                        "cluster the RayJob created)")
    else:
        problems += check_ray_cluster_spec(spec["rayClusterSpec"], f"{where} rayClusterSpec")
        storage = _storage_path(entrypoint)
        if not is_shared_storage(storage, spec["rayClusterSpec"]):
            problems.append(f"{where}: storage_path {storage!r} is not shared storage (S3/GCS, "
                            "or a volume mounted by the head and every worker group)")
        problems += check_study_storage(entrypoint, spec["rayClusterSpec"], where)
    runtime_env = yaml.safe_load(spec.get("runtimeEnvYAML") or "{}") or {}
    if not runtime_env.get("working_dir"):
        problems.append(f"{where}: runtimeEnvYAML has no working_dir")
    for name in runtime_env.get("env_vars") or {}:
        if is_secret_name(name):
            problems.append(f"{where}: runtimeEnvYAML env var {name} (secrets come from "
                            "Secrets on the containers, never from the runtime env)")
    return problems


def check_k8s(docs: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Invariants over all KubeRay manifests together."""
    problems: list[str] = []
    claims = {}
    for filename, doc in docs:
        kind = doc.get("kind")
        where = f"{filename} {kind} {doc.get('metadata', {}).get('name')}"
        problems += check_env_secrets(doc, where)
        if kind == "RayCluster":
            if doc.get("apiVersion") != "ray.io/v1":
                problems.append(f"{where}: apiVersion {doc.get('apiVersion')} (want ray.io/v1)")
            problems += check_ray_cluster_spec(doc["spec"], where)
        elif kind == "RayJob":
            if doc.get("apiVersion") != "ray.io/v1":
                problems.append(f"{where}: apiVersion {doc.get('apiVersion')} (want ray.io/v1)")
            problems += check_ray_job(doc, where)
        elif kind == "Service":
            if (doc.get("spec") or {}).get("type") in ("LoadBalancer", "NodePort"):
                problems.append(f"{where}: Service of type {doc['spec']['type']}")
        elif kind in ("Ingress", "Route", "HTTPRoute", "Gateway"):
            problems.append(f"{where}: {kind} exposes a service outside the cluster")
        elif kind == "PersistentVolumeClaim":
            claims[doc["metadata"]["name"]] = doc["spec"].get("accessModes", [])
        elif kind == "Secret":
            for section in ("data", "stringData"):
                for key, value in (doc.get(section) or {}).items():
                    if value not in ("", None):
                        problems.append(f"{where}: {section}.{key} holds a value (the example "
                                        "must not carry secrets)")
    # Every claim a Ray pod mounts exists and is ReadWriteMany (head and workers share it).
    for filename, doc in docs:
        specs = []
        if doc.get("kind") == "RayCluster":
            specs.append(doc["spec"])
        if doc.get("kind") == "RayJob" and "rayClusterSpec" in doc["spec"]:
            specs.append(doc["spec"]["rayClusterSpec"])
        for spec in specs:
            for role, pod in ray_cluster_pods(spec):
                for volume in (pod.get("spec") or {}).get("volumes") or []:
                    claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
                    if claim is None:
                        continue
                    if claim not in claims:
                        problems.append(f"{filename} {role}: claim {claim} defined nowhere")
                    elif "ReadWriteMany" not in claims[claim]:
                        problems.append(f"{filename} {role}: claim {claim} is not "
                                        "ReadWriteMany (head and workers mount it at once)")
    return problems


# --------------------------------------------------------------------------- Dockerfile


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with comments dropped and continuation lines joined."""
    lines, current = [], ""
    for raw in text.splitlines():
        if raw.lstrip().startswith("#") and not current:
            continue
        line = raw.rstrip()
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        if current.strip():
            lines.append(current.strip())
        current = ""
    out = []
    for line in lines:
        instruction, _, args = line.partition(" ")
        out.append((instruction.upper(), args.strip()))
    return out


def check_dockerfile(text: str) -> list[str]:
    problems = []
    instructions = dockerfile_instructions(text)
    args = {}
    for instruction, rest in instructions:
        if instruction == "ARG" and "=" in rest:
            name, _, default = rest.partition("=")
            args[name.strip()] = default.strip().strip("\"'")
    bases = [rest.split()[0] for instruction, rest in instructions if instruction == "FROM"]
    if not bases:
        return ["Dockerfile: no FROM"]
    base = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), bases[-1])
    if not base.startswith("rayproject/ray:"):
        problems.append(f"Dockerfile: base {base} is not a Ray image")
    problems += check_ray_version(image_ray_version(base), f"Dockerfile base {base}", ray_pin())
    tag = base.rpartition(":")[2]
    if not re.search(r"(^|-)(gpu|cu\d+)($|-)", tag):
        problems.append(f"Dockerfile: base {base} is not a CUDA image (-gpu / -cuXXX tag)")
    runs = [rest for instruction, rest in instructions if instruction == "RUN"]
    if not any(re.search(r"pip install[^&]*torch", r) for r in runs):
        problems.append("Dockerfile: no pip install of torch")
    copies = [i for i, (instruction, rest) in enumerate(instructions)
              if instruction == "COPY" and re.search(r"(^|\s)\.\s+/app/?$", rest)]
    installs = [i for i, (instruction, rest) in enumerate(instructions)
                if instruction == "RUN" and re.search(r"pip install (\S+ )*/app\b", rest)]
    if not copies or not installs or installs[-1] < copies[0]:
        problems.append("Dockerfile: the project is not copied to /app and pip-installed")
    return problems


def ignore_patterns(text: str) -> set[str]:
    return {line.strip().strip("/").removeprefix("**/").rstrip("/")
            for line in text.splitlines() if line.strip() and not line.startswith("#")}
