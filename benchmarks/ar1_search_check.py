"""Search results of MFKDSampler with other AR1 fit options, on the tuning problems.

``benchmarks/tune_strategy.py`` with one addition: a variant's JSON may hold ``"fit"``, keyword
arguments of :func:`optuna_mfkd.gp.model.fit_ar1_model` that every fit of the sampler then
receives: ``restarts`` and any ``noise`` (MFKDSampler's own ``kernel=`` and
``deterministic_objective=True`` give the squared exponential and a noise of ``1e-6``); the
other keys are MFKDSampler's, as in ``tune_strategy.py``. Problems, metrics, ``runs.csv`` and
``summary.md`` are ``tune_strategy.py``'s::

    OMP_NUM_THREADS=1 python benchmarks/ar1_search_check.py --seeds 0-19 --jobs 2 \\
        --out benchmarks/results/ar1-accuracy/search \\
        --variant default='{}' --variant rbf-restarts='{"fit": {"kernel": "rbf", "restarts": 5}}'
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import tune_strategy  # noqa: E402  (beside this script)

_run_plain = tune_strategy._run


def _run(problem_id: str, variant: str, spec: str | dict, seed: int, table: str | None) -> dict:
    """``tune_strategy._run`` with ``spec["fit"]`` bound into the sampler's ``fit_ar1_model``."""
    from optuna_mfkd.gp import model as gp_model

    original = gp_model.fit_ar1_model
    if isinstance(spec, dict) and "fit" in spec:
        spec = dict(spec)
        gp_model.fit_ar1_model = functools.partial(original, **spec.pop("fit"))
    try:
        return _run_plain(problem_id, variant, spec, seed, table)
    finally:
        gp_model.fit_ar1_model = original


if __name__ == "__main__":
    tune_strategy._run = _run
    tune_strategy.main()
