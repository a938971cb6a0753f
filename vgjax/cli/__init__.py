"""The command-line layer above the packages: `config` (load_config: the schema, the
aliases of renamed fields and every section's checks), `train` (`python -m vgjax.train`)
and `eval` (`python -m vgjax.eval`)."""
