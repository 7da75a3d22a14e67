"""Reproductions of published experiments, runnable as ``layerwise <name>``.

Each module registers itself in :data:`EXPERIMENTS` (see :mod:`.registry`)."""
from .registry import EXPERIMENTS, Experiment, ExperimentError, register
from . import bengio2006, pong, robustness

__all__ = ["bengio2006", "pong", "robustness", "EXPERIMENTS", "Experiment", "ExperimentError", "register"]
