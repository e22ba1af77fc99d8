"""Which model drives the top level's acquisition: the AR1 co-kriging model or a GP of the
top level's observations alone, by leave-one-out predictive density.

The AR1 model ``y_top = rho y_low + delta`` carries the cheaper levels' shape to the top
level; where the cheaper levels mislead locally (their optimum shifted against the top
level's, or a parameter whose effect changes sign between levels), the discrepancy ``delta``
is fitted smooth and small, the top level's posterior is confidently wrong near the cheap
optimum, and the acquisition keeps evaluating the top level there. A GP of the top level
alone (the model of Optuna's ``GPSampler``) does not inherit that error.

The check compares the two models on what both claim to predict, the top level's
observations, by their mean leave-one-out log predictive density (Rasmussen & Williams,
section 5.4.2), each with its own fitted hyperparameters
(:meth:`~optuna_mfkd.gp.model.FittedModel.loo_log_density`):

    use the top-level GP  iff  mean_i log p_single(y_i | y_-i) > mean_i log p_AR1(y_i | y_-i),

over the top-level observations ``i``, once there are at least :data:`MIN_TOP_POINTS` of
them. When the top-level GP wins, its acquisition's maximiser is the next point; the level
to evaluate it at is still chosen on the AR1 model (a cheap evaluation there still informs
the AR1 model, and costs little). Pure functions; the caller fits both models.
"""

from __future__ import annotations

from optuna_mfkd.gp.model import FittedModel

#: Top-level observations needed before the top-level GP is considered (with fewer, its
#: leave-one-out predictions are mostly the prior's).
MIN_TOP_POINTS = 5


def loo_scores(joint: FittedModel, single: FittedModel) -> tuple[float, float]:
    """Mean leave-one-out log predictive density of the top level's observations under the
    AR1 model ``joint`` (its top level) and the one-level model ``single`` (fitted to the
    same top-level observations), in observation units."""
    top = joint.num_levels - 1
    return float(joint.loo_log_density(top).mean()), float(single.loo_log_density(0).mean())


def prefer_single(joint: FittedModel, single: FittedModel) -> bool:
    """Whether the top-level GP predicts the top level's observations better than the AR1
    model (see the module docstring); ``False`` below :data:`MIN_TOP_POINTS` observations."""
    n_top = int((single.model.train_inputs[0][:, -1] == 0).sum())
    if n_top < MIN_TOP_POINTS:
        return False
    joint_score, single_score = loo_scores(joint, single)
    return single_score > joint_score
