"""The experiment registry behind ``layerwise <experiment>``.

An experiment registers a name, a one-line help text, a function that adds its options
to an argparse parser, and a function that runs it from the parsed arguments and returns
the exit status. The CLI builds one subcommand per entry and dispatches to it; problems
the user has to fix (missing data, an unwritable output directory, ...) are raised as
``ExperimentError`` and printed as one line.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Callable, Dict

__all__ = ["Experiment", "ExperimentError", "EXPERIMENTS", "register"]


class ExperimentError(Exception):
    """A problem with an experiment's inputs that the user must fix; its message is one line
    that names the option or file concerned."""


@dataclass(frozen=True)
class Experiment:
    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]  # adds the experiment's options
    main: Callable[[argparse.Namespace], int]  # runs it; returns the exit status
    description: str = ""
    epilog: str = ""


EXPERIMENTS: Dict[str, Experiment] = {}


def register(experiment: Experiment) -> Experiment:
    if experiment.name in EXPERIMENTS:
        raise ValueError(f"experiment {experiment.name!r} is already registered")
    EXPERIMENTS[experiment.name] = experiment
    return experiment
