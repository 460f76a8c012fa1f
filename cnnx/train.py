"""Training and evaluation of cnnx models on MNIST or a dataset .npz (`cnnx.io.dataset`): the loop behind
`cnnx train` and `cnnx eval`. The input preprocessing (`cnnx.io.preprocess`), input shape, class count and
dataset are stored in every checkpoint's metadata, for eval, quantisation and co-simulation to use.

Mini-batch training with a per-step learning-rate schedule, optional augmentation, a held-out validation
split, a checkpoint + metrics.json after every epoch, and PNG plots at the end. Per-sample Python work is
avoided: batches are gathered, augmented and normalised with whole-array numpy ops; the forward/backward
cost is in cnnx.nn's Cython kernels.

Determinism: the batch order of epoch e is `default_rng([seed, e])`, the augmentation of batch b of epoch e
is `default_rng([seed, e, b])`, the weights come from `build_model(name, seed)`. So the same seed and thread
count give the same weights, and a run interrupted at batch b and resumed repeats exactly what an
uninterrupted run would have done (except for Dropout's own generator, whose state is not checkpointed).

Ctrl-C and SIGTERM: the first SIGINT or SIGTERM only sets a flag; the loop finishes the current optimiser
step, saves a resumable checkpoint (position = the next batch) and raises `TrainingInterrupted` (its `signum`
says which signal; the CLI exits 130 for SIGINT, 143 for SIGTERM). A signal during an epoch's validation pass
or the final test evaluation is honoured once the epoch's checkpoint is saved; a second signal while saving
gives up the clean path (KeyboardInterrupt).
"""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from . import checkpoint, data, models, nn, optim
from ._atomic import atomic_write, remove_stale_temps
from ._cliutil import plural
from ._threads import get_num_threads, set_num_threads

METRICS_NAME = "metrics.json"
IMPORTED = "imported"  # the model name of `cnnx import`ed networks: they train from their checkpoint only


@dataclass
class TrainConfig:
    """Everything that decides a training run. The defaults reach >= 99 % MNIST test accuracy with lenet5."""

    model: str = "lenet5"
    epochs: int = 6
    batch_size: int = 64
    lr: float = 0.05
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    decoupled: bool = False  # True: decoupled weight decay (SGDW/AdamW); False: L2 added to the gradient
    schedule: str = "cosine"
    warmup_steps: int = 100
    augment: bool = True  # measured: 99.08-99.24 % test without it (5 epochs), 99.32-99.33 % with (6)
    dropout: float = 0.0
    seed: int = 0
    threads: int | None = None
    limit: int | None = None  # use only the first `limit` training images (tests, quick looks)
    n_val: int = 5000  # held out from the training images; with `limit` or `data`, at most a tenth of them
    data: str | None = None  # a dataset .npz (cnnx.io.dataset); None: MNIST

    def validate(self) -> TrainConfig:
        """Raise ValueError naming the bad setting; called before anything is written."""
        if self.model not in models.MODELS and self.model != IMPORTED:
            raise ValueError(f"unknown model {self.model!r}; available: {', '.join(models.MODELS)}")
        for name in ("epochs", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name.replace('_', ' ')} must be an integer >= 1, got {v!r}")
        if not (isinstance(self.lr, int | float) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"learning rate must be > 0, got {self.lr!r}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight decay must be >= 0, got {self.weight_decay!r}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")
        if self.optimizer not in optim.OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; expected {', '.join(optim.OPTIMIZERS)}")
        if self.schedule not in optim.SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; expected {', '.join(optim.SCHEDULES)}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ValueError(f"threads must be an integer >= 1, got {self.threads!r}")
        top = data.N_TRAIN if self.data is None else None  # a dataset file's size is checked when read
        if self.limit is not None and (
            not isinstance(self.limit, int) or self.limit < 2 or (top is not None and self.limit > top)
        ):
            raise ValueError(f"limit must be an integer in [2, {top or 'the training images'}], "
                             f"got {self.limit!r}")
        if not isinstance(self.n_val, int) or self.n_val < 0:
            raise ValueError(f"n_val must be an integer >= 0, got {self.n_val!r}")
        return self

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


class TrainingInterrupted(Exception):
    """Training stopped on request (Ctrl-C, SIGTERM or `should_stop`); `checkpoint` is the resumable
    checkpoint just written, `signum` the signal that asked (SIGINT when a callback did)."""

    def __init__(self, checkpoint_path: Path, epoch: int, batch: int, signum: int = signal.SIGINT):
        super().__init__(
            f"interrupted at epoch {epoch + 1}, batch {batch}; checkpoint saved to {checkpoint_path}"
        )
        self.checkpoint = checkpoint_path
        self.epoch, self.batch = epoch, batch
        self.signum = int(signum)


# ---------------------------------------------------------------------------------------------------------
# augmentation
# ---------------------------------------------------------------------------------------------------------
def augment(
    images: np.ndarray,
    rng: np.random.Generator,
    max_shift: float = 2.0,
    max_rot_deg: float = 8.0,
    max_scale: float = 0.08,
    max_shear: float = 0.08,
) -> np.ndarray:
    """Random small affine distortions of uint8 images (N, H, W) or (N, C, H, W), vectorised; returns uint8
    of the same shape.

    Per image: rotation +-max_rot_deg, scale 1 +- max_scale, shear +-max_shear, shift +-max_shift px
    (uniform), about the image centre; bilinear resampling, background 0 outside the image. All channels of
    an image move together (one draw per image, whatever C is, so (N, H, W) results are unchanged).
    """
    if images.ndim == 4:
        n, c, h, w = images.shape
    else:
        (n, h, w), c = images.shape, 0
    ang = np.deg2rad(rng.uniform(-max_rot_deg, max_rot_deg, n))
    scale = 1.0 + rng.uniform(-max_scale, max_scale, n)
    shear = rng.uniform(-max_shear, max_shear, n)
    shift = rng.uniform(-max_shift, max_shift, (n, 2))
    # The inverse map (output pixel -> source position): A^-1 (p - c - t) + c, A = R(ang) S(scale) Sh(shear).
    cos, sin = np.cos(ang) / scale, np.sin(ang) / scale
    a00, a01 = cos, sin - shear * cos
    a10, a11 = -sin, cos + shear * sin
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    yy, xx = np.meshgrid(np.arange(h) - cy, np.arange(w) - cx, indexing="ij")
    dy = yy[None] - shift[:, 0, None, None]
    dx = xx[None] - shift[:, 1, None, None]
    sy = a00[:, None, None] * dy + a01[:, None, None] * dx + cy
    sx = a10[:, None, None] * dy + a11[:, None, None] * dx + cx
    # Bilinear gather from a zero-padded copy (one pixel of border so floor/ceil never leave it).
    sy = np.clip(sy + 1, 0, h + 0.999)
    sx = np.clip(sx + 1, 0, w + 0.999)
    y0, x0 = np.floor(sy).astype(np.intp), np.floor(sx).astype(np.intp)
    fy, fx = (sy - y0).astype(np.float32), (sx - x0).astype(np.float32)
    idx = np.arange(n)[:, None, None]

    def plane(img):  # (N, H, W) -> (N, H, W) uint8
        pad = np.zeros((n, h + 2, w + 2), dtype=np.float32)
        pad[:, 1:-1, 1:-1] = img
        out = (
            pad[idx, y0, x0] * (1 - fy) * (1 - fx)
            + pad[idx, y0, x0 + 1] * (1 - fy) * fx
            + pad[idx, y0 + 1, x0] * fy * (1 - fx)
            + pad[idx, y0 + 1, x0 + 1] * fy * fx
        )
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)

    if c == 0:
        return plane(images)
    return np.stack([plane(images[:, k]) for k in range(c)], axis=1)


# ---------------------------------------------------------------------------------------------------------
# evaluation
# ---------------------------------------------------------------------------------------------------------
def predict(model, images: np.ndarray, batch_size: int = 1000, preprocess=None) -> np.ndarray:
    """Logits (N, K) float32 of uint8 images (N, H, W) / (N, C, H, W), in eval mode, batch by batch; the
    pixels become floats by `preprocess` (a `cnnx.io.preprocess.Preprocess`; None: MNIST's)."""
    to_float = data.to_float if preprocess is None else preprocess.to_float
    model.eval()
    out = [model.forward(to_float(images[i : i + batch_size])) for i in range(0, len(images), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, 10), np.float32)


def evaluate(model, images: np.ndarray, labels: np.ndarray, batch_size: int = 1000, preprocess=None) -> dict:
    """{"loss", "accuracy", "error", "n", "confusion" (KxK list: rows true class, columns predicted)}."""
    logits = predict(model, images, batch_size, preprocess)
    pred = logits.argmax(axis=1)
    loss_fn = nn.CrossEntropyLoss()
    loss = float(loss_fn.forward(logits, labels)) if len(labels) else float("nan")
    k = logits.shape[1]
    if len(labels) and int(labels.max()) >= k:
        raise ValueError(f"labels go up to {int(labels.max())}, but the model has {k} outputs")
    conf = np.bincount(labels * k + pred, minlength=k * k).reshape(k, k)
    acc = float((pred == labels).mean()) if len(labels) else float("nan")
    return {
        "loss": loss,
        "accuracy": acc,
        "error": 1.0 - acc,
        "n": int(len(labels)),
        "confusion": conf.tolist(),
    }


# ---------------------------------------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------------------------------------
def write_json_atomic(path: Path, obj) -> None:
    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def write_plots(run_dir: Path, history: list[dict], model, confusion, image_shape=None) -> list[str]:
    """curves.png (loss and accuracy per epoch), filters.png (first layer's weights), confusion.png."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.colors
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    written = []
    if history:
        ep = [h["epoch"] for h in history]
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
        for ax in (a1, a2):  # whole epochs on the axis, a one-epoch run's single points included
            ax.set_xlim(min(ep) - 0.5, max(ep) + 0.5)
        a1.plot(ep, [h["train_loss"] for h in history], "o-", label="train")
        a1.plot(ep, [h["val_loss"] for h in history], "s-", label="validation")
        a1.set_xlabel("epoch"), a1.set_ylabel("cross-entropy"), a1.set_title("loss"), a1.legend()
        a2.plot(ep, [100 * h["train_accuracy"] for h in history], "o-", label="train")
        a2.plot(ep, [100 * h["val_accuracy"] for h in history], "s-", label="validation")
        a2.set_xlabel("epoch"), a2.set_ylabel("accuracy (%)"), a2.set_title("accuracy"), a2.legend()
        for ax in (a1, a2):  # epochs are whole numbers: one tick per epoch, or integer ticks for long runs
            if len(ep) <= 12:
                ax.set_xticks(ep)
            else:
                ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        fig.tight_layout()
        fig.savefig(run_dir / "curves.png", dpi=100)
        plt.close(fig)
        written.append("curves.png")

    first = next((p for p in model.parameters() if p.data.ndim in (2, 4)), None)
    if first is not None:
        w = first.data
        if w.ndim == 4:  # conv (F, C, KH, KW): one tile per (filter, channel)
            tiles = w.reshape(-1, w.shape[2], w.shape[3])
            title = (
                f"first conv layer: {w.shape[0]} filters x {w.shape[1]} channels, {w.shape[2]}x{w.shape[3]}"
            )
        elif w.shape[1] == 28 * 28 and image_shape is None:  # an MLP's first layer: each unit as an image
            tiles = w[:36].reshape(-1, 28, 28)
            title = "first linear layer: weights of the first units"
        else:
            tiles = None
        if tiles is not None:
            k = len(tiles)
            cols = min(k, 8)
            rows = -(-k // cols)
            fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.3 * rows + 0.5), squeeze=False)
            lim = float(np.abs(tiles).max()) or 1.0
            im = None
            for i, ax in enumerate(axes.ravel()):
                ax.axis("off")
                if i < k:
                    im = ax.imshow(tiles[i], cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
            fig.suptitle(title, fontsize=9)
            fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label="weight")
            fig.savefig(run_dir / "filters.png", dpi=100)
            plt.close(fig)
            written.append("filters.png")

    if confusion is not None:
        c = np.asarray(confusion)
        fig, ax = plt.subplots(figsize=(6, 5.5))
        im = ax.imshow(c, cmap="Blues", norm=matplotlib.colors.SymLogNorm(linthresh=1, vmin=0,
                                                                         vmax=max(int(c.max()), 1)))
        fig.colorbar(im, ax=ax, label="images (log scale)")
        for i in range(len(c)):
            for j in range(len(c)):
                if c[i, j]:
                    ax.text(
                        j,
                        i,
                        str(c[i, j]),
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if i == j else "black",
                    )
        ax.set_xticks(range(len(c))), ax.set_yticks(range(len(c)))
        ax.set_xlabel("predicted"), ax.set_ylabel("true")
        acc = np.trace(c) / max(c.sum(), 1)
        ax.set_title(f"test confusion matrix ({c.sum()} images, accuracy {100 * acc:.2f} %)")
        fig.tight_layout()
        fig.savefig(run_dir / "confusion.png", dpi=100)
        plt.close(fig)
        written.append("confusion.png")
    return written


# ---------------------------------------------------------------------------------------------------------
# the loop
# ---------------------------------------------------------------------------------------------------------
class SignalInterrupt(KeyboardInterrupt):
    """A second SIGINT/SIGTERM while the first is being honoured: give up the clean path."""

    def __init__(self, signum: int):
        super().__init__()
        self.signum = int(signum)


class _StopFlag:
    """Set by the first SIGINT or SIGTERM (handlers set only in the main thread); `signum` says which."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.set = False
        self.signum = signal.SIGINT
        self._old: dict = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._handler) for s in self.SIGNALS}
        return self

    def _handler(self, signum, frame):
        if self.set:  # a second signal while saving: give up the clean path
            raise SignalInterrupt(signum)
        self.set, self.signum = True, signum

    def __exit__(self, *exc):
        for s, old in self._old.items():
            signal.signal(s, old)
        return False


def prepare_resume(cfg: TrainConfig, run_dir: Path) -> tuple[TrainConfig, dict]:
    """Read RUN_DIR's checkpoint and check it belongs to `cfg.model`; the saved settings win except epochs
    and threads (more epochs than the run was started with stretch the cosine schedule from where it is).
    Raises CheckpointError. Writes nothing."""
    info = checkpoint.read(run_dir)
    meta = info["meta"]
    saved = meta.get("config")
    if not isinstance(saved, dict) or "position" not in meta:
        raise checkpoint.CheckpointError(f"{info['path']} is not a resumable training checkpoint")
    if info["model_name"] != cfg.model or saved.get("model") != cfg.model:
        raise checkpoint.CheckpointError(
            f"{info['path']} is a checkpoint of model {info['model_name']!r}, not {cfg.model!r}"
        )
    shape = tuple(meta.get("input_shape") or models.INPUT_SHAPE)
    if cfg.model == IMPORTED:  # its own architecture is the reference: nothing in the zoo to compare with
        expect = None
    else:
        expect = models.build_model(cfg.model, seed=saved.get("seed", 0), dropout=saved.get("dropout", 0.0),
                                    input_shape=shape, num_classes=int(meta.get("num_classes", 10)))
    if expect is not None and info["model_config"] != json.loads(json.dumps(expect.config())):
        raise checkpoint.CheckpointError(f"{info['path']}: its architecture differs from model {cfg.model!r}")
    done = int(meta["position"].get("epoch", 0))
    if cfg.epochs < done:
        raise checkpoint.CheckpointError(
            f"{info['path']} has already trained {plural(done, 'epoch')}; --epochs must be >= {done} to "
            "resume, "
            f"got {cfg.epochs}"
        )
    new = TrainConfig.from_dict({**saved, "epochs": cfg.epochs, "threads": cfg.threads})
    return new.validate(), info


def fit(
    cfg: TrainConfig,
    run_dir: str | os.PathLike,
    *,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    should_stop: Callable[[int], bool] | None = None,
) -> dict:
    """Train per `cfg`, writing RUN_DIR/checkpoint.npz and metrics.json every epoch and the plots at the end.

    `should_stop(step)` is asked after every optimiser step (tests use it to simulate Ctrl-C). Returns the
    summary dict that `cnnx train --json` prints; raises TrainingInterrupted after saving on a stop request.
    """
    run_dir = Path(run_dir)
    cfg.validate()
    info = None
    if resume:
        cfg, info = prepare_resume(cfg, run_dir)
    if cfg.threads is not None:
        set_num_threads(cfg.threads)

    from .io import dataset as io_dataset
    from .io import preprocess as io_preprocess

    t_load = time.perf_counter()
    ds_meta, num_classes, in_shape = None, 10, models.INPUT_SHAPE
    if cfg.data is not None:
        ds = io_dataset.load_npz(cfg.data)
        train_images, train_labels, x_test, y_test = ds.x_train, ds.y_train, ds.x_test, ds.y_test
        ds_meta, num_classes, in_shape = ds.meta(), ds.num_classes, ds.input_shape
        if cfg.limit is not None and cfg.limit > len(train_labels):
            raise ValueError(f"limit must be at most the {len(train_labels)} training images, "
                             f"got {cfg.limit}")
    else:
        train_images, train_labels = data.load_mnist("train")
        x_test, y_test = data.load_mnist("test")
    # with `limit`, or a dataset file, at most a tenth of the training images are held out
    cap = cfg.limit if cfg.limit is not None else (len(train_labels) if cfg.data is not None else None)
    n_val = cfg.n_val if cap is None else min(cfg.n_val, cap // 10)
    (x_tr, y_tr), (x_val, y_val) = data.train_val_split(
        n_val, seed=cfg.seed, images=train_images, labels=train_labels, limit=cfg.limit
    )
    t_load = time.perf_counter() - t_load

    # The preprocessing: what the resumed checkpoint stored, else the training set's per-channel statistics
    # for a dataset file, else MNIST's (the figures in cnnx.data).
    if info is not None:
        prep = io_preprocess.of_meta(info["meta"])
    elif cfg.data is not None:
        prep = io_preprocess.from_stats(x_tr)
    else:
        prep = io_preprocess.MNIST
    shape_meta = {"preprocess": prep.to_dict(), "input_shape": list(in_shape), "num_classes": num_classes}
    if ds_meta is not None:
        shape_meta["dataset"] = ds_meta

    if cfg.model == IMPORTED:
        if info is None:
            raise ValueError("an imported model trains from its run directory only: cnnx train --resume "
                             "--out RUN_DIR")
        model = nn.Sequential.from_config(info["model_config"])
        shape_meta.update({k: info["meta"][k] for k in ("input_shape", "num_classes", "source")
                           if k in info["meta"]})
    else:
        model = models.build_model(cfg.model, seed=cfg.seed, dropout=cfg.dropout, input_shape=in_shape,
                                   num_classes=num_classes)
    opt = optim.make_optimizer(
        cfg.optimizer, model.parameters(), cfg.lr, cfg.weight_decay, cfg.decoupled, cfg.momentum
    )
    n = len(y_tr)
    steps_per_epoch = -(-n // cfg.batch_size)
    sched = optim.LRSchedule(
        cfg.schedule, cfg.lr, steps_per_epoch * cfg.epochs, warmup=min(cfg.warmup_steps, steps_per_epoch)
    )
    loss_fn = nn.CrossEntropyLoss()

    history: list[dict] = []
    start_epoch, start_batch = 0, 0
    sums = {"loss": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}
    train_seconds_before = 0.0
    if info is not None:
        model.load_state_dict(info["state_dict"])
        pos0 = {"epoch": 0, "batch": 0, "sums": {}}
        fresh = info.get("optimizer") is None and info["meta"]["position"] == pos0
        if not fresh:  # an imported model starts with a fresh optimiser
            checkpoint.resume_optimizer(opt, info)
        pos = info["meta"]["position"]
        start_epoch, start_batch = int(pos["epoch"]), int(pos["batch"])
        sums = {**sums, **pos.get("sums", {})}
        history = list(info["meta"].get("metrics", []))
        train_seconds_before = float(info["meta"].get("train_seconds", 0.0))
        log(
            f"resuming {cfg.model} from {info['path']} at epoch {start_epoch + 1}, batch {start_batch} "
            f"(the checkpoint's settings are kept; only --epochs and --threads apply)"
        )

    run_dir.mkdir(parents=True, exist_ok=True)
    if resume:
        remove_stale_temps(run_dir)  # leftovers of writes killed mid-way (their writer is gone)
    # metrics.json's config says what ran: the held-out count actually used (summary.n_val_requested keeps
    # the asked one) and the resolved thread count
    cfg_dict = {**asdict(cfg), "n_val": int(len(y_val)), "threads": get_num_threads()}

    def save(epoch: int, batch: int, train_seconds: float) -> Path:
        meta = {
            "model_name": cfg.model,
            "epoch": epoch if batch == 0 else epoch + batch / steps_per_epoch,
            "metrics": history,
            "config": cfg_dict,
            "train_seconds": train_seconds,
            "position": {"epoch": epoch, "batch": batch, "sums": dict(sums)},
            **shape_meta,
        }
        return checkpoint.save(run_dir / checkpoint.CHECKPOINT_NAME, model, opt, meta)

    train_seconds = train_seconds_before
    run_images, run_seconds = 0, 0.0  # this process only: the images/s figure of this invocation
    wall0 = time.perf_counter()
    with _StopFlag() as stop:
        for epoch in range(start_epoch, cfg.epochs):
            perm = np.random.default_rng([cfg.seed, epoch]).permutation(n)
            first = start_batch if epoch == start_epoch else 0
            if first == 0:
                sums = {"loss": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}
            bar = None
            if progress:
                from tqdm import tqdm

                bar = tqdm(
                    total=n,
                    initial=min(first * cfg.batch_size, n),
                    unit="img",
                    unit_scale=True,
                    desc=f"epoch {epoch + 1}/{cfg.epochs}",
                    leave=True,
                    dynamic_ncols=True,
                )
            model.train()
            for b in range(first, steps_per_epoch):
                t0 = time.perf_counter()
                idx = perm[b * cfg.batch_size : (b + 1) * cfg.batch_size]
                xb = x_tr[idx]
                if cfg.augment:
                    xb = augment(xb, np.random.default_rng([cfg.seed, epoch, b]))
                x, y = prep.to_float(xb), y_tr[idx]
                logits = model.forward(x)
                loss = float(loss_fn.forward(logits, y))
                model.backward(loss_fn.backward(), need_input_grad=False)  # the input needs no gradient
                opt.lr = sched(epoch * steps_per_epoch + b)
                opt.step()
                dt = time.perf_counter() - t0
                train_seconds += dt
                run_images += len(y)
                run_seconds += dt
                sums["loss"] += loss * len(y)
                sums["correct"] += int((logits.argmax(axis=1) == y).sum())
                sums["seen"] += len(y)
                sums["seconds"] += dt
                if bar is not None:
                    bar.update(len(y))
                    bar.set_postfix(
                        loss=f"{sums['loss'] / sums['seen']:.4f}",
                        acc=f"{100 * sums['correct'] / sums['seen']:.2f}%",
                        lr=f"{opt.lr:.4f}",
                        refresh=False,
                    )
                if stop.set or (should_stop is not None and should_stop(epoch * steps_per_epoch + b + 1)):
                    if bar is not None:
                        bar.close()
                    path = save(epoch, b + 1, train_seconds)
                    raise TrainingInterrupted(path, epoch, b + 1, stop.signum)
            if bar is not None:
                bar.close()
            val = (
                evaluate(model, x_val, y_val, preprocess=prep)
                if len(y_val)
                else {"loss": float("nan"), "accuracy": float("nan")}
            )
            row = {
                "epoch": epoch + 1,
                "train_loss": sums["loss"] / max(sums["seen"], 1),
                "train_accuracy": sums["correct"] / max(sums["seen"], 1),
                "val_loss": val["loss"],
                "val_accuracy": val["accuracy"],
                "lr_end": opt.lr,
                "train_seconds": sums["seconds"],
                "images_per_second": sums["seen"] / sums["seconds"] if sums["seconds"] else None,
            }
            history.append(row)
            log(
                f"epoch {epoch + 1}/{cfg.epochs}: train loss {row['train_loss']:.4f} acc "
                f"{100 * row['train_accuracy']:.2f}% | val loss {row['val_loss']:.4f} acc "
                f"{100 * row['val_accuracy']:.2f}% | {row['images_per_second'] or 0:.0f} img/s"
            )
            sums = {"loss": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}
            path = save(epoch + 1, 0, train_seconds)
            write_json_atomic(run_dir / METRICS_NAME, {"config": cfg_dict, "epochs": history})
            # A signal during the validation pass is honoured here, with the epoch's checkpoint just saved
            # (after the last epoch too: `--resume` then runs only the final evaluation).
            if stop.set:
                raise TrainingInterrupted(path, epoch + 1, 0, stop.signum)

        test = evaluate(model, x_test, y_test, preprocess=prep)
        if stop.set:  # during the final test evaluation: nothing of it is written yet
            raise TrainingInterrupted(run_dir / checkpoint.CHECKPOINT_NAME, cfg.epochs, 0, stop.signum)
    wall = time.perf_counter() - wall0
    summary = {
        "model": cfg.model,
        "run_dir": str(run_dir),
        "checkpoint": str(run_dir / checkpoint.CHECKPOINT_NAME),
        "epochs": cfg.epochs,
        "test_accuracy": test["accuracy"],
        "test_error": test["error"],
        "test_loss": test["loss"],
        "val_accuracy": history[-1]["val_accuracy"] if history else None,
        "wall_seconds": wall,
        "train_seconds": train_seconds,
        "images_per_second": run_images / run_seconds if run_seconds else None,
        "data_seconds": t_load,
        "n_train": n,
        "n_val": int(len(y_val)),  # the images held out: --val, capped at a tenth with --limit or --data
        "n_val_requested": cfg.n_val,
        "threads": get_num_threads(),  # the count the kernels used (--threads, OMP_NUM_THREADS or cores)
    }
    write_json_atomic(
        run_dir / METRICS_NAME, {"config": cfg_dict, "epochs": history, "test": test, "summary": summary}
    )
    # The final checkpoint also records the test result, for `cnnx eval` and the co-simulation harness.
    with_meta = {
        "model_name": cfg.model,
        "epoch": cfg.epochs,
        "metrics": history,
        "config": cfg_dict,
        "train_seconds": train_seconds,
        "test": {k: test[k] for k in ("accuracy", "error", "loss")},
        "position": {"epoch": cfg.epochs, "batch": 0, "sums": {}},
        **shape_meta,
    }
    checkpoint.save(run_dir / checkpoint.CHECKPOINT_NAME, model, opt, with_meta)
    summary["plots"] = write_plots(run_dir, history, model, test["confusion"],
                                   None if cfg.data is None else in_shape)
    summary["confusion"] = test["confusion"]
    return summary
