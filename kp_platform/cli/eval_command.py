"""`kp eval`: metrics of a prediction file against COCO ground truth."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    pass
