"""Fixtures of the harness tests: a tiny LeNet-5 trained here (a checkpoint the tests make themselves)."""

import numpy as np
import pytest


@pytest.fixture(scope="session")
def tiny_run_dir(tmp_path_factory):
    """A LeNet-5 run directory: one short epoch on 2,000 training images (far above chance, quick)."""
    from cnnx.train import TrainConfig, fit

    run = tmp_path_factory.mktemp("tiny_lenet5")
    fit(TrainConfig(model="lenet5", epochs=1, limit=2000, batch_size=32, lr=0.05, seed=0, threads=2,
                    augment=False), run,
        progress=False, log=lambda *a, **k: None)
    return run


@pytest.fixture(scope="session")
def tiny(tiny_run_dir):
    """(float model, quantised model, 300 calibration images, 64 test images, their labels)."""
    from cnnx import data, ptq
    from cnnx.checkpoint import load

    model, _ = load(tiny_run_dir)
    calib = data.load_mnist("train")[0][:300]
    images, labels = data.load_mnist("test")
    return model, ptq.quantize_model(model, calib), calib, np.ascontiguousarray(images[:64]), labels[:64]

