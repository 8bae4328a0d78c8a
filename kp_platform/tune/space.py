"""Search-space files: loading and validation, before anything starts.

A file names a base config, the parameters to sample (dotted config keys with a distribution,
optionally conditional on another parameter), the metric, the search, ASHA, the resources and
where the experiment lives. Every problem is an `InputError` naming the file and the key.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kp_platform.config import Config, all_keys, apply_overrides, load_config, read_yaml
from kp_platform.errors import InputError
from kp_platform.tune.parameters import Parameter, parse_parameter, unknown
from kp_platform.tune.settings import (
    AshaSettings,
    RaySettings,
    Resources,
    SearchSettings,
    WandbSettings,
    read_section,
)

TOP_LEVEL = ("name", "base", "space", "metric", "mode", "search", "asha", "eval_every",
             "num_samples", "max_concurrent", "resources", "storage_path", "max_failures",
             "wandb", "ray")
# Set by the sweep itself: sampling them would break ASHA's rungs or the experiment layout.
RESERVED = ("trainer.max_epochs", "eval.eval_every", "trainer.run_root", "trainer.name",
            "logging.wandb.group", "logging.wandb.project", "logging.wandb.mode")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class SweepSpec:
    """A validated search-space file."""

    path: Path
    name: str
    base: Config
    """The base config, with the sweep's own settings (epochs, eval_every, wandb) applied."""
    parameters: list[Parameter]
    metric: str = "val/map"
    mode: str = "max"
    search: SearchSettings = field(default_factory=SearchSettings)
    asha: AshaSettings = field(default_factory=AshaSettings)
    eval_every: int = 1
    num_samples: int = 8
    max_concurrent: int = 2
    resources: Resources = field(default_factory=Resources)
    storage_path: str = "sweeps"
    max_failures: int = 1
    wandb: WandbSettings = field(default_factory=WandbSettings)
    ray: RaySettings = field(default_factory=RaySettings)

    @property
    def remote_storage(self) -> bool:
        return "://" in self.storage_path

    @property
    def experiment_dir(self) -> Path:
        """The local experiment folder: Tune's own for local storage, else a local mirror."""
        root = Path("sweeps") if self.remote_storage else Path(self.storage_path)
        return root.absolute() / self.name

    def points_to_evaluate(self) -> list[dict[str, Any]]:
        """The enqueued first trials: the base config's values (if asked), then the file's."""
        points = [dict(p) for p in self.search.points_to_evaluate]
        if self.search.evaluate_base:
            point: dict[str, Any] = {}
            for param in self.parameters:
                value = config_value(self.base, param.key)
                if param.active(point) and param.contains(value):
                    point[param.key] = value
            points.insert(0, point)
        return points


def load_space(path: str | Path, overrides: Sequence[str] = ()) -> SweepSpec:
    """Reads and validates a search-space file.

    Args:
        path: The YAML file.
        overrides: `key=value` strings: a sweep setting (`num_samples=4`, `asha.grace_period=2`)
            or a base-config key (`optim.lr=0.01`, `data.train=...`).

    Raises:
        InputError: naming the file and the offending key.
    """
    path = Path(path)
    source = str(path)
    data = read_yaml(path)
    config_overrides = _apply_cli_overrides(data, overrides, source)
    _check_keys(data, TOP_LEVEL, "", source)

    base = _load_base(data.get("base"), config_overrides, source)
    spec = SweepSpec(path=path, name=_name(data.get("name", path.stem), source), base=base,
                     parameters=[])
    for key in ("eval_every", "num_samples", "max_concurrent", "max_failures"):
        if key in data:
            setattr(spec, key, _integer(data[key], key, source))
    spec.storage_path = str(data.get("storage_path", spec.storage_path))
    spec.search = read_section(SearchSettings, data.get("search"), "search", source)
    spec.asha = read_section(AshaSettings, data.get("asha"), "asha", source)
    spec.resources = read_section(Resources, data.get("resources"), "resources", source)
    spec.wandb = read_section(WandbSettings, data.get("wandb"), "wandb", source)
    spec.ray = read_section(RaySettings, data.get("ray"), "ray", source)
    _check_settings(spec, source)

    # The sweep owns these keys: ASHA's rungs must fall on evaluation epochs.
    wandb_cfg = base.logging.wandb
    spec.base = apply_overrides(base, {
        "trainer.max_epochs": spec.asha.max_epochs,
        "eval.eval_every": spec.eval_every,
        "trainer.name": spec.name,
        "trainer.progress_bar": False,
        "logging.wandb.group": spec.wandb.group or spec.name,
        "logging.wandb.project": spec.wandb.project or wandb_cfg.project,
        "logging.wandb.mode": spec.wandb.mode or wandb_cfg.mode,
        "logging.wandb.entity": spec.wandb.entity or wandb_cfg.entity,
    })
    spec.metric = str(data.get("metric", spec.metric))
    spec.mode = str(data.get("mode", spec.mode))
    _check_metric(spec, source)
    spec.parameters = _parameters(data.get("space"), spec.base, source)
    for i, point in enumerate(spec.search.points_to_evaluate):
        _check_point(point, spec.parameters, f"search.points_to_evaluate[{i}]", source)
    return spec


def _apply_cli_overrides(data: dict[str, Any], overrides: Sequence[str], source: str
                         ) -> dict[str, Any]:
    """Lays sweep-setting overrides into `data`; returns the base-config ones."""
    sections = {k.split(".")[0] for k in all_keys()}
    config_overrides: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"override {item!r} is not of the form key=value", source)
        key = key.strip()
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        head = key.split(".")[0]
        if head in TOP_LEVEL:
            node = data
            *parents, leaf = key.split(".")
            for part in parents:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise InputError(f"override {key!r}: {part!r} is not a section", source)
            node[leaf] = value
        elif head in sections:
            config_overrides[key] = raw if isinstance(value, str) else value
        else:
            raise InputError(f"override {key!r}: {unknown(key, [*TOP_LEVEL, *all_keys()])}",
                             source)
    return config_overrides


def _load_base(base: Any, config_overrides: dict[str, Any], source: str) -> Config:
    if isinstance(base, str):
        base = {"config": base}
    base = base or {}
    if not isinstance(base, dict):
        raise InputError("base must be a config path or {config: PATH, overrides: {...}}", source)
    _check_keys(base, ("config", "overrides"), "base.", source)
    overrides = base.get("overrides") or {}
    if not isinstance(overrides, dict):
        raise InputError("base.overrides must map dotted config keys to values", source)
    try:
        config = load_config(base.get("config"), overrides)
        config = apply_overrides(config, config_overrides)
    except InputError as exc:
        raise InputError(f"base config: {exc}", source) from None
    return _absolute_paths(config)


def _absolute_paths(config: Config) -> Config:
    """Relative paths made absolute: Tune runs each trial in its own working directory."""
    fixed: dict[str, Any] = {}
    keys = ("data.train", "data.val", "data.test", "data.channels", "model.pretrained_path",
            "model.init_from")
    for key in keys:
        value = config_value(config, key)
        if not isinstance(value, str) or not value or Path(value).is_absolute():
            continue
        if value.startswith("wandb:"):  # an artifact, not a path
            continue
        # data.channels may also be the compact `a=b:c` form rather than a file.
        if key != "data.channels" or value.endswith((".yaml", ".yml")) or Path(value).exists():
            fixed[key] = str(Path(value).absolute())
    return apply_overrides(config, fixed) if fixed else config


def _parameters(space: Any, base: Config, source: str) -> list[Parameter]:
    if not isinstance(space, dict) or not space:
        raise InputError("space must map dotted config keys to distributions, e.g. "
                         "'optim.lr: {loguniform: [1e-4, 1e-2]}'", source)
    known = set(all_keys())
    parameters: list[Parameter] = []
    for key, entry in space.items():
        where = f"space.{key}"
        if key not in known:
            raise InputError(f"{where}: {unknown(key, sorted(known))}", source)
        if key in RESERVED:
            raise InputError(f"{where}: set by the sweep itself and cannot be sampled", source)
        parameters.append(parse_parameter(key, entry, parameters, where, source))
        for value in parameters[-1].values:
            try:
                apply_overrides(base, {key: value})
            except InputError as exc:
                reason = str(exc).removeprefix("overrides: ")
                raise InputError(f"{where}: the config rejects {value!r}: {reason}",
                                 source) from None
    return parameters


def _check_point(point: Any, parameters: list[Parameter], where: str, source: str) -> None:
    if not isinstance(point, dict):
        raise InputError(f"{where}: expected a mapping of parameter values", source)
    by_key = {p.key: p for p in parameters}
    for key, value in point.items():
        if key not in by_key:
            raise InputError(f"{where}: {unknown(key, list(by_key), 'parameter')}", source)
        if not by_key[key].contains(value):
            raise InputError(f"{where}: {key}={value!r} lies outside its distribution", source)


def _check_settings(spec: SweepSpec, source: str) -> None:
    asha = spec.asha
    if spec.eval_every < 1:
        raise InputError(f"eval_every must be >= 1 (got {spec.eval_every})", source)
    if asha.grace_period % spec.eval_every:
        raise InputError(f"asha.grace_period ({asha.grace_period}) must be a multiple of "
                         f"eval_every ({spec.eval_every}): ASHA decides only on fresh AP",
                         source)
    if asha.grace_period > asha.max_epochs:
        raise InputError(f"asha.grace_period ({asha.grace_period}) exceeds asha.max_epochs "
                         f"({asha.max_epochs})", source)
    for key in ("num_samples", "max_concurrent"):
        if getattr(spec, key) < 1:
            raise InputError(f"{key} must be >= 1 (got {getattr(spec, key)})", source)
    if spec.max_failures < -1:
        raise InputError("max_failures must be >= 0, or -1 for no limit", source)
    if spec.remote_storage and spec.search.storage is None:
        raise InputError("search.storage: a remote storage_path needs an RDB URL for the "
                         "Optuna study (e.g. postgresql://...)", source)


def _check_metric(spec: SweepSpec, source: str) -> None:
    thresholds = [format(t, "g") for t in spec.base.eval.thresholds]
    valid = {"val/map", "val/loss", *(f"val/mean_ap/{t}" for t in thresholds)}
    if spec.metric not in valid and not spec.metric.startswith("val/ap/"):
        raise InputError(f"metric: {unknown(spec.metric, sorted(valid), 'metric')}", source)
    if spec.mode not in ("max", "min"):
        raise InputError(f"mode must be 'max' or 'min' (got {spec.mode!r})", source)


def _check_keys(data: Any, allowed: Sequence[str], prefix: str, source: str) -> None:
    if not isinstance(data, dict):
        raise InputError(f"{prefix.rstrip('.') or 'file'} must be a mapping", source)
    for key in data:
        if key not in allowed:
            raise InputError(unknown(f"{prefix}{key}", [f"{prefix}{a}" for a in allowed],
                                      "key"), source)


def _name(value: Any, source: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise InputError(f"name must be letters, digits, '-', '_' or '.' (got {value!r})",
                         source)
    return value


def _integer(value: Any, key: str, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{key}: expected an integer, got {value!r}", source)
    return value


def config_value(config: Config, key: str) -> Any:
    """The value of dotted `key` in `config`."""
    node: Any = config
    for part in key.split("."):
        node = getattr(node, part)
    return node
