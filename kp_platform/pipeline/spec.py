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
import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kp_platform.config import all_keys, read_yaml
from kp_platform.config.reading import check_keys, read_dataclass
from kp_platform.data.synth import DOMAINS
from kp_platform.errors import InputError
from kp_platform.pipeline.overrides import apply_cli_overrides, unknown

KINDS = ("sweep", "train", "evaluate")
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


@dataclass(frozen=True)
class EvaluateSpec:
    """Evaluation of several stages' best checkpoints on one COCO file (a stage's `evaluate:`)."""

    data: str = ""
    """A COCO JSON path or `dataset:<key>`."""
    models: dict[str, str] = field(default_factory=dict)
    """Row label → stage name (written `stage:<name>`)."""
    baseline: str | None = None
    """A row label; the others' gains over it are reported."""
    eval: dict[str, Any] = field(default_factory=dict)
    """`eval` config settings applied to every model, so all are scored alike."""
    render: str | None = None
    """A row label: that model's predictions drawn on the test set's first images
    (`predictions.png` beside the results)."""

    def checks(self) -> dict[str, tuple[bool, str]]:
        return {
            "data": (bool(self.data), "must be a COCO JSON path or dataset:<key>"),
            "models": (bool(self.models) and all(map(_is_stage_ref, self.models.values())),
                       "must map row labels to stage:<name>"),
            "baseline": (self.baseline is None or self.baseline in self.models,
                         f"must be one of the models ({', '.join(self.models)})"),
            "render": (self.render is None or self.render in self.models,
                       f"must be one of the models ({', '.join(self.models)})"),
        }


@dataclass(frozen=True)
class StageEntry:
    """A `stages:` entry as written, the reader's schema (`StageSpec` is what it becomes).
    Which of `sweep`, `train` and `evaluate` is present makes the stage's kind."""

    name: str = ""
    sweep: str | None = None
    """The search-space file."""
    train: str | None = None
    """The config file (empty: the config defaults)."""
    evaluate: EvaluateSpec | None = None
    overrides: dict[str, Any] | None = None
    space: dict[str, Any] | None = None
    init_from: str | None = None
    inherit_from: str | None = None
    inherit: list[str] | None = None

    def checks(self) -> dict[str, tuple[bool, str]]:
        return {
            "sweep": (self.sweep is None or bool(self.sweep), "must be a file path"),
            "train": (self.train is None or bool(self.train), "must be a file path"),
            "init_from": (self.init_from is None or _is_stage_ref(self.init_from),
                          "must be 'stage:<name>'"),
            "inherit_from": (self.inherit_from is None or _is_stage_ref(self.inherit_from),
                             "must be 'stage:<name>'"),
        }


@dataclass(frozen=True)
class PipelineFile:
    """A pipeline file's top level as written, the reader's schema (`PipelineSpec` is what it
    becomes; `datasets` and `stages` entries are read by their own schemas)."""

    name: str = ""
    """Default: the file's name without its suffix."""
    root: str = "pipelines"
    datasets: dict[str, Any] | None = None
    overrides: dict[str, Any] | None = None
    stages: list[Any] | None = None

    def checks(self) -> dict[str, tuple[bool, str]]:
        return {
            "name": (not self.name or bool(_NAME.match(self.name)),
                     "must be letters, digits, '-', '_' or '.'"),
            "root": (bool(self.root) and "://" not in self.root,
                     "must be a local (or mounted shared) folder"),
        }


TOP_LEVEL = tuple(f.name for f in dataclasses.fields(PipelineFile))
DATASET_KEYS = tuple(f.name for f in dataclasses.fields(DatasetSpec) if f.name != "key")


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
    """With `models` naming stages (the `stage:` prefix removed)."""

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
    check_keys(data, TOP_LEVEL, "", source)  # before the stage names are read
    config_sections = {k.split(".")[0] for k in all_keys()}
    stage_names = _stage_names(data.get("stages"), source)
    for name in stage_names:
        if name in TOP_LEVEL or name in config_sections:
            raise InputError(f"stage name {name!r} is taken by a top-level key or a config "
                             "section", source)
    late, per_stage = apply_cli_overrides(data, overrides, stage_names, source)

    top = read_dataclass(PipelineFile(), data, source)
    datasets = _datasets(top.datasets, source)
    shared = dict(top.overrides or {})
    for key in shared:
        _check_config_key(key, "overrides", source)
    for key in late:
        _check_config_key(key, "command line", source)
    spec = PipelineSpec(path=path, name=top.name or path.stem, root=Path(top.root),
                        datasets=datasets, overrides=shared, cli_overrides=late, stages=[])
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
    for key, entry in (data or {}).items():
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
    kinds = [k for k in KINDS if k in entry]  # the tag: a key present, even if empty
    if len(kinds) != 1:
        raise InputError(f"{where}: give exactly one of {', '.join(KINDS)} "
                         f"(got {', '.join(kinds) or 'none'})", source)
    kind = kinds[0]
    written = read_dataclass(StageEntry(), entry, source, where=where)
    stage = StageSpec(name=name, kind=kind)
    if kind == "evaluate":
        for key in ("overrides", "space", "init_from", "inherit_from", "inherit"):
            if key in entry or (key == "overrides" and cli):
                raise InputError(f"{where}: an evaluate stage takes no {key!r}", source)
        # `evaluate:` left empty reads as None: read it as {} so its checks name what is missing.
        evaluate = written.evaluate or read_dataclass(EvaluateSpec(), {}, source, "evaluate.",
                                                      where=where)
        for key in evaluate.eval:
            _check_config_key(f"eval.{key}", f"{where}: evaluate.eval", source)
        stage.evaluate = dataclasses.replace(
            evaluate, models={label: _stage_name(ref) for label, ref in evaluate.models.items()},
            eval=copy.deepcopy(evaluate.eval))
        return stage

    file = written.sweep if kind == "sweep" else written.train
    if kind == "sweep" and file is None:
        raise InputError(f"{where}: sweep must name a search-space file", source)
    if file is not None and not Path(file).is_file():
        raise InputError(f"{where}: {kind}: file not found: {file}", source)
    stage.file = file
    # Copies: YAML anchors let stages share one mapping (the same budget for two stages).
    stage.overrides = copy.deepcopy(written.overrides or {})
    stage.cli_overrides = copy.deepcopy(dict(cli))
    own = {**stage.overrides, **stage.cli_overrides}
    for key in own:
        _check_override_key(key, kind, where, source)
    if written.space is not None:
        if kind != "sweep":
            raise InputError(f"{where}: 'space' belongs to sweep stages", source)
        stage.space = copy.deepcopy(written.space)
    stage.init_from = _stage_name(written.init_from)
    stage.inherit_from = _stage_name(written.inherit_from)
    if written.inherit is not None:
        for key in written.inherit:
            _check_config_key(key, f"{where}: inherit", source)
        stage.inherit = tuple(written.inherit)
    for key in stage.inherit if stage.architecture_source else ():
        if key in own:
            raise InputError(f"{where}: {key} is inherited from stage "
                             f"{stage.architecture_source!r} and cannot be overridden", source)
    return stage


def _is_stage_ref(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(STAGE_REF) and len(value) > len(STAGE_REF)


def _stage_name(ref: str | None) -> str | None:
    """`stage:<name>` → `<name>` (the schema's checks have seen the prefix)."""
    return None if ref is None else ref[len(STAGE_REF):]


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
