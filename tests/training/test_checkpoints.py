"""Every checkpoint load in the package says `weights_only=True` explicitly.

torch 2.4 and 2.5 (allowed by the requirement) default to `weights_only=False`, which unpickles:
a checkpoint from someone else would run code. A static check over the source, so a new load
site cannot forget it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from kp_platform.errors import InputError
from kp_platform.training import read_checkpoint

PACKAGE = Path(__file__).resolve().parents[2] / "kp_platform"


def _load_sites(tree: ast.AST) -> list[ast.Call]:
    """torch.load(...), *.load_from_checkpoint(...), and any call passing ckpt_path=."""
    sites = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(
            func.value, ast.Name) else ""
        if ((owner == "torch" and name == "load") or name == "load_from_checkpoint"
                or any(k.arg == "ckpt_path" for k in node.keywords)):
            sites.append(node)
    return sites


def _weights_only(call: ast.Call) -> bool:
    return any(k.arg == "weights_only" and isinstance(k.value, ast.Constant)
               and k.value.value is True for k in call.keywords)


def test_every_checkpoint_load_is_weights_only():
    sites = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for call in _load_sites(ast.parse(path.read_text())):
            where = f"{path.relative_to(PACKAGE.parent)}:{call.lineno}"
            sites.append((where, _weights_only(call)))
    assert len(sites) >= 3, sites  # read_checkpoint, encoder weights, the resume in train()
    assert [where for where, ok in sites if not ok] == []


def test_a_pickled_object_in_a_checkpoint_is_refused(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": Path("x")}, path)  # any non-tensor class object
    with pytest.raises(InputError, match="cannot load as a safe"):
        read_checkpoint(path)


def test_a_checkpoint_from_before_max_width_keeps_its_uncapped_unet():
    from kp_platform.training import checkpoint_config

    old = {"hyper_parameters": {"config": {"model": {"backbone": "unet", "depth": 4}},
                                "channel_names": ["a"]}}
    config, names = checkpoint_config(old, "old.ckpt")
    assert config["model"] == {"backbone": "unet", "depth": 4, "max_width": None}
    assert names == ["a"]
    new = {"hyper_parameters": {"config": {"model": {"max_width": 64}}, "channel_names": ["a"]}}
    assert checkpoint_config(new, "new.ckpt")[0]["model"]["max_width"] == 64
