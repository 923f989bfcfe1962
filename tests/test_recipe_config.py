"""Recipe files: extends, --set overrides and validation (no training here)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from cxrkit.cli import cli
from cxrkit.errors import CxrkitError
from cxrkit.recipes import apply_overrides, list_recipes, load_recipe, resolve, validate


def test_shipped_recipes_resolve_and_validate():
    assert {"mlmi2024", "mlmi2024-demo"} <= set(list_recipes())
    full = resolve("mlmi2024")
    assert list(full["stages"])[:4] == ["triplet", "classifier", "saliency", "fusion"]
    assert full["training"]["learning_rate"] == 1e-4 and full["training"]["epochs"] == 50
    assert full["parts"]["unet"]["filters"] == [64, 128, 256, 512, 1024]
    assert full["stages"]["saliency"]["trainable"] == ["unet"]
    assert full["stages"]["fusion"]["trainable"] == ["fusion"]
    demo = resolve("mlmi2024", demo=True)  # what runs without --data
    assert demo["name"] == "mlmi2024-demo" and demo["stages"]["triplet"]["run_eagerly"] is True
    # the profile only changes what it lists; the rest comes from mlmi2024.toml
    assert demo["stages"]["saliency"]["loss"] == full["stages"]["saliency"]["loss"]
    assert demo["parts"]["unet"]["block"] == "res_se"


def test_overrides_are_typed_and_validated():
    recipe = load_recipe("mlmi2024")
    out = apply_overrides(recipe, ["stages.saliency.epochs=5", "training.learning_rate=3e-4",
                                   "parts.unet.filters=[8, 16, 32, 64, 128]",
                                   "stages.unet_s.enabled=false", "training.reduce_lr_factor=1"])
    assert out["stages"]["saliency"]["epochs"] == 5
    assert out["training"]["learning_rate"] == pytest.approx(3e-4)
    assert out["parts"]["unet"]["filters"] == [8, 16, 32, 64, 128]
    assert out["stages"]["unet_s"]["enabled"] is False
    assert isinstance(out["training"]["reduce_lr_factor"], float)
    assert "epochs" not in recipe["stages"]["saliency"]  # the input is left alone
    for bad, message in [("training.lerning_rate=1", "unknown key"),
                         ("stages.nope.epochs=1", "unknown key 'stages.nope'"),
                         ("training.epochs=many", "expected int, got str"),
                         ("training.run_eagerly=1", "expected bool"),
                         ("stages.saliency.epochs=1.5", "expected int"),
                         ("training.epochs", "KEY=VALUE")]:
        with pytest.raises(CxrkitError, match=message):
            apply_overrides(recipe, [bad])


def test_validation_names_the_problem(tmp_path):
    recipe = load_recipe("mlmi2024")
    broken = apply_overrides(recipe, ["stages.saliency.trainable=[\"fusion\"]"])
    with pytest.raises(CxrkitError, match="stages.saliency.trainable names 'fusion'"):
        validate(broken)
    broken = apply_overrides(recipe, ["stages.saliency.task=\"segment\""])
    with pytest.raises(CxrkitError, match="task 'segment' is not one of"):
        validate(broken)
    child = tmp_path / "child.toml"
    child.write_text(f'extends = "{(tmp_path / "base.toml").as_posix()}"\n')
    (tmp_path / "base.toml").write_text("name = 'x'\n[data\n")
    with pytest.raises(CxrkitError, match="not valid TOML"):
        load_recipe(child)


def test_cli_rejects_bad_sets_before_any_work(tmp_path):
    result = CliRunner().invoke(cli, ["recipe", "run", "mlmi2024", "--out", str(tmp_path / "r"),
                                      "--set", "stages.saliency.epoks=5"])
    assert result.exit_code == 1 and "unknown key" in result.output
    assert not (tmp_path / "r").exists()
    shown = CliRunner().invoke(cli, ["recipe", "show", "mlmi2024", "--demo"])
    assert shown.exit_code == 0 and '"name": "mlmi2024-demo"' in shown.output
    listed = CliRunner().invoke(cli, ["recipe", "list"])
    assert "mlmi2024:" in listed.output
