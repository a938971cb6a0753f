"""vgjax: visual geo-localization (visual place recognition) in JAX/Flax."""
__version__ = "0.1.0"
