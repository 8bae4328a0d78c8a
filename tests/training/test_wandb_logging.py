"""wandb failures at the start of a run are one line (ExternalError), not a mid-training trace."""

from __future__ import annotations

import pytest

from kp_platform.errors import ExternalError
from kp_platform.training.wandb_logging import declare_input_artifact, start_wandb_run


class _Unreachable:
    save_dir = "runs/demo"

    @property
    def experiment(self):
        raise ConnectionError("Max retries exceeded with url: /graphql\n(caused by ...)")


class _OnlineRun:
    offline = False

    def use_artifact(self, *args, **kwargs):
        raise PermissionError("403 Forbidden: permission denied\nmore detail")


def test_unreachable_wandb_is_one_line():
    with pytest.raises(ExternalError) as caught:
        start_wandb_run(_Unreachable())
    assert str(caught.value) == ("runs/demo: cannot start the wandb run: ConnectionError: Max "
                                 "retries exceeded with url: /graphql")


def test_refused_input_artifact_is_one_line():
    with pytest.raises(ExternalError, match="cannot declare the input artifact 'e/p/m:best': "
                                            "PermissionError: 403 Forbidden") as caught:
        declare_input_artifact(_OnlineRun(), "wandb:e/p/m:best")
    assert "\n" not in str(caught.value)
