"""The model zoo: MNIST networks built from cnnx.nn layers, by name.

    lenet5          LeCun et al. 1998 sizes, modern variant: ReLU, max pooling, He init
                    Conv2d(1,6,5,pad 2)-ReLU-MaxPool2d(2)-Conv2d(6,16,5)-ReLU-MaxPool2d(2)-Flatten-
                    Linear(400,120)-ReLU-Linear(120,84)-ReLU-Linear(84,10)                61,706 parameters
    lenet5-classic  the same sizes with Tanh and average pooling, Xavier init                   61,706
    mlp             784-300-100-10 with ReLU, He init                                          266,610

The int8/RTL path (cnnx.ptq) fuses each ReLU into the conv/linear before it and pools after it, so every
ReLU here comes *directly after* a Conv2d/Linear and pooling comes after the ReLU. Optional dropout goes after
the ReLU of the hidden Linear layers (identity at inference, so the int8 path skips it).

Every layer gets its own seed drawn from one SeedSequence(seed): the same seed gives the same weights.
"""

from __future__ import annotations

import numpy as np

from . import nn

MODELS = ("lenet5", "lenet5-classic", "mlp")
INPUT_SHAPE = (1, 28, 28)


def _seeds(seed: int, n: int) -> list[int]:
    return [int(s) for s in np.random.SeedSequence(int(seed)).generate_state(n)]


def _lenet5(seed: int, dropout: float, classic: bool) -> nn.Sequential:
    init = "xavier" if classic else "he"
    s = _seeds(seed, 6)

    def act():
        return nn.Tanh() if classic else nn.ReLU()

    def pool():
        return nn.AvgPool2d(2) if classic else nn.MaxPool2d(2)

    def drop(i):
        return [nn.Dropout(dropout, seed=s[i])] if dropout > 0 else []

    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2, init=init, seed=s[0]), act(), pool(),
        nn.Conv2d(6, 16, 5, init=init, seed=s[1]), act(), pool(),
        nn.Flatten(),
        nn.Linear(400, 120, init=init, seed=s[2]), act(), *drop(4),
        nn.Linear(120, 84, init=init, seed=s[3]), act(), *drop(5),
        # the logits layer is followed by no ReLU: Xavier suits it in both variants
        nn.Linear(84, 10, init="xavier", seed=s[4]),
    )  # fmt: skip


def _mlp(seed: int, dropout: float) -> nn.Sequential:
    s = _seeds(seed, 5)
    drop = (lambda i: [nn.Dropout(dropout, seed=s[i])]) if dropout > 0 else (lambda i: [])
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 300, init="he", seed=s[0]), nn.ReLU(), *drop(3),
        nn.Linear(300, 100, init="he", seed=s[1]), nn.ReLU(), *drop(4),
        nn.Linear(100, 10, init="xavier", seed=s[2]),
    )  # fmt: skip


def build_model(name: str, seed: int = 0, dropout: float = 0.0) -> nn.Sequential:
    """A fresh, seeded model from the zoo; `dropout` (0 <= p < 1) adds Dropout after the hidden FC ReLUs."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(MODELS)}")
    dropout = float(dropout)
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    if name == "mlp":
        return _mlp(seed, dropout)
    return _lenet5(seed, dropout, classic=(name == "lenet5-classic"))
