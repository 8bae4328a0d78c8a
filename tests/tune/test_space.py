from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from kp_platform.errors import InputError
from kp_platform.tune import load_space
from kp_platform.tune.spec.parameters import SpaceSampler
from tests.tune.conftest import space_data, write_space

REPO = Path(__file__).resolve().parents[2]


def _space(tmp_path, **settings):
    return write_space(tmp_path / "space.yaml", space_data(None, tmp_path / "sweeps", **settings))


def _conditional_space():
    return {
        "model.backbone": {"choice": ["unet", "dilated_cnn"]},
        "model.depth": {"int": [2, 4], "when": {"model.backbone": "unet"}},
        "optim.lr": {"loguniform": ["1e-4", 1.0e-2]},  # YAML 1.1 reads 1e-4 as a string
    }


def test_loads_the_shipped_spaces():
    demo = load_space(REPO / "search_spaces" / "demo.yaml")
    assert demo.name == "demo" and demo.metric == "val/map" and demo.mode == "max"
    assert demo.base.model.backbone == "unet"  # from configs/demo.yaml
    assert demo.asha.grace_period % demo.eval_every == 0
    assert demo.base.eval.eval_every == demo.eval_every
    assert demo.base.trainer.max_epochs == demo.asha.max_epochs
    assert demo.base.logging.wandb.group == "demo"
    assert any(p.when for p in demo.parameters)  # shows a conditional parameter
    tiny = load_space(REPO / "search_spaces" / "tiny.yaml", ["num_samples=3", "optim.lr=0.005"])
    assert tiny.num_samples == 3 and tiny.base.optim.lr == 0.005


def test_base_config_is_the_first_point(tmp_path):
    data = space_data(None, tmp_path / "sweeps", space=_conditional_space(),
                      search={"points_to_evaluate": [{"model.backbone": "dilated_cnn"}]})
    data["base"]["overrides"]["model.backbone"] = "unet"
    spec = load_space(write_space(tmp_path / "s.yaml", data))
    base, extra = spec.points_to_evaluate()
    # the base backbone is unet, so its conditional depth (auto: the depth its input size
    # gives, 2 at 32²: an 8² bottleneck) is part of the point
    assert spec.base.model.depth == "auto" and spec.base.data.input_size == [32, 32]
    assert base == {"model.backbone": "unet", "model.depth": 2, "optim.lr": 3e-3}
    assert extra == {"model.backbone": "dilated_cnn"}
    # a base value the space cannot produce is left to the sampler (unet_tiny is no choice)
    spec = load_space(_space(tmp_path, space=_conditional_space()))
    assert spec.points_to_evaluate() == [{"optim.lr": 3e-3}]
    spec = load_space(_space(tmp_path, space=_conditional_space(),
                             search={"evaluate_base": False}))
    assert spec.points_to_evaluate() == []


def test_conditional_parameter_is_sampled_only_when_its_condition_holds(tmp_path):
    spec = load_space(_space(tmp_path, space=_conditional_space()))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda trial: SpaceSampler(spec.parameters)(trial) or 0.0, n_trials=12)
    seen = {t.params["model.backbone"]: set(t.params) for t in study.trials}
    assert seen["unet"] == {"model.backbone", "model.depth", "optim.lr"}
    assert seen["dilated_cnn"] == {"model.backbone", "optim.lr"}
    assert all(2 <= t.params.get("model.depth", 2) <= 4 for t in study.trials)


def test_relative_data_paths_become_absolute(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    data = space_data(None, Path("sweeps"))
    data["base"]["overrides"]["data.train"] = "data/train.json"
    data["base"]["overrides"]["data.replay"] = "data/replay.json"
    spec = load_space(write_space(tmp_path / "s.yaml", data))
    # trials run in their own working directories
    assert spec.base.data.train == str(tmp_path / "data" / "train.json")
    assert spec.base.data.replay == str(tmp_path / "data" / "replay.json")
    assert spec.experiment_dir == tmp_path / "sweeps" / "t"


# One test per error: a one-line message naming the file and the key, exit status 2.
BAD_SPACES = {
    "unknown_key": ({"space": {"optim.lrr": {"uniform": [0.1, 0.2]}}},
                    "space.optim.lrr: unknown config key 'optim.lrr' (did you mean 'optim.lr'?)"),
    "unknown_distribution": ({"space": {"optim.lr": {"logunifrom": [0.1, 0.2]}}},
                             "unknown distribution 'logunifrom' (did you mean 'loguniform'?)"),
    "reversed_bounds": ({"space": {"optim.lr": {"uniform": [0.2, 0.1]}}},
                        "space.optim.lr.uniform: low must be below high"),
    "log_of_zero": ({"space": {"optim.lr": {"loguniform": [0, 0.1]}}},
                    "space.optim.lr.loguniform: bounds must be > 0 for a log scale"),
    "float_bounds_for_int": ({"space": {"model.depth": {"int": [1.5, 3]}}},
                             "space.model.depth.int: bounds must be integers"),
    "empty_choice": ({"space": {"model.loss": {"choice": []}}},
                     "space.model.loss.choice: expected a non-empty list"),
    "config_rejects_value": ({"space": {"model.loss": {"choice": ["bce", "hinge"]}}},
                             "space.model.loss: the config rejects 'hinge'"),
    "wrong_type": ({"space": {"model.depth": {"uniform": [1.0, 3.0]}}},
                   "space.model.depth: the config rejects 1.0"),
    "reserved_key": ({"space": {"trainer.max_epochs": {"int": [2, 4]}}},
                     "space.trainer.max_epochs: set by the sweep itself"),
    "condition_on_unknown": (
        {"space": {"model.depth": {"int": [2, 4], "when": {"model.backbone": "unet"}}}},
        "space.model.depth.when: 'model.backbone' is not a parameter listed before this one"),
    "condition_value": (
        {"space": {"model.backbone": {"choice": ["unet"]},
                   "model.depth": {"int": [2, 4], "when": {"model.backbone": "vit"}}}},
        "space.model.depth.when: model.backbone never takes the value 'vit'"),
    "grace_not_on_evaluation": ({"eval_every": 2, "asha": {"grace_period": 3, "max_epochs": 6}},
                                "asha.grace_period (3) must be a multiple of eval_every (2)"),
    "reduction_factor": ({"asha": {"reduction_factor": 1}},
                         "asha.reduction_factor must be an integer >= 2"),
    "unknown_section_key": ({"asha": {"grace": 2}},
                            "unknown key 'asha.grace' (did you mean 'asha.grace_period'?)"),
    "unknown_top_level": ({"num_sample": 4},
                          "unknown key 'num_sample' (did you mean 'num_samples'?)"),
    "point_outside": ({"search": {"points_to_evaluate": [{"optim.lr": 5}]}},
                      "search.points_to_evaluate[0]: optim.lr=5 lies outside its distribution"),
    "metric": ({"metric": "val/mAP"}, "metric: unknown metric 'val/mAP'"),
    "negative_gpu": ({"resources": {"cpu": 1, "gpu": -1}}, "resources.gpu must be >= 0"),
    "samples_threshold": ({"space": {"eval.thresholds": {"choice": [2, 4]}}},
                          "space.eval.thresholds: defines the objective"),
    "samples_matching": ({"space": {"eval.matching": {"choice": ["first", "nearest"]}}},
                         "space.eval.matching: defines the objective"),
    "samples_validation_set": ({"space": {"data.val": {"choice": ["a.json", "b.json"]}}},
                               "space.data.val: defines the objective"),
    "samples_train_holding_the_validation_set": (
        {"space": {"data.train": {"choice": ["a.json", "b.json"]}}},
        "space.data.train: the validation images are split off data.train"),
    "relative_sampled_path": ({"space": {"data.replay": {"choice": ["/abs/a.json", "b.json"]}}},
                              "space.data.replay: 'b.json' is a relative path"),
    "samples_split": ({"space": {"data.split_seed": {"int": [0, 3]}}},
                      "space.data.split_seed: defines the objective"),
    "samples_val_fraction": ({"space": {"data.val_fraction": {"uniform": [0.1, 0.3]}}},
                             "space.data.val_fraction: defines the objective"),
    "samples_devices": ({"space": {"trainer.devices": {"choice": [1, 2]}}},
                        "space.trainer.devices: belongs to the trial's resources"),
    "samples_accelerator": ({"space": {"trainer.accelerator": {"choice": ["cpu", "gpu"]}}},
                            "space.trainer.accelerator: belongs to the trial's resources"),
    "samples_early_stopping": ({"space": {"trainer.early_stop_patience": {"int": [1, 3]}}},
                               "space.trainer.early_stop_patience: a trial that stops itself"),
    "early_stopping_under_asha": (
        {"base": {"overrides": {"trainer.early_stop_patience": 2}}},
        "trainer.early_stop_patience=2 would stop trials that ASHA then records as pruned"),
    "scheduler": ({"scheduler": "hyperband"}, "scheduler must be one of asha, fifo"),
    "time_budget": ({"time_budget_s": 0}, "time_budget_s must be > 0 (got 0.0)"),
    "time_budget_type": ({"time_budget_s": "soon"}, "time_budget_s: expected"),
    "base_config_key": ({"base": {"overrides": {"model.widht": 8}}},
                        "unknown config key 'model.widht' (did you mean 'model.width'?)"),
}


@pytest.mark.parametrize("case", sorted(BAD_SPACES))
def test_bad_space_file_is_a_one_line_error(tmp_path, run_kp, case):
    settings, expected = BAD_SPACES[case]
    path = _space(tmp_path, **settings)
    code, out, err = run_kp("sweep", "run", path)
    assert code == 2, err
    assert err.startswith(f"error: {path}: ") and err.count("\n") == 1
    assert expected in err
    assert not (tmp_path / "sweeps").exists()  # refused before anything started


def test_bad_command_line_override(tmp_path, run_kp):
    path = _space(tmp_path)
    code, _, err = run_kp("sweep", "run", path, "asha.grace_period=0")
    assert code == 2 and "asha.grace_period must be >= 1" in err
    code, _, err = run_kp("sweep", "run", path, "num_sampels=3")
    assert code == 2 and "(did you mean 'num_samples'?)" in err


def test_missing_space_file(tmp_path, run_kp):
    code, _, err = run_kp("sweep", "run", tmp_path / "nope.yaml")
    assert code == 2 and err == f"error: {tmp_path / 'nope.yaml'}: cannot read: No such file " \
                                 "or directory\n"


def test_loader_raises_input_error(tmp_path):
    with pytest.raises(InputError, match="space must map dotted config keys"):
        load_space(_space(tmp_path, space={}))


@pytest.mark.parametrize("argv", [["sweep"], ["sweep", "report"], ["sweep", "sync"],
                                  ["sweep", "dashboard"],
                                  ["sweep", "run", "space.yaml"]])
def test_every_sweep_form_has_help(run_kp, argv):
    code, out, _ = run_kp(*argv, "--help")
    assert code == 0 and out.startswith("usage: kp sweep")
    if argv[:2] == ["sweep", "run"]:
        assert "--resume" in out and "key=value" in out


def test_a_space_file_named_like_an_action_is_a_space_file(run_kp, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "report").write_text("name: [unclosed\n")
    code, _, err = run_kp("sweep", "run", "report")
    assert code == 2 and err.startswith("error: ") and "report" in err and "YAML" in err.upper()


def test_scheduler_setting(tmp_path):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    from kp_platform.tune.driver.runner import build_scheduler, build_searcher

    asha = load_space(_space(tmp_path))
    assert asha.scheduler == "asha" and isinstance(build_scheduler(asha), ASHAScheduler)
    # FIFO has no rungs (grace_period off eval_every is fine) and lets a trial stop itself
    fifo = load_space(_space(tmp_path, scheduler="fifo", eval_every=2,
                             asha={"grace_period": 3, "max_epochs": 4},
                             base={"overrides": {"trainer.early_stop_patience": 2}}))
    assert isinstance(build_scheduler(fifo), FIFOScheduler)
    fifo_dir = tmp_path / "fifo"
    fifo.storage_path = str(fifo_dir)
    fifo_dir.joinpath(fifo.name).mkdir(parents=True)
    assert build_searcher(fifo).max_epochs is None  # nothing is recorded PRUNED


def test_top1_metrics_are_minimised(tmp_path):
    data = space_data(None, tmp_path / "sweeps", metric="val/mean_px_error", mode="min")
    assert load_space(write_space(tmp_path / "ok.yaml", data)).metric == "val/mean_px_error"
    for metric, mode, expected in (("val/mean_px_error", "max", "mode must be min"),
                                   ("val/map", "min", "mode must be max"),
                                   ("val/px_errr", "min", "metric: unknown")):
        data = space_data(None, tmp_path / "sweeps", metric=metric, mode=mode)
        with pytest.raises(InputError, match=expected):
            load_space(write_space(tmp_path / "bad.yaml", data))


def test_a_search_holds_out_the_share_that_ranks_trials(tmp_path):
    """`data.val_fraction: auto` holds out 5% of a small set in a single run; a sweep of several
    trials ranks them on the validation split, so it holds out 20%. A value set stays."""
    assert load_space(_space(tmp_path, num_samples=4)).base.data.val_fraction == 0.2
    assert load_space(_space(tmp_path, num_samples=1)).base.data.val_fraction == "auto"
    chosen = load_space(_space(tmp_path, num_samples=4,
                               base={"overrides": {"data.val_fraction": 0.1}}))
    assert chosen.base.data.val_fraction == 0.1
    # with a validation file of its own nothing is split off: the setting stays as it was
    own = load_space(_space(tmp_path, num_samples=4,
                            base={"overrides": {"data.val": str(tmp_path / "val.json")}}))
    assert own.base.data.val_fraction == "auto"
