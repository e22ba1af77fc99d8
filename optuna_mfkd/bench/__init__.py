"""Side-by-side benchmarks of Optuna samplers: NAS-Bench-201 (simulated searches) and BoTorch's
synthetic test functions.

- :mod:`~optuna_mfkd.bench.evolution`: regularised evolution as an Optuna sampler.
- :mod:`~optuna_mfkd.bench.methods`: the method registries (sampler + pruner per name).
- :mod:`~optuna_mfkd.bench.problems`: what the harness runs (objective, levels, costs, budget, metric).
- :mod:`~optuna_mfkd.bench.protocols`: NAS-Bench-201 protocols (one problem per dataset).
- :mod:`~optuna_mfkd.bench.synthetic`: BoTorch test functions as problems (log10 simple regret).
- :mod:`~optuna_mfkd.bench.harness`: runs studies into one storage (resumable, parallel).
- :mod:`~optuna_mfkd.bench.report`: tables, Mann-Whitney U + Holm, anytime curves.
- :mod:`~optuna_mfkd.bench.suite`: the sampler suite, every problem and method side by side.

The command line exposes them as ``optuna-mfkd benchmark`` and ``optuna-mfkd report``, and
``benchmarks/sampler_suite.py``.
"""
