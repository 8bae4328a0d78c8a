"""`--accelerator`, `--devices`, `--precision`: the one definition of the device flags.

`kp predict`, `kp eval --checkpoint` and `kp export` add those they use here, so the commands
share names and defaults: every one takes `--accelerator`; `--devices` only `kp eval` (DDP),
`--precision` `kp eval` and `kp predict` (an exported file is float32).
`kp_platform.inference.settings` checks the values.
"""

from __future__ import annotations

import argparse

# kp_platform.inference.settings.ACCELERATORS / PRECISIONS, not imported so that `kp --help`
# stays fast (that module imports torch); tests/inference/test_settings.py keeps them equal.
ACCELERATORS = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("32-true", "16-mixed", "bf16-mixed")


def add_device_flags(parser: argparse.ArgumentParser, devices_help: str | None = None,
                     precision: bool = True) -> None:
    """Adds the device flags a command uses to `parser`.

    Args:
        parser: A sub-command's parser.
        devices_help: What `--devices` means for this command; None: no `--devices` (the
            command runs on one device).
        precision: Whether the command takes `--precision`.
    """
    group = parser.add_argument_group("devices")
    group.add_argument("--accelerator", default="auto", choices=ACCELERATORS,
                       help="auto (default): CUDA when present, else MPS, else the CPU")
    if devices_help is not None:
        group.add_argument("--devices", type=_positive_int, default=1, metavar="N",
                           help=devices_help)
    if precision:
        group.add_argument("--precision", default="32-true", choices=PRECISIONS,
                           help="32-true (default), or the network under autocast in float16 "
                           "(16-mixed) or bfloat16 (bf16-mixed)")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value
