"""A reference AR1 co-kriging model written from the formulas, and two-level test functions.

Independent of ``optuna_mfkd``: plain torch (for gradients) and SciPy's L-BFGS-B.

Model (Kennedy & O'Hagan 2000; Le Gratiet 2013), two levels, inputs in ``[0, 1]^d``:

    y_0(x) = m_0 + delta_0(x),             delta_0 ~ GP(0, s_0^2 k(x, x'; l_0))
    y_1(x) = rho * y_0(x) + m_1 + delta_1(x),  delta_1 ~ GP(0, s_1^2 k(x, x'; l_1))

with the ARD squared-exponential kernel ``k(x, x'; l) = exp(-1/2 sum_j (x_j - x'_j)^2 / l_j^2)``.
For rows ``(x, a)`` and ``(x', b)`` (``a, b`` the levels) the joint covariance is

    cov = rho^{a + b} s_0^2 k(x, x'; l_0) + [a = b = 1] s_1^2 k(x, x'; l_1)

(valid for nested and non-nested designs), plus a fixed nugget ``tau^2`` on the diagonal
(deterministic functions). Each level's observations are first standardised by their own mean
and standard deviation (an affine map per level, which the free ``rho``, means and variances
absorb, so the maximum-likelihood predictor does not depend on it except through the nugget).
The constant means enter through ``E y = H b`` with ``H`` the level indicators (``b_0 = m_0``,
``b_1 = rho m_0 + m_1``) and are profiled out by generalised least squares,
``b(theta) = (H^T K^{-1} H)^{-1} H^T K^{-1} z``. The ``2d + 3`` covariance hyperparameters
``theta = (log l_0, log s_0^2, log l_1, log s_1^2, rho)`` maximise the profile log likelihood

    log p(z | theta) = -1/2 r^T K^{-1} r - 1/2 log |K| - n/2 log 2 pi,   r = z - H b(theta)

by L-BFGS-B (gradients by torch autograd) from ``restarts`` starts (the first a fixed default,
the others random); the best optimum is kept. The top level's predictive mean at ``x*`` is

    mu(x*) = b_1 + k_*^T K^{-1} r,   k_* = cov((x*, 1), training rows).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import minimize

Array = np.ndarray


# --------------------------------------------------------------------------------------------
# Two-level test functions (inputs in [0, 1]^d, mapped to each function's domain inside).


def forrester(u: Array) -> tuple[Array, Array]:
    """Forrester et al. (2007), 1-D: ``f_h = (6x - 2)^2 sin(12x - 4)``,
    ``f_l = 0.5 f_h + 10 (x - 0.5) - 5``."""
    x = u[:, 0]
    hi = (6 * x - 2) ** 2 * np.sin(12 * x - 4)
    return 0.5 * hi + 10 * (x - 0.5) - 5, hi


def _currin_high(x1: Array, x2: Array) -> Array:
    x2 = np.maximum(x2, 1e-12)
    poly = (2300 * x1**3 + 1900 * x1**2 + 2092 * x1 + 60) / (
        100 * x1**3 + 500 * x1**2 + 4 * x1 + 20
    )
    return (1 - np.exp(-1 / (2 * x2))) * poly


def currin(u: Array) -> tuple[Array, Array]:
    """Currin et al. (1991) exponential, 2-D, with Xiong et al.'s (2013) low fidelity: the mean
    of ``f_h`` at the four points ``(x_1 +- 0.05, x_2 + 0.05)``, ``(x_1 +- 0.05, max(0, x_2 - 0.05))``."""
    x1, x2 = u[:, 0], u[:, 1]
    hi = _currin_high(x1, x2)
    lo = 0.25 * (
        _currin_high(x1 + 0.05, x2 + 0.05)
        + _currin_high(x1 + 0.05, np.maximum(0, x2 - 0.05))
        + _currin_high(x1 - 0.05, x2 + 0.05)
        + _currin_high(x1 - 0.05, np.maximum(0, x2 - 0.05))
    )
    return lo, hi


_H3_A = np.array([[3.0, 10, 30], [0.1, 10, 35], [3.0, 10, 30], [0.1, 10, 35]])
_H3_P = 1e-4 * np.array(
    [[3689, 1170, 2673], [4699, 4387, 7470], [1091, 8732, 5547], [381, 5743, 8828]]
)
_H6_A = np.array(
    [
        [10, 3, 17, 3.5, 1.7, 8],
        [0.05, 10, 17, 0.1, 8, 14],
        [3, 3.5, 1.7, 10, 17, 8],
        [17, 8, 0.05, 10, 0.1, 14],
    ]
)
_H6_P = 1e-4 * np.array(
    [
        [1312, 1696, 5569, 124, 8283, 5886],
        [2329, 4135, 8307, 3736, 1004, 9991],
        [2348, 1451, 3522, 2883, 3047, 6650],
        [4047, 8828, 8732, 5743, 1091, 381],
    ]
)
_H_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
#: The low level's shift of ``alpha`` (Emukit's multi-fidelity Hartmann: ``alpha + 2 delta``
#: for its cheapest of three levels).
_H_DELTA = np.array([0.01, -0.01, -0.1, 0.1])


def _hartmann(u: Array, A: Array, P: Array, alpha: Array) -> Array:
    return -np.sum(alpha * np.exp(-np.sum(A * (u[:, None, :] - P) ** 2, axis=-1)), axis=-1)


def hartmann3(u: Array) -> tuple[Array, Array]:
    """Hartmann-3 with the low level's ``alpha + 2 delta`` (Emukit's multi-fidelity Hartmann)."""
    return _hartmann(u, _H3_A, _H3_P, _H_ALPHA + 2 * _H_DELTA), _hartmann(u, _H3_A, _H3_P, _H_ALPHA)


def park(u: Array) -> tuple[Array, Array]:
    """Park (1991) 4-D with Xiong et al.'s (2013) low fidelity
    ``f_l = (1 + sin(x_1) / 10) f_h - 2 x_1 + x_2^2 + x_3^2 + 0.5``; ``x_1 in [0.05, 1]``."""
    x1 = 0.05 + 0.95 * u[:, 0]
    x2, x3, x4 = u[:, 1], u[:, 2], u[:, 3]
    hi = x1 / 2 * (np.sqrt(1 + (x2 + x3**2) * x4 / x1**2) - 1) + (x1 + 3 * x4) * np.exp(
        1 + np.sin(x3)
    )
    return (1 + np.sin(x1) / 10) * hi - 2 * x1 + x2**2 + x3**2 + 0.5, hi


def hartmann6(u: Array) -> tuple[Array, Array]:
    """Hartmann-6 with the low level's ``alpha + 2 delta`` (as :func:`hartmann3`)."""
    return _hartmann(u, _H6_A, _H6_P, _H_ALPHA + 2 * _H_DELTA), _hartmann(u, _H6_A, _H6_P, _H_ALPHA)


_BOREHOLE_LO = np.array([0.05, 100, 63070, 990, 63.1, 700, 1120, 9855])
_BOREHOLE_HI = np.array([0.15, 50000, 115600, 1110, 116, 820, 1680, 12045])


def borehole(u: Array) -> tuple[Array, Array]:
    """Borehole, 8-D (Xiong et al. 2013): ``f_h = 2 pi T_u (H_u - H_l) / (ln(r/r_w) (1 + 2 L T_u
    / (ln(r/r_w) r_w^2 K_w) + T_u/T_l))``; ``f_l`` has ``5`` for ``2 pi`` and ``1.5`` for ``1``."""
    rw, r, tu, hu, tl, hl, L, kw = (_BOREHOLE_LO + u * (_BOREHOLE_HI - _BOREHOLE_LO)).T
    lg = np.log(r / rw)

    def f(num: float, one: float) -> Array:
        return num * tu * (hu - hl) / (lg * (one + 2 * L * tu / (lg * rw**2 * kw) + tu / tl))

    return f(5.0, 1.5), f(2 * math.pi, 1.0)


#: name -> (function, dimension).
FUNCTIONS: dict[str, tuple[Callable[[Array], tuple[Array, Array]], int]] = {
    "forrester-1d": (forrester, 1),
    "currin-2d": (currin, 2),
    "hartmann-3d": (hartmann3, 3),
    "park-4d": (park, 4),
    "borehole-8d": (borehole, 8),
}


@dataclass(frozen=True)
class Design:
    """Training and test data of one two-level design (inputs in ``[0, 1]^d``)."""

    x_low: Array
    y_low: Array
    x_high: Array
    y_high: Array
    x_test: Array
    y_test: Array


def make_design(name: str, seed: int, n_test: int = 1000) -> Design:
    """``10 d + 10`` uniformly random low points; the ``3 d + 4`` high points a random subset of
    them (a nested design); ``n_test`` uniformly random test points; all from ``seed``."""
    fn, d = FUNCTIONS[name]
    rng = np.random.default_rng(seed)
    x_low = rng.random((10 * d + 10, d))
    x_high = x_low[rng.choice(len(x_low), 3 * d + 4, replace=False)]
    x_test = rng.random((n_test, d))
    return Design(x_low, fn(x_low)[0], x_high, fn(x_high)[1], x_test, fn(x_test)[1])


def nrmse(pred: Array, truth: Array) -> float:
    """``sqrt(mean((pred - truth)^2)) / sd(truth)``."""
    return float(np.sqrt(np.mean((pred - truth) ** 2)) / np.std(truth))


# --------------------------------------------------------------------------------------------
# The reference model.


def _lbfgsb(value_grad, t0: Array, bounds: list[tuple[float, float]]):
    """One L-BFGS-B run of ``value_grad`` (value and gradient) from ``t0`` within ``bounds``."""
    return minimize(
        value_grad, t0, jac=True, method="L-BFGS-B", bounds=bounds, options={"maxiter": 1000}
    )


def _better(best, res):
    """``res`` if it is finite and lower than ``best`` (or ``best`` is ``None``), else ``best``."""
    return res if np.isfinite(res.fun) and (best is None or res.fun < best.fun) else best


def _sqexp(a: torch.Tensor, b: torch.Tensor, ls: torch.Tensor) -> torch.Tensor:
    d2 = (((a[:, None, :] - b[None, :, :]) / ls) ** 2).sum(-1)
    return torch.exp(-0.5 * d2)


@dataclass
class ReferenceAR1:
    """Maximum-likelihood two-level AR1 with ARD squared-exponential kernels (see the module).

    Args:
        nugget: fixed ``tau^2`` added to the diagonal (standardised units).
        restarts: L-BFGS-B starts; the first at ``l = 0.3 sqrt(d)``, ``s_0^2 = 1``,
            ``s_1^2 = 0.1``, ``m = 0`` and ``rho`` the least-squares slope of the standardised
            high observations on the low ones at the same (or, in a design that is not nested,
            the nearest) low point; the others with ``log10 l ~ U(-1, 1)``,
            ``log10 s_0^2 ~ U(-1, 1)``, ``log10 s_1^2 ~ U(-2, 1)``, ``rho ~ U(-3, 3)``.
        seed: seed of the random starts.
    """

    nugget: float = 1e-6
    restarts: int = 5
    seed: int = 0

    def _unpack(self, theta: torch.Tensor, d: int) -> tuple[torch.Tensor, ...]:
        l0, v0 = theta[:d].exp(), theta[d].exp()
        l1, v1 = theta[d + 1 : 2 * d + 1].exp(), theta[2 * d + 1].exp()
        return l0, v0, l1, v1, theta[2 * d + 2]

    def _cov(self, theta: torch.Tensor, xa, la, xb, lb) -> torch.Tensor:
        l0, v0, l1, v1, rho = self._unpack(theta, xa.shape[1])
        pa, pb = rho**la, rho**lb
        both = la[:, None] * lb[None, :]
        return pa[:, None] * pb[None, :] * v0 * _sqexp(xa, xb, l0) + both * v1 * _sqexp(xa, xb, l1)

    def _profile(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(L, b, r)``: the Cholesky factor of ``K``, the GLS means
        ``b = (H^T K^{-1} H)^{-1} H^T K^{-1} z`` (``H``: the level indicators) and ``r = z - H b``."""
        X, lv, z = self._X, self._lv, self._z
        K = self._cov(theta, X, lv, X, lv) + self.nugget * torch.eye(len(z), dtype=z.dtype)
        L, info = torch.linalg.cholesky_ex(K)
        if int(info) != 0:
            raise np.linalg.LinAlgError("not positive definite")
        H = torch.stack([1 - lv, lv], dim=-1)
        KiH = torch.cholesky_solve(H, L)
        b = torch.linalg.solve(H.T @ KiH, KiH.T @ z)
        return L, b, z - H @ b

    def _nll(self, theta: torch.Tensor) -> torch.Tensor:
        L, _, r = self._profile(theta)
        a = torch.cholesky_solve(r.unsqueeze(-1), L).squeeze(-1)
        return (
            0.5 * (r * a).sum()
            + torch.log(torch.diagonal(L)).sum()
            + 0.5 * len(r) * math.log(2 * math.pi)
        )

    def fit(self, x_low: Array, y_low: Array, x_high: Array, y_high: Array) -> ReferenceAR1:
        """Maximise the likelihood over all hyperparameters; returns ``self``."""
        d = x_low.shape[1]
        self._c = (float(np.mean(y_low)), float(np.mean(y_high)))
        self._s = (float(np.std(y_low)), float(np.std(y_high)))
        z = np.r_[(y_low - self._c[0]) / self._s[0], (y_high - self._c[1]) / self._s[1]]
        self._X = torch.from_numpy(np.r_[x_low, x_high])
        self._lv = torch.from_numpy(np.r_[np.zeros(len(x_low)), np.ones(len(x_high))])
        self._z = torch.from_numpy(z)

        def value_grad(t: Array) -> tuple[float, Array]:
            theta = torch.tensor(t, requires_grad=True)
            try:
                f = self._nll(theta)
            except np.linalg.LinAlgError:
                return 1e10, np.zeros_like(t)
            f.backward()
            return float(f.detach()), theta.grad.numpy().copy()

        log_l = (math.log(1e-3), math.log(1e3))
        bounds = [log_l] * d + [(math.log(1e-4), math.log(1e4))] + [log_l] * d
        bounds += [(math.log(1e-8), math.log(1e4)), (-20.0, 20.0)]
        nearest = np.argmin(((x_high[:, None, :] - x_low[None, :, :]) ** 2).sum(-1), axis=1)
        zl, zh = z[: len(x_low)][nearest], z[len(x_low) :]
        slope = float(np.polyfit(zl, zh, 1)[0]) if len(zh) > 1 else 1.0
        rng = np.random.default_rng(self.seed)
        best = None
        for start in range(self.restarts):
            if start == 0:
                l0 = l1 = np.full(d, math.log(0.3 * math.sqrt(d)))
                v0, v1, rho = 0.0, math.log(0.1), slope
            else:
                l0 = rng.uniform(-1, 1, d) * math.log(10)
                l1 = rng.uniform(-1, 1, d) * math.log(10)
                v0, v1 = rng.uniform(-1, 1) * math.log(10), rng.uniform(-2, 1) * math.log(10)
                rho = rng.uniform(-3, 3)
            best = _better(best, _lbfgsb(value_grad, np.r_[l0, v0, l1, v1, rho], bounds))
        assert best is not None
        self.theta = torch.from_numpy(best.x)
        self.neg_log_lik = float(best.fun)
        with torch.no_grad():
            self._L, self._b, r = self._profile(self.theta)
            self._alpha = torch.cholesky_solve(r.unsqueeze(-1), self._L).squeeze(-1)
        return self

    @property
    def rho(self) -> float:
        """``rho`` in observation units: ``rho' s_1 / s_0`` (``rho'`` the standardised one)."""
        return float(self.theta[2 * self._X.shape[1] + 2]) * self._s[1] / self._s[0]

    def predict_top(self, x: Array) -> Array:
        """The top level's posterior mean at ``x`` (``(m, d)``), in observation units."""
        xs = torch.from_numpy(x)
        ones = torch.ones(len(xs), dtype=torch.float64)
        with torch.no_grad():
            k = self._cov(self.theta, xs, ones, self._X, self._lv)
            mu = self._b[1] + k @ self._alpha
        return self._c[1] + self._s[1] * mu.numpy()


@dataclass
class KrigingGP:
    """One level of :class:`RecursiveAR1`: ``y = H b + s^2 GP(0, k(.; l))`` with a relative nugget.

    With ``R = k(X, X; l) + tau^2 I``, the regression coefficients and the variance are
    profiled out, ``b = (H^T R^{-1} H)^{-1} H^T R^{-1} y``, ``s^2 = r^T R^{-1} r / n``
    (``r = y - H b``), and the length scales minimise the concentrated negative log likelihood
    ``n/2 log s^2 + 1/2 log |R|`` (L-BFGS-B, ``log l`` in ``[log 1e-3, log 1e3]``; the first
    start ``l = 0.3 sqrt(d)``, the others ``log10 l ~ U(-1, 1)``). Mean at ``x*`` (regressors
    ``h*``): ``h*^T b + k(x*, X) R^{-1} r``.
    """

    nugget: float = 1e-6
    restarts: int = 5
    seed: int = 0

    def _profile(self, log_l: torch.Tensor) -> tuple[torch.Tensor, ...]:
        X, H, y = self._X, self._H, self._y
        R = _sqexp(X, X, log_l.exp()) + self.nugget * torch.eye(len(y), dtype=y.dtype)
        L, info = torch.linalg.cholesky_ex(R)
        if int(info) != 0:
            raise np.linalg.LinAlgError("not positive definite")
        RiH = torch.cholesky_solve(H, L)
        b = torch.linalg.solve(H.T @ RiH, RiH.T @ y)
        r = y - H @ b
        a = torch.cholesky_solve(r.unsqueeze(-1), L).squeeze(-1)
        return L, b, a, (r * a).sum() / len(y)

    def fit(self, X: Array, H: Array, y: Array) -> KrigingGP:
        """Fit to inputs ``X`` (``(n, d)``), regressors ``H`` (``(n, p)``), values ``y``."""
        self._X, self._H, self._y = (
            torch.from_numpy(np.asarray(v, dtype=np.float64)) for v in (X, H, y)
        )
        d = X.shape[1]

        def value_grad(t: Array) -> tuple[float, Array]:
            log_l = torch.tensor(t, requires_grad=True)
            try:
                L, _, _, s2 = self._profile(log_l)
            except np.linalg.LinAlgError:
                return 1e10, np.zeros_like(t)
            f = 0.5 * len(self._y) * torch.log(s2) + torch.log(torch.diagonal(L)).sum()
            f.backward()
            return float(f.detach()), log_l.grad.numpy().copy()

        rng = np.random.default_rng(self.seed)
        bounds = [(math.log(1e-3), math.log(1e3))] * d
        best = None
        for start in range(self.restarts):
            t0 = (
                np.full(d, math.log(0.3 * math.sqrt(d)))
                if start == 0
                else rng.uniform(-1, 1, d) * math.log(10)
            )
            best = _better(best, _lbfgsb(value_grad, t0, bounds))
        assert best is not None
        self.log_l = torch.from_numpy(best.x)
        with torch.no_grad():
            _, self.b, self._a, self.s2 = self._profile(self.log_l)
        return self

    def mean(self, X: Array, H: Array) -> Array:
        with torch.no_grad():
            k = _sqexp(torch.from_numpy(X), self._X, self.log_l.exp())
            return (torch.from_numpy(H) @ self.b + k @ self._a).numpy()


@dataclass
class RecursiveAR1:
    """Le Gratiet's (2013) recursive form of the same AR1 model, for nested designs.

    When the high points are a subset of the low ones and the low level is observed without
    noise, the AR1 likelihood factorises into the low level's and the high level's given the
    low observations, ``y_1(X_1) = rho y_0(X_1) + m_1 + delta_1(X_1)``; so the maximum
    likelihood fits two independent :class:`KrigingGP`\\ s, the low one with ``H = 1`` and the
    discrepancy with ``H = [y_0(X_1), 1]`` (``rho`` and ``m_1`` as GLS coefficients), and the
    top level's mean is ``mu_1(x) = rho mu_0(x) + m_1 + k_1(x, X_1) R_1^{-1} r_1``.
    """

    nugget: float = 1e-6
    restarts: int = 5
    seed: int = 0

    def fit(self, x_low: Array, y_low: Array, x_high: Array, y_high: Array) -> RecursiveAR1:
        match = np.all(np.abs(x_high[:, None, :] - x_low[None, :, :]) < 1e-12, axis=-1)
        if not match.any(axis=1).all():
            raise ValueError(
                "RecursiveAR1 needs the high points among the low points (a nested design)"
            )
        y_low_at_high = y_low[match.argmax(axis=1)]
        self.low = KrigingGP(self.nugget, self.restarts, self.seed).fit(
            x_low, np.ones((len(x_low), 1)), y_low
        )
        H = np.c_[y_low_at_high, np.ones(len(x_high))]
        self.delta = KrigingGP(self.nugget, self.restarts, self.seed + 1).fit(x_high, H, y_high)
        return self

    @property
    def rho(self) -> float:
        return float(self.delta.b[0])

    def predict_top(self, x: Array) -> Array:
        """The top level's posterior mean at ``x`` (``(m, d)``), in observation units."""
        mu0 = self.low.mean(x, np.ones((len(x), 1)))
        return self.delta.mean(x, np.c_[mu0, np.ones(len(x))])
