"""The typed config tree and its one loading path.

Defaults (`schema.py`) → YAML file → dotted `key=value` overrides (`loading.py`).
"""

from kp_platform.config.loading import (
    all_keys,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
    read_yaml,
    save_config,
)
from kp_platform.config.schema import Config

__all__ = [
    "Config",
    "all_keys",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "read_yaml",
    "save_config",
]
