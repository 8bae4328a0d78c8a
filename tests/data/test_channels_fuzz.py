"""Property-based: channel strings and channel YAML files through `kp data check --channels`."""

from __future__ import annotations

import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from tests.fuzzing import assert_clean_outcome, fuzz_settings, mutated, mutated_text, run_kp

COMPACT = "corner0=corner1:towel.grasp:sleeve_left=sleeve_right"
VALID = {"channels": [
    {"name": "corner", "keypoints": ["towel.corner0", "towel.corner1"]},
    {"name": "grasp", "keypoints": ["towel.grasp"]},
    {"name": "sleeves", "keypoints": ["sleeve_left", "sleeve_right"]},
]}
SETTINGS = fuzz_settings(200)


@SETTINGS
@example(text="/\x00")  # found by a deeper run: a NUL in what looks like a path
@given(text=st.one_of(mutated_text(COMPACT), st.text(max_size=20)))
def test_channel_strings(tiny_coco, text):
    if text.startswith("-"):  # argparse would take it for an option
        text = " " + text
    code, _, err = run_kp("data", "check", tiny_coco, "--channels", text)
    assert_clean_outcome(code, err, repr(text))


@SETTINGS
@given(doc=mutated(VALID))
def test_mutated_channel_files(tiny_coco, tmp_path, doc):
    path = tmp_path / "channels.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    code, _, err = run_kp("data", "check", tiny_coco, "--channels", path)
    assert_clean_outcome(code, err, repr(doc))


@SETTINGS
@given(text=mutated_text(yaml.safe_dump(VALID)))
def test_damaged_channel_yaml(tiny_coco, tmp_path, text):
    path = tmp_path / "channels.yaml"
    path.write_text(text)
    code, _, err = run_kp("data", "check", tiny_coco, "--channels", path)
    assert_clean_outcome(code, err, repr(text))
