"""L2-regularised logistic regression on fixed features, for a grid of regularisation strengths.

Three interchangeable back ends minimise the same convex objective (scikit-learn's convention:
``0.5 * ||W||^2 + C * sum_i loss_i``, intercept not penalised) -- multinomial softmax for 3+ classes, a
single sigmoid for 2 classes, one binary problem per label (one-vs-rest) for multi-label targets:

- ``newton`` (torch, float64): Newton's method with a Cholesky solve and backtracking line search; the
  Hessian is ``(D+1)^2`` per label (binary / multi-label, labels solved one after the other) or
  ``(K(D+1))^2`` (multinomial). Converges in a handful of steps however ill-conditioned the features are
  (features of an untrained tower are nearly collinear: condition numbers of 1e7 are common, where
  L-BFGS needs thousands of iterations);
- ``torch``: full-batch L-BFGS (strong Wolfe line search) in torch, for problems too large for Newton;
- ``sklearn``: ``LogisticRegression(solver="lbfgs")``, the reference.

``auto`` picks ``newton`` unless the Hessian would exceed ``NEWTON_MAX_DIM`` rows, then ``torch``.
Every back end walks the C grid from the smallest C up, starting each fit from the previous solution.
A class absent from the training targets gets probability 0; a multi-label label with a single class in the
training targets gets a constant prediction (its training prevalence, 0 or 1).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

log = logging.getLogger(__name__)

SOLVERS = ("auto", "newton", "torch", "sklearn")
#: ``auto`` uses Newton while the Hessian has at most this many rows (``D + 1``, or ``K (D + 1)`` for K classes).
NEWTON_MAX_DIM = 2048


@dataclass
class LinearModel:
    """``weight [D, K]`` and ``bias [K]`` over the fitted columns ``columns`` (indices into the ``C`` outputs).

    ``mode``: ``"softmax"`` (multi-class, 3+ seen classes, or 1), ``"binary"`` (multi-class, 2 seen classes:
    one logit for ``columns[1]``), ``"sigmoid"`` (multi-label, one logit per label; ``constant`` holds a fixed
    probability for labels that could not be fitted, NaN elsewhere).
    """

    weight: np.ndarray
    bias: np.ndarray
    mode: str
    columns: np.ndarray
    n_outputs: int
    constant: np.ndarray | None = None

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """float64 ``[N, C]`` probabilities."""
        z = np.asarray(x, dtype=np.float64) @ self.weight + self.bias
        out = np.zeros((len(z), self.n_outputs))
        if self.mode == "softmax":
            z = z - z.max(axis=1, keepdims=True)
            e = np.exp(z)
            out[:, self.columns] = e / e.sum(axis=1, keepdims=True)
        elif self.mode == "binary":
            p = _sigmoid(z[:, 0])
            out[:, self.columns[0]] = 1.0 - p
            out[:, self.columns[1]] = p
        else:
            p = _sigmoid(z)
            if self.constant is not None:
                fixed = np.isfinite(self.constant)
                p[:, fixed] = self.constant[fixed]
            out[:, self.columns] = p
        return out


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def choose_solver(solver: str, d: int, kind: str, n_outputs: int) -> str:
    """Resolve ``auto``: Newton when its Hessian is small enough, torch L-BFGS otherwise."""
    if solver != "auto":
        return solver
    rows = (d + 1) * (n_outputs if kind == "multiclass" and n_outputs > 2 else 1)
    return "newton" if rows <= NEWTON_MAX_DIM else "torch"


def fit_path(
    x: np.ndarray,
    y: np.ndarray,
    kind: str,
    n_outputs: int,
    c_values: Sequence[float],
    *,
    solver: str = "sklearn",
    max_iter: int = 1000,
    device: torch.device | str = "cpu",
) -> list[LinearModel]:
    """One :class:`LinearModel` per value of ``c_values`` (same order), fitted on ``x [N, D]``, ``y``."""
    order = np.argsort(np.asarray(c_values, dtype=np.float64), kind="stable")
    fit = {"sklearn": _fit_sklearn, "torch": _fit_torch, "newton": _fit_newton}[solver]
    models: list[LinearModel | None] = [None] * len(c_values)
    prev: LinearModel | None = None
    for i in order:
        prev = fit(x, y, kind, n_outputs, float(c_values[i]), max_iter, prev, torch.device(device))
        models[i] = prev
    return models  # type: ignore[return-value]


# -- scikit-learn -------------------------------------------------------------------------------------------
def _lr(c: float, max_iter: int):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, solver="lbfgs", max_iter=max_iter)


def _fit_quietly(est, x: np.ndarray, y: np.ndarray, init: tuple[np.ndarray, np.ndarray] | None):
    from sklearn.exceptions import ConvergenceWarning

    if init is not None:
        est.set_params(warm_start=True)
        est.coef_, est.intercept_ = init[0].copy(), init[1].copy()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        est.fit(x, y)
    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
        log.warning("logistic regression (C=%g) did not converge in %d iterations", est.C, est.max_iter)
    return est


def _fit_sklearn(x, y, kind, n_outputs, c, max_iter, prev: LinearModel | None, device) -> LinearModel:
    if kind == "multiclass":
        classes = np.unique(y)
        if len(classes) == 1:
            return LinearModel(np.zeros((x.shape[1], 1)), np.zeros(1), "softmax", classes, n_outputs)
        init = (prev.weight.T, prev.bias) if prev is not None else None  # same data: same shapes
        est = _fit_quietly(_lr(c, max_iter), x, y, init)
        mode = "binary" if len(classes) == 2 else "softmax"
        return LinearModel(est.coef_.T.copy(), est.intercept_.copy(), mode, classes, n_outputs)
    # multi-label: one binary model per label
    d, k = x.shape[1], y.shape[1]
    weight, bias = np.zeros((d, k)), np.zeros(k)
    constant = np.full(k, np.nan)
    for j in range(k):
        yj = y[:, j]
        if yj.min() == yj.max():
            constant[j] = float(yj[0])
            continue
        init = None
        if prev is not None and not np.isfinite(prev.constant[j]):
            init = (prev.weight[:, j][None, :], prev.bias[j : j + 1])
        est = _fit_quietly(_lr(c, max_iter), x, yj, init)
        weight[:, j], bias[j] = est.coef_[0], est.intercept_[0]
    return LinearModel(weight, bias, "sigmoid", np.arange(k), n_outputs, constant)


# -- torch --------------------------------------------------------------------------------------------------
def _fit_torch(x, y, kind, n_outputs, c, max_iter, prev: LinearModel | None, device: torch.device) -> LinearModel:
    dtype = torch.float64 if device.type == "cpu" else torch.float32
    X = torch.as_tensor(np.asarray(x), dtype=dtype, device=device)
    n, d = X.shape
    constant = None
    if kind == "multiclass":
        classes = np.unique(y)
        if len(classes) == 1:
            return LinearModel(np.zeros((d, 1)), np.zeros(1), "softmax", classes, n_outputs)
        mode = "binary" if len(classes) == 2 else "softmax"
        k = 1 if mode == "binary" else len(classes)
        yi = np.searchsorted(classes, y)
        T = torch.as_tensor(yi, device=device)
        if mode == "binary":
            T = T.to(dtype).unsqueeze(1)
        columns = classes
    else:
        mode, k, columns = "sigmoid", y.shape[1], np.arange(y.shape[1])
        T = torch.as_tensor(np.asarray(y), dtype=dtype, device=device)
        const = y.min(axis=0) == y.max(axis=0)
        constant = np.where(const, y[0].astype(np.float64), np.nan)
    W = torch.zeros(d, k, dtype=dtype, device=device)
    b = torch.zeros(k, dtype=dtype, device=device)
    if prev is not None and prev.weight.shape == (d, k) and prev.mode == mode:
        W.copy_(torch.as_tensor(prev.weight, dtype=dtype))
        b.copy_(torch.as_tensor(prev.bias, dtype=dtype))
    W.requires_grad_(True)
    b.requires_grad_(True)
    penalty = 1.0 / (2.0 * c * n)  # mean loss + ||W||^2 / (2 C n)  ==  sklearn's objective / (C n)
    keep = None if constant is None else torch.as_tensor(~np.isfinite(constant), device=device)
    opt = torch.optim.LBFGS(
        [W, b], lr=1.0, max_iter=max_iter, tolerance_grad=1e-7, tolerance_change=1e-10, history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        z = X @ W + b
        if mode == "softmax":
            loss = torch.nn.functional.cross_entropy(z, T, reduction="mean")
            reg = (W**2).sum()
        else:
            per = torch.nn.functional.binary_cross_entropy_with_logits(z, T, reduction="none").mean(0)
            if keep is not None:
                per = per[keep]
                reg = (W[:, keep] ** 2).sum()
            else:
                reg = (W**2).sum()
            loss = per.sum()
        total = loss + penalty * reg
        total.backward()
        return total

    with torch.enable_grad():
        opt.step(closure)
    weight = W.detach().cpu().double().numpy()
    bias = b.detach().cpu().double().numpy()
    if constant is not None:
        weight[:, np.isfinite(constant)] = 0.0
    return LinearModel(weight, bias, mode, columns, n_outputs, constant)


# -- Newton (torch, float64) ----------------------------------------------------------------------------------
_ROWS = 4096  # rows of X per chunk when accumulating Hessians


def _fit_newton(x, y, kind, n_outputs, c, max_iter, prev: LinearModel | None, device: torch.device) -> LinearModel:
    dev = device if device.type == "cuda" else torch.device("cpu")
    X = torch.as_tensor(np.asarray(x), dtype=torch.float64, device=dev)
    n, d = X.shape
    Xa = torch.cat([X, torch.ones(n, 1, dtype=X.dtype, device=dev)], dim=1)
    lam = 1.0 / (c * n)  # sklearn's objective divided by C n: mean loss + lam/2 ||W||^2
    init = None
    if prev is not None:
        init = torch.as_tensor(np.c_[prev.weight.T, prev.bias[:, None]], dtype=torch.float64, device=dev)
    if kind == "multiclass":
        classes = np.unique(y)
        if len(classes) == 1:
            return LinearModel(np.zeros((d, 1)), np.zeros(1), "softmax", classes, n_outputs)
        if len(classes) == 2:
            T = torch.as_tensor((y == classes[1]).astype(np.float64), device=dev)[:, None]
            theta = _newton_binary(Xa, T, lam, init, max_iter)
            mode = "binary"
        else:
            T = torch.as_tensor(np.searchsorted(classes, y), device=dev)
            theta = _newton_multinomial(Xa, T, len(classes), lam, init, max_iter)
            mode = "softmax"
        theta = theta.cpu().numpy()
        return LinearModel(theta[:, :d].T.copy(), theta[:, d].copy(), mode, classes, n_outputs)
    k = y.shape[1]
    const = y.min(axis=0) == y.max(axis=0)
    constant = np.where(const, y[0].astype(np.float64), np.nan)
    theta = np.zeros((k, d + 1))
    fit = np.flatnonzero(~const)
    if len(fit):
        T = torch.as_tensor(y[:, fit].astype(np.float64), device=dev)
        sub_init = init[torch.as_tensor(fit, device=dev)] if init is not None else None
        theta[fit] = _newton_binary(Xa, T, lam, sub_init, max_iter).cpu().numpy()
    return LinearModel(theta[:, :d].T.copy(), theta[:, d].copy(), "sigmoid", np.arange(k), n_outputs, constant)


def _penalty_mask(d1: int, like: torch.Tensor) -> torch.Tensor:
    r = torch.ones(d1, dtype=like.dtype, device=like.device)
    r[-1] = 0.0  # the intercept is not penalised
    return r


def _solve(H: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """``H^-1 g`` for a symmetric positive (semi-)definite ``H``: Cholesky, least squares if that fails."""
    L, info = torch.linalg.cholesky_ex(H)
    if int(info) == 0:
        return torch.cholesky_solve(g[:, None], L)[:, 0]
    return torch.linalg.lstsq(H, g[:, None]).solution[:, 0]


def _newton_binary(Xa: torch.Tensor, T: torch.Tensor, lam: float, init: torch.Tensor | None, max_iter: int,
                   tol: float = 1e-10) -> torch.Tensor:
    """``[L, D+1]``: one L2 logistic regression per column of ``T`` (0/1 ``[n, L]``), solved one by one."""
    n, d1 = Xa.shape
    r = _penalty_mask(d1, Xa)
    out = torch.zeros(T.shape[1], d1, dtype=Xa.dtype, device=Xa.device) if init is None else init.clone()

    def objective(theta: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        z = Xa @ theta
        return (torch.nn.functional.softplus(z) - t * z).mean() + 0.5 * lam * (r * theta**2).sum()

    for j in range(T.shape[1]):
        theta, t = out[j].clone(), T[:, j]
        f = objective(theta, t)
        for _ in range(max_iter):
            p = torch.sigmoid(Xa @ theta)
            g = Xa.T @ (p - t) / n + lam * r * theta
            if float(g.abs().max()) <= tol:
                break
            s = p * (1.0 - p)
            H = torch.zeros(d1, d1, dtype=Xa.dtype, device=Xa.device)
            for a in range(0, n, _ROWS):
                blk = Xa[a : a + _ROWS]
                H += (blk * s[a : a + _ROWS, None]).T @ blk
            H = H / n + torch.diag(lam * r + 1e-12)
            theta, f, done = _line_search(objective, theta, f, g, _solve(H, g), t)
            if done:
                break
        out[j] = theta
    return out


def _newton_multinomial(Xa: torch.Tensor, T: torch.Tensor, k: int, lam: float, init: torch.Tensor | None,
                        max_iter: int, tol: float = 1e-10) -> torch.Tensor:
    """``[K, D+1]``: multinomial L2 logistic regression (symmetric parameterisation, as scikit-learn)."""
    n, d1 = Xa.shape
    r = _penalty_mask(d1, Xa)
    Y = torch.nn.functional.one_hot(T, k).to(Xa.dtype)
    theta = torch.zeros(k, d1, dtype=Xa.dtype, device=Xa.device) if init is None else init.clone()
    # the intercepts' common shift is a null direction (softmax is shift-invariant, intercepts unpenalised)
    ridge = (lam * r + 1e-12).repeat(k) + (1.0 - r).repeat(k) * 1e-10

    def objective(th: torch.Tensor, _: Any = None) -> torch.Tensor:
        z = Xa @ th.T
        return (torch.logsumexp(z, dim=1) - (Y * z).sum(1)).mean() + 0.5 * lam * (r * th**2).sum()

    f = objective(theta)
    for _ in range(max_iter):
        P = torch.softmax(Xa @ theta.T, dim=1)
        g = ((P - Y).T @ Xa / n + lam * r * theta).reshape(-1)
        if float(g.abs().max()) <= tol:
            break
        H = torch.zeros(k * d1, k * d1, dtype=Xa.dtype, device=Xa.device)
        for a in range(0, n, _ROWS):
            blk, pb = Xa[a : a + _ROWS], P[a : a + _ROWS]
            A = (pb[:, :, None] * blk[:, None, :]).reshape(len(blk), k * d1)
            H -= A.T @ A
            for c in range(k):
                H[c * d1 : (c + 1) * d1, c * d1 : (c + 1) * d1] += (blk * pb[:, c : c + 1]).T @ blk
        H = H / n + torch.diag(ridge)
        step = _solve(H, g).reshape(k, d1)
        theta, f, done = _line_search(objective, theta, f, g.reshape(k, d1), step, None)
        if done:
            break
    return theta


#: Newton stops when half the Newton decrement ``g^T H^-1 g / 2`` (the predicted decrease of the mean-loss
#: objective) falls below this.
NEWTON_DECREMENT_TOL = 1e-12


def _line_search(objective, theta, f, g, step, extra, shrink: float = 0.5, c1: float = 1e-4):
    """Backtracking (Armijo) along ``-step``. Returns ``(theta, f, converged)``; converged when the Newton
    decrement says the objective is within ``NEWTON_DECREMENT_TOL`` of its minimum, or no step decreases it."""
    slope = float((g * step).sum())
    if 0.5 * slope <= NEWTON_DECREMENT_TOL:
        return theta - step, objective(theta - step, extra), True
    t = 1.0
    for _ in range(40):
        cand = theta - t * step
        fc = objective(cand, extra)
        if float(fc) <= float(f) - c1 * t * slope:
            return cand, fc, abs(float(f) - float(fc)) <= 1e-15 * max(1.0, abs(float(f)))
        t *= shrink
    return theta, f, True
