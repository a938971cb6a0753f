"""`vgjax.checks`: the old name of `vgjax.cli.config` (load_config, validate, schema,
ALIASES), kept for scripts that import it from here."""
from vgjax.cli.config import ALIASES, CHECKS, DEFAULT_CONFIG, load_config, schema, validate

__all__ = ["ALIASES", "CHECKS", "DEFAULT_CONFIG", "load_config", "schema", "validate"]
