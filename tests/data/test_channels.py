from __future__ import annotations

import pytest

from kp_platform.data import CocoKeypoints, parse_channels, resolve_channels
from kp_platform.data.channels import ChannelSpec
from kp_platform.errors import InputError


def test_compact_form():
    specs = parse_channels("corner0=corner1:grasp")
    assert specs == [ChannelSpec("corner0=corner1", ("corner0", "corner1")),
                     ChannelSpec("grasp", ("grasp",))]


def test_yaml_file_and_inline_forms_agree(tmp_path):
    path = tmp_path / "ch.yaml"
    path.write_text("channels:\n  - name: c\n    keypoints: [towel.corner0, towel.corner1]\n")
    inline = [{"name": "c", "keypoints": ["towel.corner0", "towel.corner1"]}]
    assert parse_channels(str(path)) == parse_channels(inline) == parse_channels(
        {"channels": inline}
    )


def test_resolution_qualified_bare_and_shared(tiny_coco):
    coco = CocoKeypoints.load(tiny_coco)
    specs = parse_channels(
        [{"name": "a", "keypoints": ["towel.grasp", "sleeve_left"]},
         {"name": "b", "keypoints": ["towel.grasp"]}]
    )
    channels = resolve_channels(specs, coco.categories, "t")
    assert channels.names == ("a", "b")
    assert channels.sources == (((1, 2), (2, 0)), ((1, 2),))


def test_default_is_one_channel_per_keypoint_type(tiny_coco):
    coco = CocoKeypoints.load(tiny_coco)
    channels = resolve_channels(None, coco.categories, "t")
    assert channels.names[:3] == ("towel.corner0", "towel.corner1", "towel.grasp")
    assert len(channels) == 6


def test_flip_permutation_swaps_pairs(tiny_coco):
    coco = CocoKeypoints.load(tiny_coco)
    channels = resolve_channels(parse_channels("corner0:sleeve_left:sleeve_right"),
                                coco.categories, "t")
    assert channels.flip_permutation([["sleeve_left", "sleeve_right"]], "t") == [0, 2, 1]
    with pytest.raises(InputError, match="unknown channel 'left'"):
        channels.flip_permutation([["left", "sleeve_right"]], "data.flip_pairs")


@pytest.mark.parametrize(
    "spec, message",
    [
        ("a=:b", "empty keypoint name"),
        ([{"name": "a"}], "'keypoints' must list keypoint names"),
        ([{"name": "a", "keypoints": ["x"], "colour": 1}], "exactly 'name' and 'keypoints'"),
        ("a:a", "channel name 'a' is used twice"),
        ([], "non-empty list"),
    ],
)
def test_malformed_channel_configs(spec, message):
    with pytest.raises(InputError, match=message):
        parse_channels(spec)
