"""The model zoo: MNIST networks built from cnnx.nn layers, by name.

    lenet5          LeCun et al. 1998 sizes, modern variant: ReLU, max pooling, He init
                    Conv2d(1,6,5,pad 2)-ReLU-MaxPool2d(2)-Conv2d(6,16,5)-ReLU-MaxPool2d(2)-Flatten-
                    Linear(400,120)-ReLU-Linear(120,84)-ReLU-Linear(84,10)                61,706 parameters
    lenet5-classic  the same sizes with Tanh and average pooling, Xavier init                   61,706
    lenet5-classic-relu  lenet5-classic with ReLU for Tanh (average pooling kept), He init        61,706
    mlp             784-300-100-10 with ReLU, He init                                          266,610

The int8/RTL path (cnnx.ptq) fuses each ReLU into the conv/linear before it and pools after it, so every
ReLU here comes *directly after* a Conv2d/Linear and pooling comes after the ReLU. Optional dropout goes after
the ReLU of the hidden Linear layers (identity at inference, so the int8 path skips it).

Every layer gets its own seed drawn from one SeedSequence(seed): the same seed gives the same weights.

Other datasets: `input_shape` (C, H, W) and `num_classes` adapt the first and last layers. LeNet-5's first
convolution pads by 2 on inputs smaller than 32x32 (MNIST, as above) and not at all on 32x32 or larger, which
is LeCun's original geometry (32x32 in, 5x5x16 after the second pooling); the first Linear takes whatever the
convolutions leave.

The int8 forms: `lenet5`, `lenet5-classic-relu` and `mlp` quantise as they are. `lenet5-classic` has Tanh,
which the int8 scheme lacks: quantising it is refused with a message pointing at `lenet5-classic-relu` (Tanh
replaced by ReLU, everything else the same), which is trained as such. Swapping the activation of a trained
Tanh network would silently be another network with other accuracy, so cnnx never does it behind your back.
"""

from __future__ import annotations

import numpy as np

from . import nn

MODELS = ("lenet5", "lenet5-classic", "mlp", "lenet5-classic-relu")
INPUT_SHAPE = (1, 28, 28)


def _seeds(seed: int, n: int) -> list[int]:
    return [int(s) for s in np.random.SeedSequence(int(seed)).generate_state(n)]


def _lenet5(seed: int, dropout: float, classic: bool, input_shape=INPUT_SHAPE, num_classes: int = 10,
            tanh: bool | None = None) -> nn.Sequential:
    """classic: average pooling (else max); tanh: Tanh, Xavier init (else ReLU, He; default: classic)."""
    tanh = classic if tanh is None else tanh
    init = "xavier" if tanh else "he"
    c, h, w = input_shape
    pad = 2 if min(h, w) < 32 else 0
    # conv 5x5 (pad) -> pool 2 -> conv 5x5 -> pool 2, with floor division as the layers do
    fh, fw = ((h + 2 * pad - 4) // 2 - 4) // 2, ((w + 2 * pad - 4) // 2 - 4) // 2
    if min(fh, fw) < 1:
        raise ValueError(f"LeNet-5 needs inputs of at least 12x12 (16x16 without padding), got {h}x{w}")
    s = _seeds(seed, 6)

    def act():
        return nn.Tanh() if tanh else nn.ReLU()

    def pool():
        return nn.AvgPool2d(2) if classic else nn.MaxPool2d(2)

    def drop(i):
        return [nn.Dropout(dropout, seed=s[i])] if dropout > 0 else []

    return nn.Sequential(
        nn.Conv2d(c, 6, 5, padding=pad, init=init, seed=s[0]), act(), pool(),
        nn.Conv2d(6, 16, 5, init=init, seed=s[1]), act(), pool(),
        nn.Flatten(),
        nn.Linear(16 * fh * fw, 120, init=init, seed=s[2]), act(), *drop(4),
        nn.Linear(120, 84, init=init, seed=s[3]), act(), *drop(5),
        # the logits layer is followed by no ReLU: Xavier suits it in both variants
        nn.Linear(84, num_classes, init="xavier", seed=s[4]),
    )  # fmt: skip


def _mlp(seed: int, dropout: float, input_shape=INPUT_SHAPE, num_classes: int = 10) -> nn.Sequential:
    s = _seeds(seed, 5)
    drop = (lambda i: [nn.Dropout(dropout, seed=s[i])]) if dropout > 0 else (lambda i: [])
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(int(np.prod(input_shape)), 300, init="he", seed=s[0]), nn.ReLU(), *drop(3),
        nn.Linear(300, 100, init="he", seed=s[1]), nn.ReLU(), *drop(4),
        nn.Linear(100, num_classes, init="xavier", seed=s[2]),
    )  # fmt: skip


def build_model(name: str, seed: int = 0, dropout: float = 0.0, input_shape=INPUT_SHAPE,
                num_classes: int = 10) -> nn.Sequential:
    """A fresh, seeded model from the zoo; `dropout` (0 <= p < 1) adds Dropout after the hidden FC ReLUs;
    `input_shape` (C, H, W) and `num_classes` fit it to a dataset (MNIST's (1, 28, 28) and 10 by default)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(MODELS)}")
    dropout = float(dropout)
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    shape = tuple(int(v) for v in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"input_shape must be (C, H, W) with sizes >= 1, got {tuple(input_shape)}")
    if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    if name == "mlp":
        model = _mlp(seed, dropout, shape, int(num_classes))
    else:
        model = _lenet5(seed, dropout, name.startswith("lenet5-classic"), shape, int(num_classes),
                        tanh=name == "lenet5-classic")
    try:
        model.output_shapes(shape)
    except ValueError as e:
        raise ValueError(f"model {name} does not fit inputs of shape {shape}: {e}") from None
    return model
