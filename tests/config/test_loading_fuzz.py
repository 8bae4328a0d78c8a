"""Property-based: config files and `key=value` overrides through `load_config`.

`kp train` loads its config with these before anything runs; the property is that they return
or raise an InputError with a one-line message (`kp` prints it as `error: ...`, exit 2).
"""

from __future__ import annotations

from pathlib import Path

import yaml
from hypothesis import given
from hypothesis import strategies as st

from kp_platform.config import all_keys, apply_overrides, load_config
from tests.fuzzing import assert_input_error_or_success, fuzz_settings, mutated, mutated_text

DEMO = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"
VALID = yaml.safe_load(DEMO.read_text())
SETTINGS = fuzz_settings(200)
VALUES = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["[1, 2]", "[8, 8]", "{a: 1}", "null", "1e999", ".nan", "-1", "0", "true",
                     "!!python/object:os.system", "[[]]", "'", "{", "center", "corner",
                     "100000000000000000000000000000000"]),
)


@SETTINGS
@given(overrides=st.lists(st.builds(lambda k, v: f"{k}={v}", st.sampled_from(all_keys()),
                                    VALUES), min_size=1, max_size=3))
def test_overrides(overrides):
    assert_input_error_or_success(lambda: apply_overrides(load_config(), overrides))


@SETTINGS
@given(overrides=st.lists(st.text(max_size=20), min_size=1, max_size=2))
def test_arbitrary_override_strings(overrides):
    assert_input_error_or_success(lambda: apply_overrides(load_config(), overrides))


@SETTINGS
@given(doc=mutated(VALID))
def test_mutated_config_file(tmp_path, doc):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    assert_input_error_or_success(lambda: load_config(path))


@SETTINGS
@given(text=mutated_text(DEMO.read_text()))
def test_damaged_config_text(tmp_path, text):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    assert_input_error_or_success(lambda: load_config(path))
