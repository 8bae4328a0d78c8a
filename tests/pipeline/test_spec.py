"""Pipeline files are validated before anything runs: each error is one `error:` line, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from kp_platform.config import config_to_dict, load_config
from kp_platform.pipeline import load_pipeline, validate
from kp_platform.pipeline.records import StageRecord
from kp_platform.pipeline.stages import build_sweep, training_overrides
from tests.pipeline.conftest import REPO, tiny_data, write_pipeline


def _stage(data: dict, name: str) -> dict:
    return next(s for s in data["stages"] if s["name"] == name)


def _fails(run_kp, tmp_path: Path, data: dict, *expected: str, args: tuple = ()) -> str:
    """Runs `kp pipeline` on `data`; checks exit 2, one error line naming the file, and that
    nothing was created."""
    path = write_pipeline(tmp_path / "p.yaml", data)
    root = tmp_path / "root"
    code, out, err = run_kp("pipeline", path, f"root={root}", *args)
    assert code == 2, (out, err)
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert str(path) in err
    for text in expected:
        assert text in err, err
    assert not root.exists()  # rejected before any dataset or stage
    return err


def test_the_shipped_pipelines_validate(run_kp, monkeypatch):
    monkeypatch.chdir(REPO)  # their paths are relative to the repository root
    for name in ("tiny", "synth2real"):
        code, out, err = run_kp("pipeline", f"search_spaces/pipelines/{name}.yaml", "--dry-run")
        assert code == 0, err
        assert "[4] evaluate: evaluate from scratch (stage scratch)" in out


def test_unknown_top_level_key(run_kp, tmp_path):
    data = tiny_data()
    data["stagse"] = data.pop("stages")
    _fails(run_kp, tmp_path, data, "unknown key 'stagse'", "did you mean 'stages'")


def test_unknown_stage_key(run_kp, tmp_path):
    data = tiny_data()
    _stage(data, "finetune")["init_form"] = "stage:pretrain"
    _fails(run_kp, tmp_path, data, "stage 'finetune'", "'init_form'", "'init_from'")


def test_stage_needs_exactly_one_kind(run_kp, tmp_path):
    data = tiny_data()
    _stage(data, "scratch")["sweep"] = _stage(data, "pretrain")["sweep"]
    _fails(run_kp, tmp_path, data, "stage 'scratch'", "exactly one of", "sweep, train")


def test_unknown_stage_reference(run_kp, tmp_path):
    data = tiny_data()
    _stage(data, "finetune")["init_from"] = "stage:pretrian"
    _fails(run_kp, tmp_path, data, "stage 'finetune' refers to stage 'pretrian'",
           "did you mean 'pretrain'")


def test_reference_to_a_later_stage(run_kp, tmp_path):
    data = tiny_data()
    _stage(data, "finetune")["init_from"] = "stage:scratch"
    _fails(run_kp, tmp_path, data, "stage 'finetune' refers to stage 'scratch'",
           "a later stage")


def test_evaluating_a_later_stage(run_kp, tmp_path):
    data = tiny_data()
    data["stages"].insert(0, data["stages"].pop())  # the evaluation first
    _fails(run_kp, tmp_path, data, "stage 'evaluate' refers to stage", "a later stage")


def test_duplicate_stage_name(run_kp, tmp_path):
    data = tiny_data()
    _stage(data, "scratch")["name"] = "finetune"
    _fails(run_kp, tmp_path, data, "duplicate stage name 'finetune'")


def test_unknown_dataset_reference(run_kp, tmp_path):
    data = tiny_data()
    _stage(data, "scratch")["overrides"]["data.train"] = "dataset:real_trian"
    _fails(run_kp, tmp_path, data, "stage 'scratch'", "unknown dataset 'real_trian'")


@pytest.mark.parametrize("change, expected", [
    ({"num_images": 0}, ("datasets.real_test.num_images must be set", "(got 0)")),
    ({"num_images": "many"}, ("datasets.real_test.num_images", "'many'")),
    ({"domain": "photo"}, ("datasets.real_test.domain must be one of", "'photo'")),
    ({"sead": 3}, ("unknown key 'datasets.real_test.sead'",
                   "did you mean 'datasets.real_test.seed'")),
    ({"key": "other"}, ("unknown key 'datasets.real_test.key'",)),  # the name is the mapping's key
])
def test_bad_dataset_entry(run_kp, tmp_path, change, expected):
    data = tiny_data()
    data["datasets"]["real_test"].update(change)
    _fails(run_kp, tmp_path, data, *expected)


def test_unknown_config_key_in_stage_overrides(run_kp, tmp_path):
    data = tiny_data()
    _stage(data, "scratch")["overrides"]["optim.lrr"] = 0.1
    _fails(run_kp, tmp_path, data, "stage 'scratch'", "'optim.lrr'", "'optim.lr'")


def test_bad_value_is_caught_by_the_stage_config(run_kp, tmp_path):
    data = tiny_data()
    _stage(data, "scratch")["overrides"]["optim.lr"] = -1.0
    _fails(run_kp, tmp_path, data, "stage 'scratch'", "optim.lr must be > 0")


def test_bad_sweep_space_names_the_stage(run_kp, tmp_path):
    data = tiny_data()
    _stage(data, "pretrain")["space"]["optim.lr"] = {"loguniform": [1.0e-2, 1.0e-3]}
    _fails(run_kp, tmp_path, data, "stage 'pretrain' (sweep", "space.optim.lr",
           "low must be below high")


def test_inherited_key_cannot_be_overridden(run_kp, tmp_path):
    data = tiny_data()
    _stage(data, "finetune")["overrides"]["model.width"] = 16
    _fails(run_kp, tmp_path, data, "stage 'finetune'", "model.width is inherited")


def test_inherited_key_cannot_be_sampled_by_the_sweep(run_kp, tmp_path):
    data = tiny_data()
    finetune = _stage(data, "finetune")
    del finetune["train"]
    finetune["sweep"] = _stage(data, "pretrain")["sweep"]
    finetune["space"] = {"model.backbone": {"choice": ["unet_tiny", "dilated_cnn_tiny"]}}
    _fails(run_kp, tmp_path, data, "stage 'finetune'", "the sweep samples model.backbone")


def test_baseline_must_be_a_model(run_kp, tmp_path):
    data = tiny_data()
    _stage(data, "evaluate")["evaluate"]["baseline"] = "scratch"
    _fails(run_kp, tmp_path, data, "baseline 'scratch' is not one of the models")


def test_missing_data_file(run_kp, tmp_path):
    data = tiny_data()
    _stage(data, "scratch")["overrides"]["data.train"] = str(tmp_path / "nowhere.json")
    _fails(run_kp, tmp_path, data, "stage 'scratch'", "data.train: file not found")


def test_unknown_command_line_override(run_kp, tmp_path):
    _fails(run_kp, tmp_path, tiny_data(), "'fintune.optim.lr'", args=("fintune.optim.lr=1",))


def test_a_dataset_override_into_a_value_that_is_not_a_section(run_kp, tmp_path):
    data = tiny_data()
    data["datasets"] = ["not", "a mapping"]
    _fails(run_kp, tmp_path, data, "override 'datasets.real_train.seed'",
           "'datasets' is not a section", args=("datasets.real_train.seed=3",))


@pytest.mark.parametrize("override, key, value", [
    ("trainer.max_epochs=7", "trainer.max_epochs", 7),         # every training stage
    ("scratch.optim.lr=0.5", "optim.lr", 0.5),                 # one stage beats the file
    ("datasets.real_train.num_images=9", None, None),          # a dataset setting
])
def test_command_line_overrides(tmp_path, override, key, value):
    path = write_pipeline(tmp_path / "p.yaml", tiny_data())
    pipeline = load_pipeline(path, [f"root={tmp_path}", override])
    validate(pipeline)
    overrides = training_overrides(pipeline, pipeline.stage("scratch"), None)
    if key is not None:
        assert overrides[key] == value
    else:
        assert pipeline.datasets["real_train"].num_images == 9
    assert pipeline.folder == tmp_path / "tiny"
    assert overrides["data.train"] == str(tmp_path / "tiny/data/real_train/annotations.json")


def test_fine_tune_sweep_starts_from_the_earlier_stage(tmp_path):
    """A sweep stage that starts from a checkpoint hands it, its artifact and its architecture
    to every trial through the sweep's base config."""
    data = tiny_data()
    finetune = _stage(data, "finetune")
    finetune.pop("train")
    finetune["sweep"] = _stage(data, "pretrain")["sweep"]
    finetune["space"] = {"optim.lr": {"loguniform": [1.0e-4, 1.0e-3]}}
    pipeline = load_pipeline(write_pipeline(tmp_path / "p.yaml", data), [f"root={tmp_path}"])
    pretrained = config_to_dict(load_config(overrides={"heatmap.sigma": 2.7, "model.width": 5}))
    records = {"pretrain": StageRecord(stage="pretrain", kind="sweep", plan={},
                                       checkpoint="pretrain/x/best.ckpt",
                                       artifact="tiny-pretrain-best", config=pretrained)}
    stage = pipeline.stage("finetune")
    spec = build_sweep(pipeline, stage, training_overrides(pipeline, stage, records),
                       tmp_path / "space.yaml")
    assert spec.name == "tiny-finetune"
    assert spec.experiment_dir == tmp_path / "tiny" / "finetune" / "tiny-finetune"
    assert spec.base.model.init_from == str(tmp_path / "tiny/pretrain/x/best.ckpt")
    assert spec.base.model.init_artifact == "tiny-pretrain-best"
    assert (spec.base.heatmap.sigma, spec.base.model.width) == (2.7, 5)  # inherited
    assert spec.base.model.backbone == "unet"  # inherited beats the pipeline's unet_tiny
    assert spec.base.optim.lr == 1.0e-3  # the stage's own override
    assert [p.key for p in spec.parameters] == ["optim.lr"]  # the stage's space
    assert spec.base.data.train == str(tmp_path / "tiny/data/real_train/annotations.json")
