"""Shared fixtures, built once per session: the read-only real samples (skipped when absent),
small phantom sets, a small CNN trained on phantom SIIM-ACR, converted demo-size EGD-CXR
records, and one run of the mlmi2024 demo recipe.

The suite runs on two pytest-xdist workers with ``--dist loadfile`` (pyproject.toml): a file's
tests run on one worker, so a fixture shared within a file is built once; the expensive ones
are each used by one file. The longest files run first (:data:`LONGEST_FIRST`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cxrkit import gc_policy

# Two xdist workers share two cores: one TensorFlow thread each (and in the cxrkit processes
# the tests start, which inherit this environment) instead of two apiece fighting for them.
for _name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

# The command line's collector policy: the workers trace dozens of models, and full collections
# would walk all of their graphs again and again (cxrkit.gc_policy).
gc_policy.for_traced_models()

# The files that take longest (seconds of test time on 2 cores, measured with --durations=0),
# run first: xdist hands files to the two workers in collection order, and a long file handed
# out last would leave one worker alone at the end.
LONGEST_FIRST = ["test_models_zoo.py", "test_recipe_resume_and_strategies.py",
                 "test_serving.py", "test_recipe_mlmi2023.py", "test_recipe_mlmi2024.py",
                 "test_multi_worker.py", "test_real_siim.py", "test_models_mlmi2024.py",
                 "test_grad_cam.py", "test_beam_runner.py", "test_side_process.py",
                 "test_models_gazegnn.py", "test_phantom_learnable.py"]


def pytest_collection_modifyitems(items) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: order kept


REALDATA = Path(os.environ.get(
    "CXRKIT_REALDATA", Path(__file__).resolve().parents[2] / "shared" / "realdata"))


@pytest.fixture(scope="session")
def realdata() -> Path:
    """``../shared/realdata`` beside the checkout (or $CXRKIT_REALDATA); skips when absent."""
    if not REALDATA.is_dir():
        pytest.skip(f"real samples not found at {REALDATA}")
    return REALDATA


@pytest.fixture(scope="session")
def siim_phantom(tmp_path_factory):
    """A 12-image phantom SIIM-ACR set at 96 px: (folder, what was written)."""
    from data_prep.phantom.siim_acr import generate_siim_acr

    out = tmp_path_factory.mktemp("siim")
    return out, generate_siim_acr(out, n=12, size=96, seed=3)


@pytest.fixture(scope="session")
def egd_phantom(tmp_path_factory):
    """A 9-image phantom EGD-CXR set at about 160 px rows: (folder, what was written)."""
    from data_prep.phantom.egd_cxr import generate_egd_cxr

    out = tmp_path_factory.mktemp("egd")
    return out, generate_egd_cxr(out, n=9, size=160, seed=5)


@pytest.fixture(scope="session")
def trained_siim_cnn(tmp_path_factory):
    """A small CNN (last convolution ``target``) trained for 30 epochs on 80 of 120 phantom
    SIIM-ACR images (64 px); the other 40 are held out. Returns (model, z-scored images,
    labels, phantom items)."""
    import keras
    import numpy as np

    from cxrkit.preprocessing import read_dicom
    from data_prep.phantom.siim_acr import generate_siim_acr

    items = generate_siim_acr(tmp_path_factory.mktemp("siim_cnn"), n=120, size=64, seed=1)
    images = np.stack([read_dicom(i.path) for i in items]).astype("float32")
    images = (images - images.mean((1, 2), keepdims=True)) / images.std((1, 2), keepdims=True)
    labels = np.array([i.label for i in items])
    keras.utils.set_random_seed(0)
    image = keras.Input((64, 64, 1), name="image")
    x = image
    for i, width in enumerate((16, 32)):
        x = keras.layers.Conv2D(width, 3, activation="relu", padding="same", name=f"conv{i}")(x)
        x = keras.layers.MaxPooling2D(name=f"pool{i}")(x)
    x = keras.layers.Conv2D(32, 3, activation="relu", padding="same", name="target")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(image, keras.layers.Dense(2, name="logits")(x))
    model.compile(keras.optimizers.Adam(1e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(images[:80, ..., None], labels[:80], epochs=30, batch_size=16, verbose=0)
    return model, images[..., None], labels, items


# The mlmi2024 demo recipe at test size: the real pipeline (every stage, evaluation, report,
# export) on 36 phantom images of 32 x 32 px, with a DenseNet of one dense layer per block
# (DenseNet201's own widths are pinned by the model tests), one or two epochs a stage, run
# eagerly (tracing a training graph costs more than a few tiny eager steps; the model tests
# run the stage models' compiled training steps).
MLMI2024_TINY = ["demo.images=36", "demo.size=96", "demo.target=[32, 32]",
                 "demo.canvas=[96, 96]", "demo.sigma=3.0",
                 "demo.test=9", "demo.val=6", "data.batch_size=6", "stages.triplet.epochs=1",
                 "stages.classifier.epochs=1", "stages.saliency.epochs=1",
                 "stages.fusion.epochs=1", "stages.unet_s.epochs=1", "stages.gazegnn.epochs=1",
                 "stages.mt_unet.enabled=false", "parts.gazegnn.blocks=[1, 1, 1, 1]",
                 "parts.gazegnn.channels=[8, 16, 24, 32]", "stages.gazegnn.precise_bn_batches=0",
                 "parts.densenet.blocks=[1, 1, 1, 1]", "parts.densenet_plain.blocks=[1, 1, 1, 1]",
                 "training.run_eagerly=true", *(f"stages.{stage}.batch_size=6" for stage in (
                     "triplet", "classifier", "saliency", "fusion"))]


def cxrkit_command(*args: str) -> list[str]:
    """The ``cxrkit`` command line run by this interpreter."""
    return [sys.executable, "-c", "from cxrkit.cli import main; main()", *args]


def quiet_env() -> dict:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}


def sets(items) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


@pytest.fixture(scope="session")
def egd_records(tmp_path_factory):
    """The demo's phantom EGD-CXR set at test size, converted once: a records folder for the
    recipe runs that pass --data (resume, strategies)."""
    from data_prep.egd_cxr.convert import convert_egd_cxr
    from data_prep.phantom.egd_cxr import generate_egd_cxr

    raw = tmp_path_factory.mktemp("egd_records_raw")
    generate_egd_cxr(raw, n=36, size=96, seed=0)
    out = tmp_path_factory.mktemp("egd_records")
    convert_egd_cxr(raw / "master_sheet.csv", raw / "eye_gaze.csv", raw, out, target=(32, 32),
                    canvas=(96, 96), sigma=3.0, test=9, val=6, seed=0)
    return out


@pytest.fixture(scope="session")
def mlmi2024_run(tmp_path_factory):
    """``cxrkit recipe run mlmi2024`` without --data (the demo path: phantom data generated,
    converted, every stage trained, evaluated, exported, reported), in the environment a user
    has (no TF_CPP_MIN_LOG_LEVEL): (run folder, stdout, stderr)."""
    out = tmp_path_factory.mktemp("mlmi2024") / "run"
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL",
                                                            "CXRKIT_VERBOSE")}
    result = subprocess.run(cxrkit_command("recipe", "run", "mlmi2024", "--out", str(out),
                                           *sets(MLMI2024_TINY)),
                            capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out, result.stdout, result.stderr
