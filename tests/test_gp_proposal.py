"""The acquisition optimiser and the exhaustive path of :mod:`optuna_mfkd.gp.proposal`."""

from __future__ import annotations

import numpy as np
import torch
from botorch.acquisition import AcquisitionFunction
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from optuna_mfkd.gp.encoding import SearchSpaceEncoder
from optuna_mfkd.gp.proposal import best_of_candidates, optimise, unique_representatives


class FixedAcquisition(AcquisitionFunction):
    """A known function of the features, maximal at ``target`` (features of one point)."""

    def __init__(self, target: torch.Tensor, cat_cols: list[int]) -> None:
        super().__init__(model=None)
        self.target = target
        self.cat_cols = cat_cols

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        x = X[..., 0, :]
        num = [j for j in range(x.shape[-1]) if j not in self.cat_cols]
        value = -((x[..., num] - self.target[num]) ** 2).sum(-1)
        for j in self.cat_cols:
            value = value + 0.5 * (x[..., j].round() == self.target[j]).to(x.dtype)
        return value


def _space():
    return {
        "lr": FloatDistribution(1e-4, 1.0, log=True),
        "width": IntDistribution(8, 64, step=8),
        "depth": IntDistribution(1, 500),
        "drop": FloatDistribution(0.0, 0.5, step=0.05),
        "act": CategoricalDistribution(["relu", "gelu", "tanh"]),
        "u": FloatDistribution(-2.0, 2.0),
    }


def test_optimiser_finds_the_known_optimum_on_a_mixed_space():
    space = _space()
    encoder = SearchSpaceEncoder(space)
    best_params = {"lr": 0.01, "width": 40, "depth": 123, "drop": 0.35, "act": "tanh", "u": 0.7}
    target = encoder.encode(encoder.to_internal(best_params)[None])[0]
    acqf = FixedAcquisition(target, encoder.cat_dims and list(encoder.cat_dims))
    for seed in range(3):
        row = optimise(acqf, encoder, torch.zeros(0, len(space), dtype=torch.float64),
                       np.random.default_rng(seed), set(), lambda r: encoder.point_ids(r).tolist())
        params = encoder.to_params(row)
        assert params["act"] == "tanh" and params["width"] == 40 and params["drop"] == 0.35
        assert abs(params["depth"] - 123) <= 1
        assert abs(np.log(params["lr"]) - np.log(0.01)) < 0.05 and abs(params["u"] - 0.7) < 0.02
        for name, dist in space.items():  # every value is a legal value of its distribution
            assert dist._contains(dist.to_internal_repr(params[name])), (name, params[name])


def test_optimiser_never_returns_an_excluded_point():
    space = {"a": CategoricalDistribution(["x", "y", "z"]), "b": IntDistribution(0, 3)}
    encoder = SearchSpaceEncoder(space)
    best = encoder.to_internal({"a": "y", "b": 2})
    acqf = FixedAcquisition(encoder.encode(best[None])[0], [0])
    key = lambda r: encoder.point_ids(r).tolist()  # noqa: E731
    excluded = set(key(best[None]))
    row = optimise(acqf, encoder, encoder.encode(best[None]), np.random.default_rng(0), excluded, key)
    assert key(row[None])[0] not in excluded


def test_exhaustive_choice_skips_taken_points_and_breaks_ties_at_random():
    feats = torch.tensor([[0.0], [1.0], [1.0], [1.0], [0.5]], dtype=torch.float64)
    acqf = FixedAcquisition(torch.tensor([1.0], dtype=torch.float64), [])
    free = np.array([True, False, True, True, True])
    picks = {best_of_candidates(acqf, feats, free, np.random.default_rng(s)) for s in range(20)}
    assert picks == {2, 3}  # the taken maximum (1) is never chosen; both free ties are
    assert best_of_candidates(acqf, feats, np.array([True, False, False, False, True]),
                              np.random.default_rng(0)) == 4


def test_unique_representatives_keep_the_first_of_each_key():
    assert unique_representatives(["a", "b", "a", "c", "b"]).tolist() == [0, 1, 3]


def test_closed_form_search_equals_botorchs_optimize_acqf_from_the_same_starts():
    """On the top level of fitted AR1 models (1 and 2 levels, both kernels, with a constraint),
    the closed-form L-BFGS-B search reaches the point and value of BoTorch's ``optimize_acqf``
    (autograd through the same acquisition) from the same starts."""
    from botorch.optim import optimize_acqf

    from optuna_mfkd.gp.acquisition import build_acquisition
    from optuna_mfkd.gp.model import fit_ar1_model
    from optuna_mfkd.gp.proposal import _continuous_starts, _lbfgsb_closed_form

    gen = torch.Generator().manual_seed(3)
    d = 5
    bounds = torch.stack([torch.zeros(d, dtype=torch.float64), torch.ones(d, dtype=torch.float64)])
    for num_levels, kernel in ((1, "matern52"), (2, "matern52"), (2, "rbf")):
        X = torch.rand(24, d, generator=gen, dtype=torch.float64)
        levels = torch.arange(24) % num_levels
        y = -((X - 0.35) ** 2).sum(-1) + 0.2 * torch.sin(7 * X[:, 0]) + 0.1 * levels
        fitted = fit_ar1_model(X, levels, y, num_levels, kernel=kernel)
        constraints = []
        if kernel == "rbf":  # and a constraint sum(x) <= 2.2 modelled as -c
            c_model = fit_ar1_model(X, levels, 2.2 - X.sum(-1), num_levels, kernel=kernel)
            zero = c_model.standardisation.apply(torch.zeros(1, dtype=torch.float64), torch.tensor([num_levels - 1]))
            constraints = [(c_model, float(zero[0]))]
        acqf = build_acquisition("logei", fitted, constraints=constraints)
        assert acqf.closed_form
        torch.manual_seed(0)
        starts = _continuous_starts(acqf, bounds, X[:3], 256, 6)
        got = _lbfgsb_closed_form(acqf, bounds, starts)
        want, _ = optimize_acqf(acqf, bounds=bounds, q=1, num_restarts=len(starts),
                                batch_initial_conditions=starts.unsqueeze(-2))
        with torch.no_grad():
            v_got, v_want = float(acqf(got.unsqueeze(0))), float(acqf(want.reshape(1, 1, d)))
        assert abs(v_got - v_want) <= 1e-7 * (1 + abs(v_want))
        torch.testing.assert_close(got.reshape(-1), want.reshape(-1), atol=1e-6, rtol=0)


def test_mixed_closed_form_search_equals_botorchs_alternating_optimiser():
    """The mixed search with closed-form continuous steps returns the point of BoTorch's
    ``optimize_acqf_mixed_alternating`` (same settings, same random starts): numerical,
    categorical, a stepped integer searched by neighbours and one relaxed (> 20 values)."""
    from botorch.optim.optimize_mixed import optimize_acqf_mixed_alternating

    from optuna_mfkd.gp.acquisition import build_acquisition
    from optuna_mfkd.gp.model import fit_ar1_model
    from optuna_mfkd.gp.proposal import MIXED_OPTIONS, _mixed_closed_form

    space = {
        "lr": FloatDistribution(1e-4, 1e-1, log=True),
        "x": FloatDistribution(0.0, 1.0),
        "units": IntDistribution(0, 64, step=4),
        "layers": IntDistribution(1, 40),
        "kind": CategoricalDistribution(["a", "b", "c"]),
    }
    enc = SearchSpaceEncoder(space)
    rng = np.random.default_rng(0)
    for num_levels in (1, 2):
        rows = enc.sample(30, rng)
        X = enc.encode(rows)
        levels = torch.arange(30) % num_levels
        y = -((X[:, :4] - 0.4) ** 2).sum(-1) + 0.3 * (X[:, 4] == 1) + 0.1 * levels
        fitted = fit_ar1_model(X, levels, y, num_levels, cat_dims=enc.cat_dims)
        acqf = build_acquisition("logei", fitted)
        acqf.X_baseline = X[:5]
        bounds, discrete, cat = enc.feature_bounds(), enc.discrete_values(), enc.cat_values()
        assert discrete and cat
        torch.manual_seed(1)
        got = _mixed_closed_form(acqf, bounds, discrete, cat, 256, 6, 20)
        torch.manual_seed(1)
        want, _ = optimize_acqf_mixed_alternating(
            acqf, bounds=bounds, discrete_dims=discrete, cat_dims=cat, raw_samples=256, num_restarts=6,
            options={"max_discrete_values": 20, "num_spray_points": 64, **MIXED_OPTIONS},
        )
        torch.testing.assert_close(got.reshape(-1), want.reshape(-1), atol=1e-6, rtol=0)
