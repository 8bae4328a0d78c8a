"""Property-based: mutated search-space YAML and sweep overrides through `load_space`.

`kp sweep` validates the file with `load_space` before Ray starts; a valid space would start a
sweep, so the property is checked on `load_space` itself: it returns, or raises an InputError
whose message is one line (which `kp` prints as `error: ...`, exit 2).
"""

from __future__ import annotations

from pathlib import Path

import yaml
from hypothesis import given
from hypothesis import strategies as st

from kp_platform.tune import load_space
from tests.fuzzing import assert_input_error_or_success, fuzz_settings, mutated, mutated_text

TINY = Path(__file__).resolve().parents[2] / "search_spaces" / "tiny.yaml"
VALID = yaml.safe_load(TINY.read_text())
SETTINGS = fuzz_settings(150)
KEYS = ["num_samples", "asha.grace_period", "asha.max_epochs", "eval_every", "search.seed",
        "resources.cpu", "space.optim.lr", "optim.lr", "data.input_size", "model.backbone",
        "wandb.mode", "storage_path", "name", "metric", "nonsense.key", "space", "asha"]


@SETTINGS
@given(doc=mutated(VALID))
def test_mutated_search_space(tmp_path, doc):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    assert_input_error_or_success(lambda: load_space(path))


@SETTINGS
@given(text=mutated_text(TINY.read_text()))
def test_damaged_search_space_text(tmp_path, text):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    assert_input_error_or_success(lambda: load_space(path))


@SETTINGS
@given(overrides=st.lists(st.one_of(
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(KEYS), st.text(max_size=12)),
    st.text(max_size=16)), max_size=3))
def test_sweep_overrides(overrides):
    assert_input_error_or_success(lambda: load_space(TINY, overrides))
