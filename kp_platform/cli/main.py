"""The `kp` command: builds the argument parser and turns input errors into exit status 2.

Each sub-command lives in its own module and is imported only when it runs, so `kp --help`
stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from kp_platform import __version__
from kp_platform.console import quiet_library_info
from kp_platform.errors import ExternalError, InputError

# Sub-command modules; each defines `add_parser(subparsers)` and sets `func` on its parser.
COMMAND_MODULES = (
    "kp_platform.cli.data_commands",
    "kp_platform.cli.train_command",
    "kp_platform.cli.eval_command",
    "kp_platform.cli.model_commands",
    "kp_platform.cli.sweep_command",
    "kp_platform.cli.pipeline_command",
    "kp_platform.cli.fit_command",
)


class _Parser(argparse.ArgumentParser):
    """Usage errors in the project's one-line form, exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"error: {self.prog}: {message} (see {self.prog} --help)\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="kp",
        description="Heatmap keypoint detection: datasets, training, evaluation and sweeps.",
    )
    parser.add_argument("--version", action="version", version=f"kp_platform {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subparsers.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs `kp`; returns 0 on success, 2 on bad input or usage, 1 when a subprocess or network
    call fails (one `error:` line) or on anything unexpected."""
    args = build_parser().parse_args(argv)
    quiet_library_info()
    try:
        return int(args.func(args) or 0)
    except InputError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except ExternalError as exc:  # a subprocess or network call failed: not the input's fault
        sys.stderr.write(f"error: {exc}\n")
        return 1
    except FloatingPointError as exc:  # a NaN loss: every DDP rank stops with this one line
        sys.stderr.write(f"error: {exc}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
