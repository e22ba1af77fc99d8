"""The package's loggers: children of Optuna's ``optuna`` logger, so Optuna's format, its
verbosity (``optuna.logging.set_verbosity``) and its propagation switch
(``optuna.logging.enable_propagation``) apply to the package's messages too."""

from __future__ import annotations

import logging

import optuna


def get_logger(name: str) -> logging.Logger:
    """The logger ``optuna.<name>`` (e.g. ``get_logger(__name__)``)."""
    return optuna.logging.get_logger(f"optuna.{name}")
