"""vgjax: visual geo-localization (visual place recognition) in JAX/Flax."""
__version__ = "0.1.0"


def quiet_library_logs() -> None:
    """Silences start-up and per-save INFO chatter of faiss, JAX and orbax in our logs."""
    import logging
    for name in ("absl", "faiss.loader", "jax._src.xla_bridge"):
        logging.getLogger(name).setLevel(logging.WARNING)
