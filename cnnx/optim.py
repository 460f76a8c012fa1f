"""Optimisers and learning-rate schedules for cnnx.nn models (PyTorch's update rules, in-place numpy).

Each optimiser holds the model's `Parameter`s (`.data` float32, `.grad` filled by `backward`) and updates
`.data` in place with batch-sized numpy ops, so a step costs a handful of passes over the weights.

Weight decay `wd` applies to weights only (parameters with ndim >= 2: conv kernels and linear matrices), not
to biases, as is usual; two forms:
    L2 (coupled, default)   g <- g + wd * w             (the gradient of wd/2 * ||w||^2)
    decoupled               w <- w - lr * wd * w        (SGDW / AdamW: decay not scaled by momentum or Adam)

SGD with momentum (PyTorch form): v <- mu * v + g; w <- w - lr * v (Nesterov: w <- w - lr * (g + mu * v)).
Adam: m <- b1 m + (1 - b1) g; v <- b2 v + (1 - b2) g^2; w <- w - lr * m_hat / (sqrt(v_hat) + eps).
"""

from __future__ import annotations

import math

import numpy as np

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("cosine", "step", "constant")


def _check_positive(name: str, value: float, allow_zero: bool = False) -> float:
    value = float(value)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value}")
    return value


class Optimizer:
    """Base: holds parameters, hyper-parameters, a step counter and per-parameter state buffers."""

    kind = "base"

    def __init__(self, params, lr: float, weight_decay: float = 0.0, decoupled: bool = False):
        self.params = list(params)
        if not self.params:
            raise ValueError("optimizer got an empty parameter list")
        self.lr = _check_positive("lr", lr)
        self.weight_decay = _check_positive("weight_decay", weight_decay, allow_zero=True)
        self.decoupled = bool(decoupled)
        self.step_count = 0
        self.state: dict[str, list[np.ndarray]] = {}

    def _decay(self, p) -> bool:
        return self.weight_decay > 0 and p.data.ndim >= 2

    def _grad(self, p) -> np.ndarray:
        if p.grad is None:
            raise ValueError(f"parameter {getattr(p, 'name', '?')} has no gradient: call backward first")
        if p.grad.shape != p.data.shape:
            raise ValueError(
                f"gradient of {getattr(p, 'name', '?')} is {p.grad.shape}, weight {p.data.shape}"
            )
        g = p.grad
        if self._decay(p) and not self.decoupled:
            g = g + np.float32(self.weight_decay) * p.data
        return g

    def _apply_decoupled(self, p) -> None:
        if self._decay(p) and self.decoupled:
            p.data *= np.float32(1.0 - self.lr * self.weight_decay)

    def step(self) -> None:
        raise NotImplementedError

    def zero_grad(self) -> None:
        """Not needed with cnnx.nn (backward overwrites .grad); kept for PyTorch-shaped loops."""
        for p in self.params:
            if p.grad is not None:
                p.grad[...] = 0

    # -- state for checkpoints ------------------------------------------------------------------------
    def hyper(self) -> dict:
        return {"lr": self.lr, "weight_decay": self.weight_decay, "decoupled": self.decoupled}

    def state_dict(self) -> dict:
        """{"kind", "hyper", "step", "buffers": {"<state>.<i>": array}} (JSON-able apart from the arrays)."""
        buffers = {f"{k}.{i}": a for k, arrs in self.state.items() for i, a in enumerate(arrs)}
        return {"kind": self.kind, "hyper": self.hyper(), "step": self.step_count, "buffers": buffers}

    def load_state_dict(self, sd: dict) -> None:
        if sd.get("kind") != self.kind:
            raise ValueError(f"optimizer state is for {sd.get('kind')!r}, this optimizer is {self.kind!r}")
        state: dict[str, list[np.ndarray]] = {}
        for name in self.state_names:
            arrs = []
            for i, p in enumerate(self.params):
                key = f"{name}.{i}"
                if key not in sd["buffers"]:
                    raise ValueError(f"optimizer state lacks buffer {key}")
                a = np.asarray(sd["buffers"][key], dtype=np.float32)
                if a.shape != p.data.shape:
                    raise ValueError(f"optimizer buffer {key} is {a.shape}, parameter is {p.data.shape}")
                arrs.append(a.copy())
            state[name] = arrs
        self.state = state
        self.step_count = int(sd["step"])


class SGD(Optimizer):
    kind = "sgd"
    state_names = ("momentum",)

    def __init__(
        self,
        params,
        lr: float = 0.05,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        decoupled: bool = False,
        nesterov: bool = False,
    ):
        super().__init__(params, lr, weight_decay, decoupled)
        self.momentum = float(momentum)
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.nesterov = bool(nesterov)
        self.state = {"momentum": [np.zeros_like(p.data, dtype=np.float32) for p in self.params]}

    def hyper(self) -> dict:
        return {**super().hyper(), "momentum": self.momentum, "nesterov": self.nesterov}

    def step(self) -> None:
        lr, mu = np.float32(self.lr), np.float32(self.momentum)
        for p, v in zip(self.params, self.state["momentum"], strict=True):
            g = self._grad(p)
            self._apply_decoupled(p)
            if self.momentum == 0:
                p.data -= lr * g
                continue
            v *= mu
            v += g
            if self.nesterov:
                p.data -= lr * (g + mu * v)
            else:
                p.data -= lr * v
        self.step_count += 1


class Adam(Optimizer):
    kind = "adam"
    state_names = ("m", "v")

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decoupled: bool = False,
    ):
        super().__init__(params, lr, weight_decay, decoupled)
        self.b1, self.b2 = (float(b) for b in betas)
        if not (0.0 <= self.b1 < 1.0 and 0.0 <= self.b2 < 1.0):
            raise ValueError(f"Adam betas must be in [0, 1), got {betas}")
        self.eps = _check_positive("eps", eps)
        self.state = {
            "m": [np.zeros_like(p.data, dtype=np.float32) for p in self.params],
            "v": [np.zeros_like(p.data, dtype=np.float32) for p in self.params],
        }

    def hyper(self) -> dict:
        return {**super().hyper(), "betas": [self.b1, self.b2], "eps": self.eps}

    def step(self) -> None:
        self.step_count += 1
        t = self.step_count
        # Bias corrections folded into one step size (computed in float64, applied in float32).
        step_size = np.float32(self.lr * math.sqrt(1.0 - self.b2**t) / (1.0 - self.b1**t))
        eps_hat = np.float32(self.eps * math.sqrt(1.0 - self.b2**t))
        b1, b2 = np.float32(self.b1), np.float32(self.b2)
        for p, m, v in zip(self.params, self.state["m"], self.state["v"], strict=True):
            g = self._grad(p)
            self._apply_decoupled(p)
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * (g * g)
            p.data -= step_size * m / (np.sqrt(v) + eps_hat)


def make_optimizer(
    kind: str, params, lr: float, weight_decay: float = 0.0, decoupled: bool = False, momentum: float = 0.9
) -> Optimizer:
    if kind == "sgd":
        return SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, decoupled=decoupled)
    if kind == "adam":
        return Adam(params, lr=lr, weight_decay=weight_decay, decoupled=decoupled)
    raise ValueError(f"unknown optimizer {kind!r}; expected one of {', '.join(OPTIMIZERS)}")


class LRSchedule:
    """The learning rate at optimiser step t (0-based) of `total_steps`, updated per step, not per epoch.

    cosine    lr(t) = min_lr + (base - min_lr) * (1 + cos(pi * t / total)) / 2, after a linear warm-up of
              `warmup` steps from base/10 (warm-up keeps the first steps of a He-initialised net stable)
    step      lr(t) = base * gamma ** floor(t / step_size)
    constant  lr(t) = base
    """

    def __init__(
        self,
        kind: str,
        base_lr: float,
        total_steps: int,
        warmup: int = 0,
        min_lr: float = 0.0,
        step_size: int | None = None,
        gamma: float = 0.1,
    ):
        if kind not in SCHEDULES:
            raise ValueError(f"unknown schedule {kind!r}; expected one of {', '.join(SCHEDULES)}")
        self.kind = kind
        self.base_lr = _check_positive("lr", base_lr)
        self.total_steps = max(int(total_steps), 1)
        self.warmup = max(int(warmup), 0)
        self.min_lr = float(min_lr)
        self.step_size = int(step_size) if step_size else max(self.total_steps // 3, 1)
        self.gamma = float(gamma)

    def __call__(self, t: int) -> float:
        if self.kind == "constant":
            return self.base_lr
        if self.kind == "step":
            return self.base_lr * self.gamma ** (t // self.step_size)
        if t < self.warmup:
            return self.base_lr * (0.1 + 0.9 * t / self.warmup)
        span = max(self.total_steps - self.warmup, 1)
        frac = min(max((t - self.warmup) / span, 0.0), 1.0)
        return self.min_lr + (self.base_lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * frac))
