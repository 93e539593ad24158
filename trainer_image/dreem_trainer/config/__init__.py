"""The one schema of the DREEM training configuration.

Imports neither torch nor kopf: the operator validates `spec.config` and generates the CRD with it.
"""

from dreem_trainer.config.issues import ConfigError, ConfigIssue
from dreem_trainer.config.loader import EVERY_SPLIT, dump_yaml, load_config, resolve_raw, validate
from dreem_trainer.config.root import DreemConfig

__all__ = [
    "EVERY_SPLIT",
    "ConfigError",
    "ConfigIssue",
    "DreemConfig",
    "dump_yaml",
    "load_config",
    "resolve_raw",
    "validate",
]
