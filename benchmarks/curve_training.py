"""Two real-training learning-curve problems, trained epoch by epoch on one CPU thread.

Each problem is a grid of configurations (:data:`SPACES`: Optuna distributions whose every
value is a grid point) and a trainer, :func:`train`, that yields ``(value, seconds)`` after
every epoch: the validation error ``1 - accuracy`` and the seconds of that epoch's training
(CPU seconds of the process, ``time.process_time``, so that other jobs on a shared machine do
not inflate them; the validation pass is not timed). A configuration trains from a seed derived from its
parameters (:func:`config_seed`), on a fixed data split, so the same configuration yields the
same values every time.

``mlp-digits``: scikit-learn's ``MLPClassifier`` (``partial_fit``, one pass over the training
set per call) on ``load_digits`` (pixels / 16; 70 / 30 stratified split, ``random_state=0``).
The network's ``random_state`` is a ``numpy.random.RandomState(seed)`` held by the model, so
the weights' initialisation and every epoch's shuffle come from that one stream.

``torch-mlp``: a PyTorch MLP (Linear, ReLU, Dropout per hidden layer) on
``make_classification`` (3,000 samples, 20 features of which 6 informative and 4 redundant,
4 classes, 3 clusters per class, ``class_sep=0.8``, ``flip_y=0.05``, ``random_state=0``;
2,000 / 1,000 stratified split, standardised with the training set's mean and deviation).
Each run keeps its own torch RNG state (initialisation, dropout) and its own shuffling
generator, so runs of different configurations can interleave without changing each other.

Hyperparameters spanning orders of magnitude are integer exponents (``*_log10``,
``*_log2``) so that every grid point is an ``IntDistribution`` value.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution

EPOCHS = 27
PROBLEMS = ("mlp-digits", "torch-mlp")

SPACES: dict[str, dict[str, BaseDistribution]] = {
    "mlp-digits": {
        "learning_rate_init_log10": IntDistribution(-4, -1),
        "hidden_units_log2": IntDistribution(4, 6),
        "depth": IntDistribution(1, 2),
        "alpha_log10": IntDistribution(-5, -1, step=2),
        "batch_size_log2": IntDistribution(6, 8, step=2),
        "activation": CategoricalDistribution(("relu", "tanh")),
        "solver": CategoricalDistribution(("adam", "sgd")),
    },
    "torch-mlp": {
        "optimizer": CategoricalDistribution(("adam", "sgd")),
        "learning_rate_log10": IntDistribution(-4, -1),
        "width_log2": IntDistribution(4, 6),
        "depth": IntDistribution(1, 3, step=2),
        "dropout_percent": IntDistribution(0, 40, step=40),
        "weight_decay_log10": IntDistribution(-5, -3, step=2),
        "batch_size_log2": IntDistribution(6, 8),
    },
}


def grid_values(dist: BaseDistribution) -> tuple[Any, ...]:
    """Every value of a grid distribution (an ``IntDistribution``'s steps or the choices)."""
    if isinstance(dist, IntDistribution):
        return tuple(range(dist.low, dist.high + 1, dist.step))
    if isinstance(dist, CategoricalDistribution):
        return tuple(dist.choices)
    raise TypeError(f"{type(dist).__name__} is not a grid distribution")


def grid(name: str) -> Iterator[dict[str, Any]]:
    """Every configuration of problem ``name``, the last parameter varying fastest."""
    space = SPACES[name]
    for values in itertools.product(*(grid_values(d) for d in space.values())):
        yield dict(zip(space, values))


def config_seed(params: Mapping[str, Any]) -> int:
    """A seed in ``[0, 2**31)`` from the SHA-256 of the parameters as sorted JSON."""
    text = json.dumps({k: params[k] for k in sorted(params)}, sort_keys=True)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") >> 1


@cache
def _digits() -> tuple[np.ndarray, ...]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    return tuple(train_test_split(x / 16.0, y, test_size=0.3, stratify=y, random_state=0))


@cache
def _classification() -> tuple[np.ndarray, ...]:
    from sklearn.datasets import make_classification
    from sklearn.model_selection import train_test_split

    x, y = make_classification(
        n_samples=2500,
        n_features=20,
        n_informative=8,
        n_redundant=4,
        n_classes=4,
        n_clusters_per_class=2,
        class_sep=1.0,
        flip_y=0.03,
        random_state=0,
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=1000, stratify=y, random_state=0
    )
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    return (x_train - mean) / std, (x_val - mean) / std, y_train, y_val


def _train_mlp_digits(params: Mapping[str, Any], epochs: int) -> Iterator[tuple[float, float]]:
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    x_train, x_val, y_train, y_val = _digits()
    model = MLPClassifier(
        hidden_layer_sizes=(2 ** params["hidden_units_log2"],) * params["depth"],
        activation=params["activation"],
        solver=params["solver"],
        alpha=10.0 ** params["alpha_log10"],
        batch_size=2 ** params["batch_size_log2"],
        learning_rate_init=10.0 ** params["learning_rate_init_log10"],
        random_state=np.random.RandomState(config_seed(params)),
    )
    classes = np.unique(y_train)
    for _ in range(epochs):
        start = time.process_time()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.partial_fit(x_train, y_train, classes=classes)
        seconds = time.process_time() - start
        yield int((model.predict(x_val) != y_val).sum()) / len(y_val), seconds


def _train_torch_mlp(params: Mapping[str, Any], epochs: int) -> Iterator[tuple[float, float]]:
    import torch
    from torch import nn

    x_train, x_val, y_train, y_val = (
        torch.as_tensor(a, dtype=torch.float32 if a.dtype.kind == "f" else torch.int64)
        for a in _classification()
    )
    seed = config_seed(params)
    width, dropout = 2 ** params["width_log2"], params["dropout_percent"] / 100.0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layers: list[nn.Module] = []
        fan_in = x_train.shape[1]
        for _ in range(params["depth"]):
            layers += [nn.Linear(fan_in, width), nn.ReLU(), nn.Dropout(dropout)]
            fan_in = width
        model = nn.Sequential(*layers, nn.Linear(fan_in, int(y_train.max()) + 1))
        rng_state = torch.get_rng_state()
    lr, weight_decay = 10.0 ** params["learning_rate_log10"], 10.0 ** params["weight_decay_log10"]
    if params["optimizer"] == "adam":
        optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    else:
        optimizer = torch.optim.SGD(
            model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay
        )
    shuffle = torch.Generator().manual_seed(seed)
    batch_size = 2 ** params["batch_size_log2"]
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(epochs):
        start = time.process_time()
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(rng_state)
            model.train()
            order = torch.randperm(len(x_train), generator=shuffle)
            for i in range(0, len(order), batch_size):
                batch = order[i : i + batch_size]
                optimizer.zero_grad()
                loss_fn(model(x_train[batch]), y_train[batch]).backward()
                optimizer.step()
            rng_state = torch.get_rng_state()
        seconds = time.process_time() - start
        model.eval()
        with torch.no_grad():
            wrong = int((model(x_val).argmax(dim=1) != y_val).sum())
        yield wrong / len(y_val), seconds


def train(
    name: str, params: Mapping[str, Any], epochs: int = EPOCHS
) -> Iterator[tuple[float, float]]:
    """Train ``params`` of problem ``name``: ``(validation error, training seconds)`` per epoch."""
    if name == "mlp-digits":
        return _train_mlp_digits(params, epochs)
    if name == "torch-mlp":
        return _train_torch_mlp(params, epochs)
    raise ValueError(f"unknown curve problem {name!r}; expected one of {PROBLEMS}")


@contextmanager
def single_thread(name: str) -> Iterator[None]:
    """Within the block, the BLAS libraries (and torch, for ``torch-mlp``) run on one thread,
    as the tables were built; the previous settings come back after it."""
    from threadpoolctl import threadpool_limits

    torch = None
    if name == "torch-mlp":
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        if torch is not None:
            torch.set_num_threads(before)
