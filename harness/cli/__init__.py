"""The `unlearn` command line: one module per group of commands (running, tuning, results, plugins)."""
from __future__ import annotations

import logging

import click

from .. import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="unlearning-harness")
def main():
    """Evaluate machine-unlearning methods on CIFAR-10 / ResNet18, tracked in MLflow."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("mlflow", "alembic", "urllib3", "optuna"):
        logging.getLogger(noisy).setLevel(logging.WARNING)



from . import plugins, results, running, tuning  # noqa: E402,F401  (each registers its commands on `main`)

