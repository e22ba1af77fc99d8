"""Side-by-side benchmarks of Optuna samplers: NAS-Bench-201 (simulated searches) and BoTorch's
synthetic test functions. The reusable machinery; the repository's experiment settings (which
problems and methods a published report covers, its prose and quoted figures) live in
``benchmarks/`` and are given to these modules as arguments.

- :mod:`~optuna_mfkd.bench.methods`: the method registry (sampler + pruner per name, and
  what each needs from a protocol).
- :mod:`~optuna_mfkd.bench.evolution`: regularised evolution as an Optuna sampler;
  :mod:`~optuna_mfkd.bench.peers`: other libraries' multi-fidelity optimisers.
- :mod:`~optuna_mfkd.bench.problems`: what the harness runs (objective, levels, costs, budget, metric).
- :mod:`~optuna_mfkd.bench.protocols`: NAS-Bench-201 protocols (one problem per dataset);
  :mod:`~optuna_mfkd.bench.lowfi`: their pool or live low fidelity.
- :mod:`~optuna_mfkd.bench.synthetic`: BoTorch test functions as problems (log10 simple regret);
  :mod:`~optuna_mfkd.bench.structured`: single-level problems with constraints, a conditional
  space or an ordinal grid.
- :mod:`~optuna_mfkd.bench.catalog`: every problem by id (``nb201/cifar10``, ``branin/1-level``, ...).
- :mod:`~optuna_mfkd.bench.runs`: run names, stored attributes, seeds, old method names.
- :mod:`~optuna_mfkd.bench.harness`: runs studies into one storage (resumable, parallel);
  :mod:`~optuna_mfkd.bench.bulk_copy`: the one-transaction copy of a finished study.
- :mod:`~optuna_mfkd.bench.records`: finished runs kept in a small file.
- :mod:`~optuna_mfkd.bench.incumbent`, :mod:`~optuna_mfkd.bench.results`: incumbent curves
  and the runs a report reads; :mod:`~optuna_mfkd.bench.statistics`: Mann-Whitney U + Holm;
  :mod:`~optuna_mfkd.bench.plots`: anytime curves; :mod:`~optuna_mfkd.bench.report`: the report.

The command line is ``optuna-mfkd benchmark`` and ``optuna-mfkd report``
(:mod:`optuna_mfkd.cli.benchmark`, :mod:`optuna_mfkd.cli.report`); the scripts in
``benchmarks/`` call the same functions.
"""
