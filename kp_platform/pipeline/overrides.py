"""`kp pipeline FILE key=value ...`: where each command-line override goes.

`root=DIR`, `name=NAME` and `datasets.KEY.FIELD=V` change the file's settings; `STAGE.KEY=V`
sets one stage's key (`init_from`, `inherit_from`, ...) or override (a sweep setting
or config key); a config key (`trainer.accelerator=gpu`) goes to every training stage.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

import yaml

from kp_platform.config import all_keys
from kp_platform.errors import InputError

# Stage keys that `<stage>.<key>=value` may set; any other `<stage>.<key>` is an override.
CLI_STAGE_KEYS = ("sweep", "train", "init_from", "inherit_from")


def apply_cli_overrides(data: dict[str, Any], overrides: Sequence[str], stage_names: list[str],
                        source: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Lays top-level settings and stage keys into the file's `data`; sorts the rest.

    Args:
        data: The pipeline file as read (changed in place).
        overrides: The `key=value` strings.
        stage_names: The file's stage names, in order.
        source: The file, for error messages.

    Returns:
        The config overrides for every training stage, and the overrides per stage.
    """
    config_sections = {k.split(".")[0] for k in all_keys()}
    late: dict[str, Any] = {}
    per_stage: dict[str, dict[str, Any]] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InputError(f"override {item!r} is not of the form key=value", source)
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw  # not YAML: the text as typed, as `kp train` takes it
        head, _, rest = key.partition(".")
        if head in stage_names and rest:
            entry = next(s for s in data["stages"] if s.get("name") == head)
            if rest in CLI_STAGE_KEYS:
                entry[rest] = value
            else:
                per_stage.setdefault(head, {})[rest] = value
        elif head in ("name", "root") and not rest:
            data[head] = value
        elif head == "datasets" and rest:
            if data.get("datasets") is None:
                data["datasets"] = {}
            node = data["datasets"]
            *parents, leaf = rest.split(".")
            for part in parents:
                node = node.setdefault(part, {}) if isinstance(node, dict) else None
            if not isinstance(node, dict):
                raise InputError(f"override {key!r}: not a dataset setting", source)
            node[leaf] = value
        elif head in config_sections:
            late[key] = value
        else:
            candidates = ["name", "root", *(f"{s}.KEY" for s in stage_names), *all_keys()]
            raise InputError(f"override {key!r}: {unknown(key, candidates, 'key')}", source)
    return late, per_stage


def unknown(key: str, candidates: Sequence[str], what: str) -> str:
    """`unknown <what> '<key>'`, with the closest candidate when one is close enough."""
    close = difflib.get_close_matches(str(key), list(candidates), n=1, cutoff=0.5)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown {what} {key!r}{hint}"
