"""The typed config tree and its one loading path.

Defaults (`schema.py`) → YAML file → dotted `key=value` overrides (`loading.py`, `overrides.py`).
"""

from kp_platform.config.loading import (
    all_keys,
    apply_overrides,
    config_from_dict,
    config_key_type,
    config_to_dict,
    load_config,
    read_yaml,
    save_config,
)
from kp_platform.config.overrides import (
    coerce,
    get_dotted,
    parse_overrides,
    parse_value,
    set_dotted,
    unknown,
)
from kp_platform.config.schema import Config

__all__ = [
    "Config",
    "all_keys",
    "apply_overrides",
    "coerce",
    "config_from_dict",
    "config_key_type",
    "config_to_dict",
    "get_dotted",
    "load_config",
    "parse_overrides",
    "parse_value",
    "read_yaml",
    "save_config",
    "set_dotted",
    "unknown",
]
