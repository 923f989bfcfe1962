"""Recipe files: extends, --set overrides, the typed recipe and its registries (no training)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from cxrkit.cli import cli
from cxrkit.errors import CxrkitError
from cxrkit.recipes import apply_overrides, list_recipes, load_recipe, parse, resolve
from cxrkit.recipes.evaluate import EVALUATIONS
from cxrkit.recipes.losses import LOSSES
from cxrkit.recipes.parts import BUILDERS
from cxrkit.recipes.reports import REPORTS
from cxrkit.recipes.tasks import TASKS

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_recipes_resolve_to_typed_recipes():
    assert {"mlmi2024", "mlmi2024-demo", "mlmi2023", "mlmi2023-demo"} <= set(list_recipes())
    full = resolve("mlmi2024")
    assert list(full.stages)[:4] == ["triplet", "classifier", "saliency", "fusion"]
    assert full.training.learning_rate == 1e-4 and full.training.epochs == 50
    assert full.parts["unet"].options["filters"] == [64, 128, 256, 512, 1024]
    assert full.stages["saliency"].trainable == ("unet",)
    assert full.stages["fusion"].trainable == ("fusion",)
    # what a stage leaves out comes from [training] / [data], resolved once, here
    saliency = full.stages["saliency"]
    assert (saliency.epochs, saliency.learning_rate, saliency.optimizer,
            saliency.batch_size) == (50, 1e-4, "adam", 16)
    assert full.stages["unet_s"].label == "UNet" and full.stages["triplet"].label == "triplet"
    demo = resolve("mlmi2024", demo=True)  # what runs without --data
    assert demo.name == "mlmi2024-demo" and demo.stages["triplet"].epochs == 2
    assert (demo.training.grappler, demo.training.checkpoint) == (False, False)
    assert (full.training.grappler, full.training.checkpoint) == (True, True)
    assert demo.parts["densenet"].options["growth_rate"] == 12
    assert "growth_rate" not in full.parts["densenet"].options
    # the profile only changes what it lists; the rest comes from mlmi2024.toml
    assert demo.stages["saliency"].loss == full.stages["saliency"].loss
    assert demo.parts["unet"].options["block"] == "res_se"
    vit = resolve("mlmi2023").stages["vit_small"]
    assert (vit.optimizer, vit.epochs) == ("sgd", 300)


def test_the_studies_schedules():
    """2023: a constant learning rate for the fixed epochs (§3.3.3). 2024: the authors' code
    where the thesis is silent: per-stage batch sizes, x0.1 after 40 flat epochs back to the
    best weights, an early stopping that cannot fire within 50 epochs."""
    study_2023 = resolve("mlmi2023").training
    assert study_2023.early_stopping_patience == 0 and study_2023.reduce_lr_patience == 0
    study_2024 = resolve("mlmi2024")
    t = study_2024.training
    assert (t.reduce_lr_factor, t.reduce_lr_patience, t.reload_best_on_reduce) == (0.1, 40, True)
    assert t.early_stopping_patience > t.epochs
    sizes = {name: stage.batch_size for name, stage in study_2024.stages.items()}
    assert {k: sizes[k] for k in ("triplet", "classifier", "saliency", "fusion", "mt_unet")} \
        == {"triplet": 32, "classifier": 16, "saliency": 16, "fusion": 6, "mt_unet": 8}


def test_plateau_schedule_drops_the_rate_and_goes_back_to_the_best_weights():
    """Validation losses 5, 3, 4, 4, 4 with patience 3: the rate drops x0.1 after the third
    epoch without a new best, and the weights return to those of epoch 1 (the best)."""
    import keras
    import numpy as np

    from cxrkit.recipes.callbacks import PlateauSchedule

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.Adam(1e-3), "mse")
    schedule = PlateauSchedule("val_loss", factor=0.1, patience=3, reload_best=True)
    schedule.set_model(model)
    schedule.on_train_begin()
    kernel = model.layers[0].kernel
    seen = []
    for epoch, loss in enumerate([5.0, 3.0, 4.0, 4.0, 4.0]):
        kernel.assign(np.full((2, 1), float(epoch), "float32"))  # "training" moved it
        logs = {"val_loss": loss}
        schedule.on_epoch_end(epoch, logs)
        seen.append(round(logs["learning_rate"], 8))
    assert seen == [1e-3, 1e-3, 1e-3, 1e-3, 1e-4]
    np.testing.assert_array_equal(kernel.numpy(), np.full((2, 1), 1.0))  # epoch 1's weights
    plain = PlateauSchedule("val_loss", factor=0.1, patience=1, reload_best=False)
    plain.set_model(model)
    plain.on_train_begin()
    for epoch, loss in enumerate([2.0, 2.5]):
        kernel.assign(np.full((2, 1), 7.0 + epoch, "float32"))
        plain.on_epoch_end(epoch, {"val_loss": loss})
    np.testing.assert_array_equal(kernel.numpy(), np.full((2, 1), 8.0))  # not reloaded


def test_overrides_are_typed_and_checked():
    recipe = load_recipe("mlmi2024")
    out = apply_overrides(recipe, ["stages.saliency.epochs=5", "training.learning_rate=3e-4",
                                   "parts.unet.filters=[8, 16, 32, 64, 128]",
                                   "stages.unet_s.enabled=false", "training.min_learning_rate=0",
                                   "stages.fusion.batch_size=6", "parts.unet_s.multitask=true"])
    assert out["stages"]["saliency"]["epochs"] == 5
    assert out["training"]["learning_rate"] == pytest.approx(3e-4)
    assert out["parts"]["unet"]["filters"] == [8, 16, 32, 64, 128]
    assert out["stages"]["unet_s"]["enabled"] is False
    assert isinstance(out["training"]["min_learning_rate"], float)
    assert "epochs" not in recipe["stages"]["saliency"]  # the input is left alone
    typed = parse(out)
    assert typed.stages["saliency"].epochs == 5 and typed.stages["fusion"].batch_size == 6
    assert typed.stages["classifier"].epochs == 50
    for bad, message in [("training.lerning_rate=1", "unknown key"),
                         ("stages.nope.epochs=1", "unknown key 'stages.nope'"),
                         ("training.epochs=many", "expected int, got str"),
                         ("training.run_eagerly=1", "expected bool"),
                         ("stages.saliency.epochs=1.5", "expected int"),
                         ("parts.unet.blocks=1", "unknown key"),
                         ("parts.unet.dual_encoder=1", "expected bool"),
                         ("training.epochs", "KEY=VALUE")]:
        with pytest.raises(CxrkitError, match=message):
            apply_overrides(recipe, [bad])


@pytest.mark.parametrize(("override", "message"), [
    ('stages.saliency.trainable=["fusion"]', "stages.saliency.trainable names 'fusion'"),
    ('stages.saliency.task="segment"', "task 'segment' is not one of encoder, saliency"),
    ('stages.saliency.loss={saliency = "dice"}', "loss.saliency 'dice' is not one of"),
    ('stages.saliency.evaluate="all"', "evaluate 'all' is not one of"),
    ('parts.unet.builder="transformer"', "builder 'transformer' is not one of"),
    ('report.layout="mlmi2025"', "report.layout 'mlmi2025' is not one of mlmi2024, mlmi2023"),
    ("data.batch_size=0", "data.batch_size must be positive"),
    ("stages.fusion.batch_size=-2", "stages.fusion.batch_size must be positive"),
    ("stages.fusion.epochs=0", "stages.fusion.epochs must be positive"),
    ("training.learning_rate=nan", "training.learning_rate must be positive, got nan"),
    ("training.reduce_lr_patience=-1", "reduce_lr_patience must be 0 \\(off\\) or more"),
    ("training.reduce_lr_factor=1.5", "reduce_lr_factor must be in \\(0, 1\\)"),
    ("training.beta_1=1.0", "beta_1 must be in \\[0, 1\\)"),
    ("stages.triplet.margin=-1.0", "stages.triplet.margin must be positive"),
    ('stages.saliency.optimizer="rmsprop"', "optimizer must be one of adam, adamw, sgd"),
    ('stages.gazegnn.augmentation="flip"', "stages.gazegnn.augmentation must be one of "
                                           "recipe, none, mlmi2023, gazegnn, not 'flip'"),
    ('stages.saliency.parts={unet = "unet", classifier = "unet_s"}', "no role 'classifier'"),
    ('report.saliency_reference="nope"', "names unknown stage 'nope'"),
])
def test_parse_names_the_problem(override, message):
    with pytest.raises(CxrkitError, match=message):
        parse(apply_overrides(load_recipe("mlmi2024"), [override]))


def test_unknown_keys_and_parse_errors_in_files(tmp_path):
    base = load_recipe("mlmi2024")
    broken = json.loads(json.dumps(base))
    broken["training"]["lerning_rate"] = 1e-3
    with pytest.raises(CxrkitError, match="training has unknown key"):
        parse(broken)
    del broken["training"]["lerning_rate"]
    broken["parts"]["classifier_x"] = {"builder": "classifier"}
    with pytest.raises(CxrkitError, match="parts.classifier_x lacks 'model'"):
        parse(broken)
    child = tmp_path / "child.toml"
    child.write_text(f'extends = "{(tmp_path / "base.toml").as_posix()}"\n')
    (tmp_path / "base.toml").write_text("name = 'x'\n[data\n")
    with pytest.raises(CxrkitError, match="not valid TOML"):
        load_recipe(child)


def test_every_vocabulary_is_one_registry_that_validation_reads():
    """Validation accepts exactly the registered names: registering a task makes it valid."""
    assert set(TASKS) == {"encoder", "saliency", "fusion", "mt_unet", "classifier", "gazegnn"}
    assert set(LOSSES) == {"triplet", "cross_entropy", "kl", "uncertainty"}
    assert set(BUILDERS) == {"densenet_encoder", "dense_head", "unet", "fusion", "classifier",
                             "gazegnn"}
    assert set(EVALUATIONS) == {"none", "classification", "saliency", "both", "gradcam"}
    assert set(REPORTS) == {"mlmi2024", "mlmi2023"}
    from cxrkit.data.reader import AUGMENTATIONS as READER
    from cxrkit.recipes.schema import AUGMENTATIONS

    assert ("recipe", *READER) == AUGMENTATIONS  # the schema names the reader's modes
    recipe = apply_overrides(load_recipe("mlmi2024"), ['stages.unet_s.task="echo"'])
    with pytest.raises(CxrkitError, match="task 'echo'"):
        parse(recipe)
    TASKS.register("echo", roles=("unet",))(lambda roles: roles["unet"])
    try:
        assert parse(recipe).stages["unet_s"].task == "echo"
    finally:
        del TASKS["echo"]


def test_cli_rejects_bad_sets_before_any_work(tmp_path):
    result = CliRunner().invoke(cli, ["recipe", "run", "mlmi2024", "--out", str(tmp_path / "r"),
                                      "--set", "stages.saliency.epoks=5"])
    assert result.exit_code == 1 and "unknown key" in result.output
    assert not (tmp_path / "r").exists()
    shown = CliRunner().invoke(cli, ["recipe", "show", "mlmi2024", "--demo"])
    assert shown.exit_code == 0, shown.output
    document = json.loads(shown.output)
    assert document["name"] == "mlmi2024-demo"
    assert document["stages"]["fusion"]["batch_size"] == 12
    assert document["stages"]["unet_s"]["batch_size"] == 12  # resolved from [data]
    listed = CliRunner().invoke(cli, ["recipe", "list"])
    assert "mlmi2024:" in listed.output


def test_a_built_wheel_ships_the_recipes(tmp_path):
    """``pip install .`` (not editable): the recipes resolve from the installed package, from
    a working directory outside the checkout."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        (source / name).write_bytes((ROOT / name).read_bytes())
    for package in ("cxrkit", "data_prep"):
        for path in (ROOT / package).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                target = source / path.relative_to(ROOT)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(path.read_bytes())
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                            str(tmp_path / "dist"), str(source)], capture_output=True,
                           text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("cxrkit-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "cxrkit/recipes/toml/mlmi2024.toml" in names
    site = tmp_path / "site"
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q",
                                "--target", str(site), str(wheel)], capture_output=True,
                               text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr[-2000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    probe = ("import cxrkit, cxrkit.recipes as r; print(cxrkit.__file__); "
             "print(r.resolve('mlmi2024').name, r.resolve('mlmi2023', demo=True).name, "
             "sorted(r.list_recipes()))")
    shown = subprocess.run([sys.executable, "-c", probe], cwd=elsewhere, capture_output=True,
                           text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(site)})
    assert shown.returncode == 0, shown.stderr[-2000:]
    where, names_line = shown.stdout.splitlines()
    assert where.startswith(str(site))
    assert names_line.startswith("mlmi2024 mlmi2023-demo ['mlmi2023', 'mlmi2023-demo'")
