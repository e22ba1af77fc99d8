"""The tutorial of docs/pruning.md: Optuna's pruning workflow on a scikit-learn network, first
with TPE + HyperbandPruner, then with MFKDSampler(steps=...) + MFKDPruner, both studies in one
SQLite file (open it with ``optuna-dashboard sqlite:///pruning-tutorial.db``).

    OMP_NUM_THREADS=1 python docs/examples/pruning_tutorial.py --trials 30 --figure docs/figures/pruning-intermediate.png
"""

from __future__ import annotations

import argparse
import warnings

import optuna
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

EPOCHS = 27
X, y = load_digits(return_X_y=True)
X_TRAIN, X_VALID, Y_TRAIN, Y_VALID = train_test_split(
    X / 16.0, y, test_size=0.3, random_state=0, stratify=y
)


def objective(trial: optuna.Trial) -> float:
    """Validation error of an MLP trained epoch by epoch; reported after every epoch."""
    model = MLPClassifier(
        hidden_layer_sizes=(trial.suggest_int("width", 8, 128, log=True),)
        * trial.suggest_int("depth", 1, 3),
        learning_rate_init=trial.suggest_float("learning_rate", 1e-4, 1e-1, log=True),
        alpha=trial.suggest_float("alpha", 1e-6, 1e-1, log=True),
        batch_size=trial.suggest_categorical("batch_size", [32, 64, 128, 256]),
        activation=trial.suggest_categorical("activation", ["relu", "tanh"]),
        random_state=trial.number,
    )
    error = 1.0
    for epoch in range(1, EPOCHS + 1):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.partial_fit(X_TRAIN, Y_TRAIN, classes=list(range(10)))
        error = 1.0 - model.score(X_VALID, Y_VALID)
        trial.report(error, epoch)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return error


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=30)
    p.add_argument("--storage", default="sqlite:///pruning-tutorial.db")
    p.add_argument(
        "--figure", default=None, help="write the MFKD study's intermediate values here (PNG)"
    )
    args = p.parse_args()

    # Optuna's own multi-fidelity workflow: TPE + Hyperband.
    hyperband = optuna.pruners.HyperbandPruner(
        min_resource=1, max_resource=EPOCHS, reduction_factor=3
    )
    tpe = optuna.create_study(
        study_name="tpe+hyperband",
        storage=args.storage,
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=0),
        pruner=hyperband,
    )
    tpe.optimize(objective, n_trials=args.trials)

    # The same objective, unchanged: the reported epochs 1, 3, 9 and 27 become the levels of the
    # co-kriging model, and MFKDPruner stops a run whose final error is unlikely to beat the best.
    from optuna_mfkd import MFKDPruner, MFKDSampler

    sampler = MFKDSampler(steps=[1, 3, 9, EPOCHS], seed=0)
    mfkd = optuna.create_study(
        study_name="mfkd+pruner",
        storage=args.storage,
        load_if_exists=True,
        sampler=sampler,
        pruner=MFKDPruner(sampler),
    )
    mfkd.optimize(objective, n_trials=args.trials)

    for study in (tpe, mfkd):
        states = [t.state.name for t in study.trials]
        epochs = sum(max(t.intermediate_values, default=0) for t in study.trials)
        print(
            f"{study.study_name}: best validation error {study.best_value:.4f}, {states.count('PRUNED')} of "
            f"{len(states)} trials pruned, {epochs} epochs trained"
        )
    why = [t.user_attrs["pruned_by"] for t in mfkd.trials if "pruned_by" in t.user_attrs]
    if why:
        print("e.g.", why[0])
    if args.figure:
        import matplotlib

        matplotlib.use("Agg")
        from optuna.visualization.matplotlib import plot_intermediate_values

        ax = plot_intermediate_values(mfkd)
        ax.set_yscale("log")
        ax.set_title("mfkd+pruner: validation error per epoch (pruned runs end early)", fontsize=10)
        ax.get_legend().remove()
        ax.figure.set_size_inches(7, 4.5)
        ax.figure.tight_layout()
        ax.figure.savefig(args.figure, dpi=110)


if __name__ == "__main__":
    main()
