from __future__ import annotations

import pytest
import yaml

from kp_platform.config import (
    Config,
    all_keys,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
    save_config,
)
from kp_platform.errors import InputError


def test_defaults_then_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: 0.01\ndata:\n  batch_size: 4\n")
    cfg = load_config(path, ["optim.lr=0.5", "trainer.max_epochs=3"])
    assert cfg.optim.lr == 0.5  # override beats YAML
    assert cfg.data.batch_size == 4  # YAML beats default
    assert cfg.trainer.max_epochs == 3
    assert cfg.optim.weight_decay == Config().optim.weight_decay  # default kept


def test_override_values_parse_to_field_types():
    cfg = apply_overrides(
        Config(),
        [
            "optim.lr=1e-4",  # YAML would read this as a string; the float field gets a float
            "eval.thresholds=[1, 2.5]",
            "data.visible_only=true",
            "trainer.name=007",  # a str field keeps the text as typed
            "data.val=null",
            "data.augment=[{name: HorizontalFlip, p: 0.5}]",
            "logging.wandb.mode=disabled",
        ],
    )
    assert cfg.optim.lr == 1e-4 and isinstance(cfg.optim.lr, float)
    assert cfg.eval.thresholds == [1.0, 2.5]
    assert cfg.data.visible_only is True
    assert cfg.trainer.name == "007"
    assert cfg.data.val is None
    assert cfg.data.augment == [{"name": "HorizontalFlip", "p": 0.5}]
    assert cfg.logging.wandb.mode == "disabled"


def test_mapping_overrides_are_what_a_sweep_passes():
    base = Config()
    cfg = apply_overrides(base, {"optim.lr": 0.01, "model.width": 16})
    assert (cfg.optim.lr, cfg.model.width) == (0.01, 16)
    assert base.optim.lr != 0.01  # the input is not modified


@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.lrr=0.1", "unknown config key 'optim.lrr' (did you mean 'optim.lr'?)"),
        ("optimm.lr=0.1", "unknown config key 'optimm'"),
        ("optim.lr=fast", "optim.lr: expected float, got 'fast'"),
        ("data.batch_size=2.5", "data.batch_size: expected int"),
        ("data.resize_mode=crop", "expected one of 'resize', 'letterbox'"),
        ("optim.lr=-1", "optim.lr must be > 0"),
        ("data.input_size=[64]", "data.input_size must be [height, width]"),
        ("optim", "is not of the form section.key=value"),
        ("optim=3", "'optim' is a section"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(InputError) as err:
        apply_overrides(Config(), [override])
    assert message in str(err.value)


def test_unknown_yaml_key_names_the_file_and_closest_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  batchsize: 4\n")
    with pytest.raises(InputError) as err:
        load_config(path)
    assert str(path) in str(err.value)
    assert "'data.batchsize' (did you mean 'data.batch_size'?)" in str(err.value)


def test_invalid_yaml_is_an_input_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data: [unclosed\n")
    with pytest.raises(InputError, match="invalid YAML at line"):
        load_config(path)


def test_yaml_is_loaded_safely(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("trainer: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(InputError, match="invalid YAML"):
        load_config(path)


def test_resolved_config_round_trips_through_yaml(tmp_path):
    cfg = apply_overrides(Config(), ["optim.lr=0.02", "data.channels=a=b:c"])
    path = save_config(cfg, tmp_path / "run" / "config.yaml")
    assert load_config(path) == cfg
    assert config_from_dict(yaml.safe_load(path.read_text())) == cfg
    assert config_to_dict(cfg)["optim"]["lr"] == 0.02


def test_all_keys_lists_nested_leaves():
    keys = all_keys()
    assert "optim.lr" in keys and "logging.wandb.mode" in keys
    assert "logging.wandb" not in keys
