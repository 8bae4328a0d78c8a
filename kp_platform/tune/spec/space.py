"""Search-space files: loading and validation, before anything starts.

A file names a base config, the parameters to sample (dotted config keys with a distribution,
optionally conditional on another parameter), the metric, the search, ASHA, the resources and
where the experiment lives. Every problem is an `InputError` naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from kp_platform.config import (
    Config,
    all_keys,
    apply_overrides,
    config_key_type,
    get_dotted,
    load_config,
    parse_overrides,
    read_yaml,
    set_dotted,
    unknown,
)
from kp_platform.config.auto import resolve_auto, search_val_fraction
from kp_platform.config.overrides import dataclass_key_type
from kp_platform.config.reading import check_keys, read_dataclass
from kp_platform.errors import InputError
from kp_platform.tune.spec.parameters import Parameter, parse_parameter
from kp_platform.tune.spec.settings import (
    AshaSettings,
    RaySettings,
    Resources,
    SearchSettings,
    WandbSettings,
)
from kp_platform.tune.storage import check_storage_url

SCHEDULERS = ("asha", "fifo")
# The two parts of a file with readers of their own: a config, and the parameters.
OWN_READERS = ("base", "space")
# Set by the sweep itself: sampling them would break ASHA's rungs or the experiment layout.
RESERVED = ("trainer.max_epochs", "eval.eval_every", "trainer.run_root", "trainer.name",
            "logging.wandb.group", "logging.wandb.project", "logging.wandb.mode")
# The objective is fixed by the sweep: trials compared on different metrics or validation images
# are not comparable, and TPE would learn which objective is easiest.
OBJECTIVE_KEYS = ("eval.", "data.val", "data.val_fraction", "data.split_seed", "data.test")
# What a trial runs on is set by `resources:` (what Ray reserves for it), not searched.
RESOURCE_KEYS = ("trainer.devices", "trainer.accelerator", "data.num_workers")
# Files a config names: made absolute in the base config, and must be absolute when sampled.
PATH_KEYS = ("data.train", "data.val", "data.test", "data.replay", "data.channels",
             "model.pretrained_path", "model.init_from")
LOCAL_SNAPSHOT_S = 1.0
REMOTE_SNAPSHOT_S = 30.0
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class SweepSettings:
    """A search-space file's settings, read by the one schema reader (`read_dataclass`); its
    `base` (a config) and `space` (the parameters) have readers of their own."""

    name: str = ""
    """The experiment's name; default: the file's name without its suffix."""
    metric: str = "val/map"
    mode: str = "max"
    scheduler: str = "asha"
    """`asha` stops weak trials at its rungs; `fifo` runs every trial to `asha.max_epochs`."""
    search: SearchSettings = field(default_factory=SearchSettings)
    asha: AshaSettings = field(default_factory=AshaSettings)
    eval_every: int = 1
    num_samples: int = 8
    max_concurrent: int = 2
    resources: Resources = field(default_factory=Resources)
    storage_path: str = "sweeps"
    max_failures: int = 1
    checkpoint_period_s: float | Literal["auto"] | None = None
    """Seconds between snapshots of the experiment (Tune's TUNE_GLOBAL_CHECKPOINT_S), or
    `auto`; default: `SweepSpec.snapshot_period()`."""
    time_budget_s: float | None = None
    """Wall-clock seconds after which the sweep stops: running trials end at once (each keeps
    its last evaluated checkpoint) and no new one starts; none: the sweep ends when its trials
    do (Tune's `TuneConfig.time_budget_s`)."""
    wandb: WandbSettings = field(default_factory=WandbSettings)
    ray: RaySettings = field(default_factory=RaySettings)

    def checks(self) -> dict[str, tuple[bool, str]]:
        period = self.checkpoint_period_s
        return {
            "name": (bool(_NAME.match(self.name)), "must be letters, digits, '-', '_' or '.'"),
            "scheduler": (self.scheduler in SCHEDULERS, f"must be one of {', '.join(SCHEDULERS)}"),
            "eval_every": (self.eval_every >= 1, "must be >= 1"),
            "num_samples": (self.num_samples >= 1, "must be >= 1"),
            "max_concurrent": (self.max_concurrent >= 1, "must be >= 1"),
            "max_failures": (self.max_failures >= -1, "must be >= 0, or -1 for no limit"),
            "time_budget_s": (self.time_budget_s is None or self.time_budget_s > 0,
                              "must be > 0"),
            "checkpoint_period_s": (not isinstance(period, float) or period > 0, "must be > 0"),
        }


TOP_LEVEL = (*(f.name for f in dataclasses.fields(SweepSettings)), *OWN_READERS)


@dataclass
class SweepSpec(SweepSettings):
    """A validated search-space file: its settings, the base config and the parameters."""

    path: Path = Path()
    base: Config = field(default_factory=Config)
    """The base config, with the sweep's own settings (epochs, eval_every, wandb) applied."""
    parameters: list[Parameter] = field(default_factory=list)

    @property
    def remote_storage(self) -> bool:
        return "://" in self.storage_path

    @property
    def experiment_dir(self) -> Path:
        """The local experiment folder: Tune's own for local storage, else a local mirror."""
        root = Path("sweeps") if self.remote_storage else Path(self.storage_path)
        return root.absolute() / self.name

    def snapshot_period(self) -> float | str:
        """The experiment snapshot period: the setting (seconds, or `auto`: Tune's adaptive
        period, at least 10 s and at most 5% of the driver's time), else 1 s on a local disk and
        30 s on remote storage (each snapshot uploads the whole experiment state).

        A snapshot also copies the trials' result files (`result.json`, `progress.csv`) from
        the driver's staging folder into the experiment folder, so the period is how far the
        experiment folder lags the trials; and a killed driver loses the trials started after
        its last snapshot (`tidy_orphans`). Each snapshot writes every trial's state, so for
        sweeps of hundreds of trials `auto` costs less (benchmarks/RESULTS.md)."""
        if self.checkpoint_period_s is not None:
            return self.checkpoint_period_s
        return REMOTE_SNAPSHOT_S if self.remote_storage else LOCAL_SNAPSHOT_S

    def points_to_evaluate(self) -> list[dict[str, Any]]:
        """The enqueued first trials: the base config's values (if asked), then the file's.

        The base config's `auto` values count as what a run resolves them to from the config
        (`model.depth: auto` as the depth its input size gives)."""
        points = [dict(p) for p in self.search.points_to_evaluate]
        if self.search.evaluate_base:
            base = resolve_auto(self.base)[0]
            point: dict[str, Any] = {}
            for param in self.parameters:
                value = get_dotted(base, param.key)
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
    check_keys(data, TOP_LEVEL, "", source)

    settings = read_dataclass(SweepSettings(name=path.stem),
                              {k: v for k, v in data.items() if k not in OWN_READERS}, source)
    base = _load_base(data.get("base"), config_overrides, source)
    spec = SweepSpec(**{f.name: getattr(settings, f.name)
                        for f in dataclasses.fields(SweepSettings)}, path=path, base=base)
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
        "data.val_fraction": search_val_fraction(base, ranking=spec.num_samples > 1),
    })
    _check_early_stopping(spec, source)
    _check_metric(spec, source)
    spec.parameters = _parameters(data.get("space"), spec.base, source)
    for i, point in enumerate(spec.search.points_to_evaluate):
        _check_point(point, spec.parameters, f"search.points_to_evaluate[{i}]", source)
    return spec


def _apply_cli_overrides(data: dict[str, Any], overrides: Sequence[str], source: str
                         ) -> dict[str, Any]:
    """Lays sweep-setting overrides into `data`; returns the base-config ones.

    Both kinds go through the config's one parser, each value parsed for its key's type.
    """
    config_overrides: dict[str, Any] = {}
    values = parse_overrides(overrides, lambda key: setting_type(key, source), source)
    for key, value in values.items():
        if key.split(".")[0] not in TOP_LEVEL:
            config_overrides[key] = value
            continue
        set_dotted(data, key, value, source)
    return config_overrides


def setting_type(key: str, source: str | None = None) -> Any:
    """The declared type of a sweep setting (`num_samples`, `asha.max_epochs`) or config key.

    Raises:
        InputError: an unknown key, naming the closest sweep setting or config key.
    """
    head, _, rest = key.partition(".")
    if head in TOP_LEVEL and head not in OWN_READERS:
        if not rest and dataclasses.is_dataclass(typing.get_type_hints(SweepSettings)[head]):
            return Any  # a whole section, read as YAML
        try:
            return dataclass_key_type(SweepSettings, key)
        except InputError as exc:
            raise InputError(f"override {key!r}: {exc}", source) from None
    if head in TOP_LEVEL:
        return Any  # base or space: read as YAML
    if head in {k.split(".")[0] for k in all_keys()}:
        try:
            return config_key_type(key)
        except InputError as exc:
            raise InputError(str(exc), source) from None
    raise InputError(f"override {key!r}: {unknown(key, [*TOP_LEVEL, *all_keys()])}", source)


def _load_base(base: Any, config_overrides: dict[str, Any], source: str) -> Config:
    if isinstance(base, str):
        base = {"config": base}
    base = base or {}
    if not isinstance(base, dict):
        raise InputError("base must be a config path or {config: PATH, overrides: {...}}", source)
    check_keys(base, ("config", "overrides"), "base.", source)
    try:
        overrides = base_overrides(base.get("overrides"), source)
        config = load_config(base.get("config"), overrides)
        config = apply_overrides(config, config_overrides)
    except InputError as exc:
        raise InputError(f"base config: {exc}", source) from None
    return _absolute_paths(config)


def base_overrides(value: Any, source: str) -> dict[str, Any]:
    """`base.overrides`: a mapping of dotted config keys, or a list of `key=value` strings
    (parsed as on the command line).

    Raises:
        InputError: neither form, or an unknown key in the list.
    """
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return parse_overrides(value, config_key_type, source)
    if value is not None and not isinstance(value, dict):
        raise InputError("base.overrides must map dotted config keys to values, or list "
                         "key=value strings", source)
    return dict(value or {})


def _absolute_paths(config: Config) -> Config:
    """Relative paths made absolute: Tune runs each trial in its own working directory."""
    fixed: dict[str, Any] = {}
    for key in PATH_KEYS:
        value = get_dotted(config, key)
        if _relative_path(key, value):
            fixed[key] = str(Path(value).absolute())
    return apply_overrides(config, fixed) if fixed else config


def _relative_path(key: str, value: Any) -> bool:
    """Whether `value` of path key `key` is a relative file path (not an artifact, not the
    compact channel form)."""
    if not isinstance(value, str) or not value or Path(value).is_absolute():
        return False
    if value.startswith("wandb:"):  # an artifact, not a path
        return False
    # data.channels may also be the compact `a=b:c` form rather than a file.
    return key != "data.channels" or value.endswith((".yaml", ".yml")) or Path(value).exists()


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
        refusal = _refusal(key)
        if key == "data.train" and not base.data.val:
            refusal = ("the validation images are split off data.train (data.val is empty), so "
                       "sampling it changes the objective; give data.val in the base config")
        if refusal:
            raise InputError(f"{where}: {refusal}", source)
        parameters.append(parse_parameter(key, entry, parameters, where, source))
        for value in parameters[-1].values:
            if key in PATH_KEYS and _relative_path(key, value):
                raise InputError(f"{where}: {value!r} is a relative path, but each trial runs in "
                                 "a folder of its own; give an absolute path", source)
            try:
                apply_overrides(base, {key: value})
            except InputError as exc:
                reason = str(exc).removeprefix("overrides: ")
                raise InputError(f"{where}: the config rejects {value!r}: {reason}",
                                 source) from None
    return parameters


def _refusal(key: str) -> str | None:
    """Why `key` may not be sampled, or None."""
    if key in RESERVED:
        return "set by the sweep itself and cannot be sampled"
    if any(key == k or (k.endswith(".") and key.startswith(k)) for k in OBJECTIVE_KEYS):
        return ("defines the objective (the metric or the validation data), which the sweep "
                "fixes: trials must be scored alike; set it in the base config")
    if key in RESOURCE_KEYS:
        return ("belongs to the trial's resources (the `resources:` section and the base "
                "config), not to the search")
    if key == "trainer.early_stop_patience":
        return ("a trial that stops itself early would be recorded as pruned; the scheduler "
                "does the early stopping (scheduler: asha)")
    return None


def _check_early_stopping(spec: SweepSpec, source: str) -> None:
    """Under ASHA a trial that ends before `max_epochs` is PRUNED, so none may end itself."""
    patience = spec.base.trainer.early_stop_patience
    if spec.scheduler == "asha" and patience:
        raise InputError(f"base config: trainer.early_stop_patience={patience} would stop "
                         "trials that ASHA then records as pruned; set it to 0 (ASHA stops "
                         "weak trials) or use scheduler: fifo", source)


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
    # Rungs exist only under ASHA (FIFO stops nothing).
    if spec.scheduler == "asha" and asha.grace_period % spec.eval_every:
        raise InputError(f"asha.grace_period ({asha.grace_period}) must be a multiple of "
                         f"eval_every ({spec.eval_every}): ASHA decides only on fresh AP",
                         source)
    if spec.scheduler == "asha" and asha.grace_period > asha.max_epochs:
        raise InputError(f"asha.grace_period ({asha.grace_period}) exceeds asha.max_epochs "
                         f"({asha.max_epochs})", source)
    if spec.search.storage:
        check_storage_url(spec.search.storage, source)


# Metrics where lower is better: a sweep on them must minimise.
LOWER_IS_BETTER = ("val/loss", "val/mean_px_error", "val/median_px_error", "val/swap_rate",
                   "val/px_error/")


def _check_metric(spec: SweepSpec, source: str) -> None:
    thresholds = [format(t, "g") for t in spec.base.eval.thresholds]
    valid = {"val/map", "val/loss", "val/mean_px_error", "val/median_px_error", "val/swap_rate",
             *(f"val/mean_ap/{t}" for t in thresholds), *(f"val/top1_pck/{t}" for t in thresholds)}
    if spec.metric not in valid and not spec.metric.startswith(("val/ap/", "val/px_error/")):
        raise InputError(f"metric: {unknown(spec.metric, sorted(valid), 'metric')}", source)
    if spec.mode not in ("max", "min"):
        raise InputError(f"mode must be 'max' or 'min' (got {spec.mode!r})", source)
    lower = spec.metric.startswith(LOWER_IS_BETTER)
    if lower != (spec.mode == "min"):
        raise InputError(f"mode: {spec.metric} is {'lower' if lower else 'higher'} is better, "
                         f"so mode must be {'min' if lower else 'max'} (got {spec.mode})",
                         source)
