"""`check_data_config`: what training would refuse in a `data` section, found without training."""

from __future__ import annotations

import pytest

from kp_platform.config import load_config
from kp_platform.config.auto import resolve_auto
from kp_platform.data.check import check_data_config
from kp_platform.data.coco import CocoKeypoints
from kp_platform.errors import InputError


def test_each_file_goes_through_the_given_loader(tiny_coco):
    reads = []

    def load(path, **options):
        reads.append(str(path))
        return CocoKeypoints.load(path, **options)

    data = resolve_auto(load_config(overrides={"data.train": str(tiny_coco),
                                               "data.val": str(tiny_coco),
                                               "data.input_size": [32, 32]}))[0].data
    check_data_config(data, load=load)
    assert reads == [str(tiny_coco), str(tiny_coco)]


def test_channels_the_file_lacks_name_the_file(tiny_coco):
    data = load_config(overrides={"data.train": str(tiny_coco),
                                  "data.channels": "towel.corner0:towel.nose"}).data
    with pytest.raises(InputError) as err:
        check_data_config(data)
    assert str(err.value).startswith(f"{tiny_coco}: ") and "towel.nose" in str(err.value)
