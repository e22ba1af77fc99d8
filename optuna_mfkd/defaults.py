"""The search settings of MF-KD, named once: the paper's values and the command line's.

The paper (Algorithm 1 on NAS-Bench-201) uses E1 = 1, E2 = 12, n1 = 100, n2 = 20, N = 5000,
beta = 1 and a budget of T = 12,000 s. The sampler, the benchmark methods and protocols use
these values; the ``optuna-mfkd search`` command starts from smaller warm-ups
(``CLI_*``) so that a first tabular search ends in seconds on a laptop. Every option that
takes one of these values names the constant instead of repeating the number.

Training-recipe defaults (learning rate, batch size, loss weights) live with the trainer
(:class:`optuna_mfkd.training.trainer.TrainConfig`). This module imports nothing.
"""

from __future__ import annotations

#: Epochs of the low fidelity, trained with a distillation loss (E1).
LOW_EPOCHS = 1
#: Epochs of the high fidelity, trained with cross-entropy: NB201's 12-epoch schedule (E2).
HIGH_EPOCHS = 12
#: Random warm-up evaluations at the cheaper levels (n1).
N_WARMUP_LOW = 100
#: Random warm-up evaluations at the highest level (n2); also the warm-up of single-level GP-UCB.
N_WARMUP_HIGH = 20
#: Random candidate architectures scored per search step (N).
N_CANDIDATES = 5000
#: Weight of the posterior variance in the UCB score (beta).
UCB_BETA = 1.0
#: MFKDSampler keyword arguments that make it the paper's Algorithm 1 (with the paper's
#: warm-up): every trial after the warm-up at the highest level, UCB on the variance with beta = 1 over N random candidates, one length scale per
#: level, mean/std standardisation, a full refit every 3 observations.
PAPER_SAMPLER_SETTINGS = {
    "strategy": "paper",
    "acquisition": "ucb",
    "beta": UCB_BETA,
    "n_candidates": N_CANDIDATES,
    "ard": False,
    "robust": False,
    "refit_every": 3,
}
#: MFKDSampler's level-choice strategy by default (of :data:`STRATEGIES`), chosen on the
#: tuning problems: ``"mf-mes"`` (the level by MF-MES's information per unit cost) is ahead of
#: ``"cost-aware"`` (MF-GP-UCB's threshold) on AugmentedHartmann and identical on NB201
#: CIFAR-10 (``benchmarks/results/tune-level-choice/``, ``tune-strategy/``).
DEFAULT_STRATEGY = "mf-mes"
#: The strategies MFKDSampler knows.
STRATEGIES = ("paper", "cost-aware", "mf-mes")
#: Search budget in (simulated) seconds of NAS-Bench-201's and the paper's protocol (T).
NB201_BUDGET = 12_000.0

#: ``optuna-mfkd search`` defaults: low- and high-fidelity warm-ups and the budget of a
#: two-level tabular search (12- and 200-epoch table values).
CLI_N_WARMUP_LOW = N_WARMUP_LOW
CLI_N_WARMUP_HIGH = 10
CLI_BUDGET = 200_000.0
