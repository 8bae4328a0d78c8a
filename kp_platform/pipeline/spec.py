"""Pipeline files: loading, command-line overrides and structural validation.

A pipeline file names datasets to generate, config overrides shared by every training stage, and
stages that run in order: a sweep (`sweep: SPACE.yaml`), a single training run
(`train: CONFIG.yaml`, or empty for the defaults) or an evaluation (`evaluate: {...}`). A stage
may start from an earlier stage's best checkpoint (`init_from: stage:<name>`) and copies that
stage's architecture (`inherit`, from `inherit_from`, by default the `init_from` stage).

Everything here is checked without running anything; `kp_platform.pipeline.runner.validate`
then builds every stage's sweep spec or config. Every problem is an `InputError` naming the
pipeline file, the stage and the key.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kp_platform.config import all_keys, read_yaml
from kp_platform.config.reading import check_keys, read_dataclass
from kp_platform.data.synth import DOMAINS
from kp_platform.errors import InputError
from kp_platform.pipeline.overrides import apply_cli_overrides, unknown

TOP_LEVEL = ("name", "root", "datasets", "overrides", "stages")
KINDS = ("sweep", "train", "evaluate")
STAGE_KEYS = ("name", *KINDS, "overrides", "space", "init_from", "inherit_from", "inherit")
DATASET_KEYS = ("domain", "num_images", "image_size", "seed")
EVALUATE_KEYS = ("data", "models", "baseline", "eval")
# What a checkpoint's weights and outputs are tied to: a stage that starts from (or is compared
# with) another stage's model takes these from that model's config.
ARCHITECTURE = ("model.backbone", "model.width", "model.depth", "model.head_width",
                "heatmap.stride", "heatmap.sigma")
# Keys of a sweep file that the pipeline sets itself (the experiment's name and place).
SWEEP_OWNED = ("name", "storage_path", "base", "space")

STAGE_REF = "stage:"
DATASET_REF = "dataset:"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset the pipeline generates with `generate_dataset` (as `kp data synth` does)."""

    key: str = ""
    """Its name under `datasets:` (set by the reader, not written in the file)."""
    domain: str = ""
    num_images: int = 0
    image_size: int = 128
    seed: int = 0

    def checks(self) -> dict[str, tuple[bool, str]]:
        return {
            "domain": (self.domain in DOMAINS, f"must be one of {', '.join(DOMAINS)}"),
            "num_images": (self.num_images >= 1, "must be set, an integer >= 1"),
            "image_size": (self.image_size >= 32, "must be >= 32"),
            "seed": (self.seed >= 0, "must be >= 0"),
        }


@dataclass
class EvaluateSpec:
    """Evaluation of several stages' best checkpoints on one COCO file."""

    data: str
    """A COCO JSON path or `dataset:<key>`."""
    models: dict[str, str]
    """Row label → stage name."""
    baseline: str | None = None
    """A row label; the others' gains over it are reported."""
    eval: dict[str, Any] = field(default_factory=dict)
    """`eval` config settings applied to every model, so all are scored alike."""


@dataclass
class StageSpec:
    """One stage, as written in the file (references still by name)."""

    name: str
    kind: str
    file: str | None = None
    """The sweep space or train config (None: the config defaults)."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """The file's stage overrides: sweep settings or dotted config keys."""
    cli_overrides: dict[str, Any] = field(default_factory=dict)
    """`<stage>.<key>=value` from the command line (they beat every other override)."""
    space: dict[str, Any] | None = None
    """Replaces the sweep file's `space` section."""
    init_from: str | None = None
    inherit_from: str | None = None
    inherit: tuple[str, ...] = ARCHITECTURE
    evaluate: EvaluateSpec | None = None

    @property
    def architecture_source(self) -> str | None:
        return self.inherit_from or self.init_from

    @property
    def references(self) -> list[str]:
        """The stages this one needs, in the order it names them."""
        refs = [self.init_from, self.inherit_from]
        if self.evaluate is not None:
            refs += list(self.evaluate.models.values())
        return list(dict.fromkeys(r for r in refs if r))


@dataclass
class PipelineSpec:
    """A validated pipeline file."""

    path: Path
    name: str
    root: Path
    datasets: dict[str, DatasetSpec]
    overrides: dict[str, Any]
    """The file's config overrides for every training stage (stage overrides beat them)."""
    cli_overrides: dict[str, Any]
    """Config keys given on the command line for every training stage (beat the file's)."""
    stages: list[StageSpec]

    @property
    def folder(self) -> Path:
        """`root/name`: datasets, one folder per stage, results."""
        return self.root.absolute() / self.name

    def stage_dir(self, stage: str) -> Path:
        return self.folder / stage

    def dataset_path(self, key: str) -> Path:
        return self.folder / "data" / key / "annotations.json"

    def resolve(self, value: Any) -> Any:
        """`dataset:<key>` strings become that dataset's annotations path."""
        if isinstance(value, str) and value.startswith(DATASET_REF):
            return str(self.dataset_path(value[len(DATASET_REF):]))
        return value

    def stage(self, name: str) -> StageSpec:
        return next(s for s in self.stages if s.name == name)

    def stage_overrides(self, stage: StageSpec) -> dict[str, Any]:
        """A training stage's overrides by precedence (file: shared, stage; command line:
        shared, stage), with `dataset:<key>` resolved."""
        merged = {**self.overrides, **stage.overrides, **self.cli_overrides,
                  **stage.cli_overrides}
        return {key: self.resolve(value) for key, value in merged.items()}


def load_pipeline(path: str | Path, overrides: Sequence[str] = ()) -> PipelineSpec:
    """Reads a pipeline file and checks its structure and references.

    Args:
        path: The YAML file.
        overrides: `key=value` strings: a top-level setting (`root=DIR`,
            `datasets.real_train.num_images=20`), a config key for every training stage
            (`trainer.accelerator=gpu`), or `<stage>.<key>` for one stage
            (`pretrain.num_samples=4`, `finetune.optim.lr=3e-4`,
            `finetune.model.freeze_encoder_epochs=2`).

    Raises:
        InputError: naming the file, the stage and the key.
    """
    path = Path(path)
    source = str(path)
    data = read_yaml(path)
    check_keys(data, TOP_LEVEL, "", source)
    config_sections = {k.split(".")[0] for k in all_keys()}
    stage_names = _stage_names(data.get("stages"), source)
    for name in stage_names:
        if name in TOP_LEVEL or name in config_sections:
            raise InputError(f"stage name {name!r} is taken by a top-level key or a config "
                             "section", source)
    late, per_stage = apply_cli_overrides(data, overrides, stage_names, source)

    name = data.get("name", path.stem)
    if not isinstance(name, str) or not _NAME.match(name):
        raise InputError(f"name must be letters, digits, '-', '_' or '.' (got {name!r})", source)
    root = data.get("root", "pipelines")
    if not isinstance(root, str) or not root or "://" in root:
        raise InputError(f"root must be a local (or mounted shared) folder (got {root!r})",
                         source)
    datasets = _datasets(data.get("datasets"), source)
    shared = _mapping(data.get("overrides"), "overrides", source)
    for key in shared:
        _check_config_key(key, "overrides", source)
    for key in late:
        _check_config_key(key, "command line", source)
    spec = PipelineSpec(path=path, name=name, root=Path(root), datasets=datasets,
                        overrides=shared, cli_overrides=late, stages=[])
    for index, entry in enumerate(data["stages"]):
        stage = _stage(entry, per_stage.get(entry["name"], {}), source)
        _check_stage_references(stage, spec, stage_names[index + 1:], source)
        spec.stages.append(stage)
    return spec


def _stage_names(stages: Any, source: str) -> list[str]:
    if not isinstance(stages, list) or not stages:
        raise InputError("stages must be a non-empty list of {name: ..., sweep|train|evaluate: "
                         "...}", source)
    names: list[str] = []
    for i, entry in enumerate(stages):
        if not isinstance(entry, dict):
            raise InputError(f"stages[{i}] must be a mapping", source)
        name = entry.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise InputError(f"stages[{i}].name must be letters, digits, '-', '_' or '.' "
                             f"(got {name!r})", source)
        if name in names:
            raise InputError(f"stages[{i}]: duplicate stage name {name!r}", source)
        names.append(name)
    return names


def _datasets(data: Any, source: str) -> dict[str, DatasetSpec]:
    datasets: dict[str, DatasetSpec] = {}
    for key, entry in _mapping(data, "datasets", source).items():
        where = f"datasets.{key}"
        if not _NAME.match(str(key)):
            raise InputError(f"{where}: names are letters, digits, '-', '_' or '.'", source)
        check_keys(entry, DATASET_KEYS, f"{where}.", source)  # `key` is the name, not a field
        datasets[str(key)] = read_dataclass(DatasetSpec(key=str(key)), entry, source,
                                            f"{where}.")
    return datasets


def _stage(entry: dict[str, Any], cli: dict[str, Any], source: str) -> StageSpec:
    name = entry["name"]
    where = f"stage {name!r}"
    check_keys(entry, STAGE_KEYS, "", source, where)
    kinds = [k for k in KINDS if k in entry]
    if len(kinds) != 1:
        raise InputError(f"{where}: give exactly one of {', '.join(KINDS)} "
                         f"(got {', '.join(kinds) or 'none'})", source)
    kind = kinds[0]
    stage = StageSpec(name=name, kind=kind)
    if kind == "evaluate":
        for key in ("overrides", "space", "init_from", "inherit_from", "inherit"):
            if key in entry or (key == "overrides" and cli):
                raise InputError(f"{where}: an evaluate stage takes no {key!r}", source)
        stage.evaluate = _evaluate(entry["evaluate"], where, source)
        return stage

    file = entry[kind]
    if file is not None and (not isinstance(file, str) or not file):
        raise InputError(f"{where}: {kind} must be a file path", source)
    if kind == "sweep" and file is None:
        raise InputError(f"{where}: sweep must name a search-space file", source)
    if file is not None and not Path(file).is_file():
        raise InputError(f"{where}: {kind}: file not found: {file}", source)
    stage.file = file
    # Copies: YAML anchors let stages share one mapping (the same budget for two stages).
    stage.overrides = copy.deepcopy(_mapping(entry.get("overrides"), f"{where}: overrides",
                                             source))
    stage.cli_overrides = copy.deepcopy(dict(cli))
    own = {**stage.overrides, **stage.cli_overrides}
    for key in own:
        _check_override_key(key, kind, where, source)
    if "space" in entry:
        if kind != "sweep":
            raise InputError(f"{where}: 'space' belongs to sweep stages", source)
        stage.space = _mapping(entry["space"], f"{where}: space", source)
    stage.init_from = _stage_ref(entry.get("init_from"), f"{where}: init_from", source)
    stage.inherit_from = _stage_ref(entry.get("inherit_from"), f"{where}: inherit_from", source)
    if "inherit" in entry:
        inherit = entry["inherit"]
        if not isinstance(inherit, list) or not all(isinstance(k, str) for k in inherit):
            raise InputError(f"{where}: inherit must be a list of dotted config keys", source)
        for key in inherit:
            _check_config_key(key, f"{where}: inherit", source)
        stage.inherit = tuple(inherit)
    for key in stage.inherit if stage.architecture_source else ():
        if key in own:
            raise InputError(f"{where}: {key} is inherited from stage "
                             f"{stage.architecture_source!r} and cannot be overridden", source)
    return stage


def _evaluate(data: Any, where: str, source: str) -> EvaluateSpec:
    check_keys(data, EVALUATE_KEYS, "evaluate.", source, where)
    test = data.get("data")
    if not isinstance(test, str) or not test:
        raise InputError(f"{where}: evaluate.data must be a COCO JSON path or dataset:<key>",
                         source)
    models = _mapping(data.get("models"), f"{where}: evaluate.models", source)
    if not models:
        raise InputError(f"{where}: evaluate.models must map row labels to stage:<name>", source)
    refs = {str(label): _stage_ref(ref, f"{where}: evaluate.models.{label}", source)
            for label, ref in models.items()}
    baseline = data.get("baseline")
    if baseline is not None and baseline not in refs:
        raise InputError(f"{where}: evaluate.baseline {baseline!r} is not one of the models "
                         f"({', '.join(refs)})", source)
    settings = _mapping(data.get("eval"), f"{where}: evaluate.eval", source)
    for key in settings:
        _check_config_key(f"eval.{key}", f"{where}: evaluate.eval", source)
    return EvaluateSpec(data=test, models=refs, baseline=baseline, eval=copy.deepcopy(settings))


def _stage_ref(value: Any, where: str, source: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith(STAGE_REF):
        raise InputError(f"{where} must be 'stage:<name>' (got {value!r})", source)
    return value[len(STAGE_REF):]


def _check_stage_references(stage: StageSpec, spec: PipelineSpec, later: list[str],
                            source: str) -> None:
    earlier = {s.name: s for s in spec.stages}
    for ref in stage.references:
        if ref == stage.name:
            raise InputError(f"stage {stage.name!r} refers to itself", source)
        if ref not in earlier:
            reason = ("a later stage: stages run in file order" if ref in later
                      else unknown(ref, list(earlier), "stage"))
            raise InputError(f"stage {stage.name!r} refers to stage {ref!r}: {reason}", source)
        if earlier[ref].kind == "evaluate":
            raise InputError(f"stage {stage.name!r} refers to stage {ref!r}, an evaluate stage "
                             "(it has no checkpoint)", source)
    values = ([stage.evaluate.data] if stage.evaluate else
              [*stage.overrides.values(), *stage.cli_overrides.values(),
               *spec.overrides.values(), *spec.cli_overrides.values()])
    for value in values:
        if isinstance(value, str) and value.startswith(DATASET_REF):
            key = value[len(DATASET_REF):]
            if key not in spec.datasets:
                raise InputError(f"stage {stage.name!r}: {value!r}: "
                                 f"{unknown(key, list(spec.datasets), 'dataset')}", source)


def _check_override_key(key: str, kind: str, where: str, source: str) -> None:
    if key in all_keys():
        return
    if kind == "sweep":
        from kp_platform.tune.spec.space import TOP_LEVEL as SWEEP_KEYS

        head = key.split(".")[0]
        if head in SWEEP_OWNED:
            raise InputError(f"{where}: overrides: {key!r} is set by the pipeline", source)
        if head in SWEEP_KEYS:
            return  # a sweep setting; load_space checks it
        candidates = [*SWEEP_KEYS, *all_keys()]
    else:
        candidates = all_keys()
    raise InputError(f"{where}: overrides: {unknown(key, candidates, 'key')}", source)


def _check_config_key(key: str, where: str, source: str) -> None:
    if key not in all_keys():
        raise InputError(f"{where}: {unknown(key, all_keys(), 'config key')}", source)


def _mapping(value: Any, where: str, source: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InputError(f"{where} must be a mapping", source)
    return dict(value)
