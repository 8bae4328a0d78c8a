"""One `key=value` parser: `kp train`, `kp sweep`, `kp pipeline` and `base:` resolve alike."""

from __future__ import annotations

from typing import Any

import pytest

from kp_platform.cli.main import build_parser
from kp_platform.cli.train_command import resolve_config
from kp_platform.config import (
    Config,
    get_dotted,
    parse_overrides,
    parse_value,
    set_dotted,
    unknown,
)
from kp_platform.config.loading import config_key_type
from kp_platform.errors import InputError
from kp_platform.pipeline import load_pipeline
from kp_platform.pipeline.stages import build_sweep, build_train_config, training_overrides
from kp_platform.tune import load_space
from kp_platform.tune.spec.space import setting_type
from tests.pipeline.conftest import tiny_data, write_pipeline
from tests.tune.conftest import space_data, write_space

STRINGS = [
    "logging.wandb.entity=007",     # text stays as typed (YAML would read 7)
    "model.init_artifact=1e3",      # text, not the number 1000.0
    "optim.weight_decay=1e-5",      # YAML 1.1 reads a string; the float field gets a float
    "data.batch_size=4",
    "data.augment=[{name: HorizontalFlip, p: 0.5}]",
    "data.resize_mode=letterbox",
    "model.loss=focal",
    "trainer.seed=010",
]
KEYS = [s.partition("=")[0] for s in STRINGS]


def _values(config: Config) -> dict[str, Any]:
    return {key: get_dotted(config, key) for key in KEYS}


def test_every_command_resolves_the_same_strings_alike(tmp_path):
    config_file = tmp_path / "c.yaml"
    config_file.write_text("{}\n")
    train = resolve_config(build_parser().parse_args(["train", str(config_file), *STRINGS]))

    space = write_space(tmp_path / "space.yaml", space_data(None, tmp_path / "sweeps"))
    sweep = load_space(space, STRINGS).base

    listed = space_data(None, tmp_path / "sweeps")
    listed["base"]["overrides"] = [
        f"{k}={v}" for k, v in listed["base"]["overrides"].items()] + STRINGS
    base = load_space(write_space(tmp_path / "listed.yaml", listed)).base

    pipeline = load_pipeline(write_pipeline(tmp_path / "p.yaml", tiny_data()),
                             [f"root={tmp_path}", *STRINGS])
    scratch = pipeline.stage("scratch")
    pipe_train = build_train_config(pipeline, scratch, training_overrides(pipeline, scratch, None))
    pretrain = pipeline.stage("pretrain")
    pipe_sweep = build_sweep(pipeline, pretrain, training_overrides(pipeline, pretrain, None),
                             tmp_path / "stage.yaml").base

    expected = _values(train)
    assert expected["logging.wandb.entity"] == "007"
    assert expected["model.init_artifact"] == "1e3"
    assert expected["optim.weight_decay"] == 1e-5
    for config in (sweep, base, pipe_train, pipe_sweep):
        assert _values(config) == expected


def test_sweep_settings_go_through_the_same_parser(tmp_path):
    space = write_space(tmp_path / "space.yaml", space_data(None, tmp_path / "sweeps"))
    spec = load_space(space, ["wandb.project=007", "asha.max_epochs=4", "num_samples=3"])
    assert spec.wandb.project == "007" and spec.base.logging.wandb.project == "007"
    assert (spec.asha.max_epochs, spec.num_samples) == (4, 3)
    assert setting_type("asha.max_epochs") is int
    with pytest.raises(InputError, match=r"'asha.max_epoch' \(did you mean 'asha.max_epochs'"):
        setting_type("asha.max_epoch")


def test_parse_value_and_the_one_hint():
    assert parse_value("007", str) == "007"
    assert parse_value("007", int) == 7
    assert parse_value("null", str | None) is None
    assert parse_value("[1, 2]", list[int]) == [1, 2]
    assert parse_overrides(["optim.lr=1e-4"], config_key_type) == {"optim.lr": "1e-4"}
    assert unknown("optim.lrr", ["optim.lr"]) == ("unknown config key 'optim.lrr' "
                                                  "(did you mean 'optim.lr'?)")
    with pytest.raises(InputError, match="not of the form"):
        parse_overrides(["optim.lr"], config_key_type)


def test_one_dotted_walker_reads_and_writes_alike() -> None:
    data: dict[str, Any] = {"asha": None, "optim": {"lr": 1e-3}}
    set_dotted(data, "asha.grace_period", 2)
    set_dotted(data, "wandb.mode", "offline")
    assert get_dotted(data, "asha.grace_period") == 2
    assert get_dotted(Config(), "optim.lr") == Config().optim.lr
    with pytest.raises(InputError, match=r"override 'optim.lr.x': 'lr' is not a section"):
        set_dotted(data, "optim.lr.x", 1, "space.yaml")
    assert data["optim"] == {"lr": 1e-3}
