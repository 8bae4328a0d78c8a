from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from kp_platform.cli.main import build_parser


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(argv, parser) for `kp` and every command and action under it."""
    yield path, parser
    for action in parser._actions:  # argparse keeps no public list of sub-parsers
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*path, name))


COMMANDS = list(_commands(build_parser()))


def test_the_command_tree_is_complete():
    names = {" ".join(argv) for argv, _ in COMMANDS}
    assert {"train", "eval", "predict", "export", "pipeline", "data import", "sweep run",
            "sweep report", "sweep sync", "sweep dashboard", "fit"} <= names


@pytest.mark.parametrize("argv", [argv for argv, _ in COMMANDS],
                         ids=lambda argv: " ".join(argv) or "kp")
def test_every_command_has_help(run_kp, argv):
    code, out, _ = run_kp(*argv, "--help")
    assert code == 0 and out.startswith(" ".join(["usage: kp", *argv]))


def test_every_argument_says_what_it_is():
    silent = [f"kp {' '.join(argv)} {action.option_strings or action.dest}"
              for argv, parser in COMMANDS for action in parser._actions
              if not action.help and not isinstance(action, argparse._SubParsersAction)]
    assert silent == []


def test_usage_error_is_one_line_with_status_2(run_kp):
    code, _, err = run_kp("data", "check")
    assert code == 2
    assert err.startswith("error: kp data check: ") and err.count("\n") == 1


def test_console_script_exit_status_and_stderr(tmp_path):
    kp = Path(sys.executable).parent / "kp"
    missing = tmp_path / "missing.json"
    result = subprocess.run([str(kp), "data", "check", str(missing)], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 2
    assert result.stderr == f"error: {missing}: cannot read: No such file or directory\n"
    assert result.stdout == ""


def test_data_check_prints_the_summary(tiny_coco, run_kp):
    code, out, _ = run_kp("data", "check", tiny_coco, "--channels", "corner0=corner1:grasp")
    assert code == 2  # bare 'grasp' is ambiguous in this dataset
    code, out, _ = run_kp("data", "check", tiny_coco, "--channels",
                          "corner0=corner1:towel.grasp")
    assert code == 0
    assert "images: 3 (1 without annotations)" in out and "instances: 3" in out
    row = next(line.split() for line in out.splitlines() if line.strip().startswith("corner0="))
    # kept, images, max/img, not_labelled, occluded, outside
    assert row[1:] == ["4", "2", "2", "0", "0", "0"]
    row = next(line.split() for line in out.splitlines() if line.strip().startswith("towel."))
    assert row[1:] == ["1", "1", "1", "1", "0", "0"]
