"""Reproductions of published experiments, runnable as ``layerwise <name>``."""
from . import bengio2006

EXPERIMENTS = {"bengio2006": bengio2006}

__all__ = ["bengio2006", "EXPERIMENTS"]
