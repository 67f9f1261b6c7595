"""The package version (one place; ``mvld_hf.__version__`` re-exports it)."""

__version__ = "0.1.0"
