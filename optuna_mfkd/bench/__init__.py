"""Side-by-side benchmarks of Optuna samplers on NAS-Bench-201 (simulated searches).

- :mod:`~optuna_mfkd.bench.evolution`: regularised evolution as an Optuna sampler.
- :mod:`~optuna_mfkd.bench.methods`: the method registry (sampler + pruner per name).
- :mod:`~optuna_mfkd.bench.protocols`: what a run searches, what it costs, its budget.
- :mod:`~optuna_mfkd.bench.harness`: runs studies into one storage (resumable, parallel).
- :mod:`~optuna_mfkd.bench.report`: tables, Mann-Whitney U + Holm, anytime curves.

The command line exposes them as ``optuna-mfkd benchmark`` and ``optuna-mfkd report``.
"""
