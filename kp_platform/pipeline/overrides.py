"""`kp pipeline FILE key=value ...`: where each command-line override goes.

`root=DIR`, `name=NAME` and `datasets.KEY.FIELD=V` change the file's settings; `STAGE.KEY=V`
sets one stage's key (`init_from`, `inherit_from`, ...) or override (a sweep setting
or config key); a config key (`trainer.accelerator=gpu`) goes to every training stage.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kp_platform.config import all_keys, config_key_type, parse_overrides, set_dotted, unknown
from kp_platform.errors import InputError

__all__ = ["CLI_STAGE_KEYS", "apply_cli_overrides", "unknown"]

# Stage keys that `<stage>.<key>=value` may set; any other `<stage>.<key>` is an override.
CLI_STAGE_KEYS = ("sweep", "train", "init_from", "inherit_from")


def apply_cli_overrides(data: dict[str, Any], overrides: Sequence[str], stage_names: list[str],
                        source: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Lays top-level settings and stage keys into the file's `data`; sorts the rest.

    Every string goes through the config's one parser, its value parsed for its key's type
    (a config key's, a sweep setting's, text for names and paths), as `kp train` and
    `kp sweep` parse theirs.

    Args:
        data: The pipeline file as read (changed in place).
        overrides: The `key=value` strings.
        stage_names: The file's stage names, in order.
        source: The file, for error messages.

    Returns:
        The config overrides for every training stage, and the overrides per stage.
    """
    config_sections = {k.split(".")[0] for k in all_keys()}

    def type_of(key: str) -> Any:
        from kp_platform.tune.spec.space import setting_type

        head, _, rest = key.partition(".")
        if head in stage_names and rest:
            return str if rest in CLI_STAGE_KEYS else setting_type(rest, source)
        if head in ("name", "root") and not rest:
            return str
        if head == "datasets" and rest:
            return Any
        if head in config_sections:
            try:
                return config_key_type(key)
            except InputError as exc:
                raise InputError(str(exc), source) from None
        candidates = ["name", "root", *(f"{s}.KEY" for s in stage_names), *all_keys()]
        raise InputError(f"override {key!r}: {unknown(key, candidates, 'key')}", source)

    late: dict[str, Any] = {}
    per_stage: dict[str, dict[str, Any]] = {}
    for key, value in parse_overrides(overrides, type_of, source).items():
        head, _, rest = key.partition(".")
        if head in stage_names and rest:
            entry = next(s for s in data["stages"] if s.get("name") == head)
            if rest in CLI_STAGE_KEYS:
                entry[rest] = value
            else:
                per_stage.setdefault(head, {})[rest] = value
        elif head in ("name", "root") and not rest:
            data[head] = value
        elif head == "datasets":
            set_dotted(data, key, value, source)
        else:
            late[key] = value
    return late, per_stage
