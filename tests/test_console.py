"""What `kp` lets through to the terminal from Lightning: no banner, no deprecation noise."""

from __future__ import annotations

import logging
import warnings

from pytorch_lightning.utilities._pytree import _tree_flatten

from kp_platform.console import LIGHTNING_INFO, quiet_library_info


def test_lightnings_leafspec_warning_is_silenced_at_its_module_only() -> None:
    with warnings.catch_warnings(record=True) as before:
        warnings.simplefilter("always")
        _tree_flatten({"loss": 1.0})  # what Lightning does with every logged metric
    assert any("LeafSpec" in str(w.message) for w in before)  # the noise exists

    with warnings.catch_warnings(record=True) as after:
        warnings.simplefilter("always")
        quiet_library_info()
        _tree_flatten({"loss": 1.0})
        warnings.warn("a user's own FutureWarning", FutureWarning, stacklevel=1)
    assert [str(w.message) for w in after] == ["a user's own FutureWarning"]
    assert logging.getLogger(LIGHTNING_INFO).level == logging.WARNING
