"""Independent stages in a side process: which stages go there, seeds that make the result the
same wherever a part is built, and a failing side process that stops the run with its output.
The whole path (a demo run whose baselines train aside) is exercised by ``mlmi2024_run``."""

from __future__ import annotations

import numpy as np
import pytest

from cxrkit.errors import CxrkitError
from cxrkit.recipes.config import resolve
from cxrkit.recipes.parts import build_parts
from cxrkit.recipes.side_process import (
    SideProcess,
    exported_stage,
    final_parts,
    independent_stages,
    loaded_back,
    side_stages,
)


def test_the_demo_trains_its_baselines_aside():
    demo = resolve("mlmi2024", demo=True)
    assert independent_stages(demo) == ["unet_s", "mt_unet", "gazegnn"]
    assert side_stages(demo, "default") == ["unet_s", "mt_unet", "gazegnn"]
    assert side_stages(demo, "mirrored") == [] and side_stages(demo, "multi-worker") == []
    assert side_stages(resolve("mlmi2024", ["training.side_process=false"], demo=True),
                       "default") == []
    assert side_stages(resolve("mlmi2024"), "default") == []  # off outside the demo
    # the chain shares parts stage to stage: none of it is independent
    chain = resolve("mlmi2024", demo=True, stages=["triplet", "classifier", "saliency",
                                                    "fusion"])
    assert independent_stages(chain) == []
    # all independent: the side process takes the later half, so the main process never
    # waits for it before a stage of its own
    assert side_stages(resolve("mlmi2024", demo=True, stages=["unet_s", "res_se_unet"]),
                       "default") == ["res_se_unet"]
    backbones = resolve("mlmi2023", demo=True)
    assert side_stages(backbones, "default") == ["vit_small"]
    assert side_stages(resolve("mlmi2023", demo=True, stages=["resnet18"]), "default") == []
    four = resolve("mlmi2024", demo=True, stages=["unet_s", "res_se_unet", "mt_unet",
                                                  "gazegnn"])
    assert side_stages(four, "default") == ["mt_unet", "gazegnn"]


def _weights(model) -> list[np.ndarray]:
    return [v.numpy() for v in model.weights]


def test_a_part_starts_from_the_same_weights_whatever_else_is_built():
    parts = resolve("mlmi2024", ["parts.densenet.blocks=[1, 1, 1, 1]"], demo=True).parts
    shape = (32, 32, 1)
    alone = build_parts(["unet_s"], parts, shape, 3, seed=0)
    after = build_parts(["mt_unet", "unet_s"], parts, shape, 3, seed=0)
    for a, b in zip(_weights(alone["unet_s"]), _weights(after["unet_s"]), strict=True):
        np.testing.assert_array_equal(a, b)
    # a part that takes another (the dual-encoder UNet takes the DenseNet201 encoder) draws
    # the same whether that one was built before it or while it was built
    inside = build_parts(["unet"], parts, shape, 3, seed=0)
    before = build_parts(["densenet", "unet"], parts, shape, 3, seed=0)
    for name in ("densenet", "unet"):
        for a, b in zip(_weights(inside[name]), _weights(before[name]), strict=True):
            np.testing.assert_array_equal(a, b)
    other = build_parts(["unet_s"], parts, shape, 3, seed=1)
    assert not np.array_equal(_weights(other["unet_s"])[0], _weights(alone["unet_s"])[0])


def test_a_failing_side_process_stops_the_run_with_its_output(tmp_path):
    recipe = resolve("mlmi2024", demo=True)
    side = SideProcess(recipe, tmp_path / "no-records", tmp_path / "run", ["unet_s"],
                       resume=False)
    try:
        with pytest.raises(CxrkitError, match="side process .* ended .* before stage unet_s"):
            side.wait_for("unet_s", print)
    finally:
        side.stop()
    assert "manifest.json" in side.log.read_text()  # the child's own error, kept for the user


def test_a_failed_side_stage_stops_the_run_with_its_error(tmp_path):
    """What the child records for a stage that raised (its status file) ends the run with
    that error, after the stage's own output."""
    side = SideProcess(resolve("mlmi2024", demo=True), tmp_path / "no-records",
                       tmp_path / "run", ["unet_s"], resume=False)
    folder = tmp_path / "run" / "stages" / "unet_s"
    folder.mkdir(parents=True)
    (folder / "console.txt").write_text("Epoch 1/12\n")
    (folder / "side.json").write_text('{"status": "failed", "error": "ValueError: bad"}\n')
    printed = []
    try:
        with pytest.raises(CxrkitError, match="stage unet_s failed in the side process: "
                                              "ValueError: bad"):
            side.wait_for("unet_s", printed.append)
    finally:
        side.stop()
    assert printed == ["Epoch 1/12"]


def test_a_failed_export_in_the_side_process_stops_the_run_with_its_error(tmp_path):
    """The demo exports its final model in the side process; a failed export ends the run with
    the child's error and names its traceback, and a done one gives the version folder."""
    recipe = resolve("mlmi2024", demo=True)
    side = SideProcess(recipe, tmp_path / "no-records", tmp_path / "run", ["unet_s"],
                       resume=False)
    assert side.exports == "fusion" and "--export=fusion" in side.process.args
    side.process.wait(timeout=120)  # no records: it ends before exporting
    try:
        with pytest.raises(CxrkitError, match="side process ended .* before exporting"):
            side.wait_export()
        (side.folder / "export.json").write_text(
            '{"status": "failed", "error": "OSError: disk full"}\n')
        with pytest.raises(CxrkitError, match="export failed in the side process: OSError: "
                                              "disk full .*stderr.txt"):
            side.wait_export()
        (side.folder / "export.json").write_text('{"status": "done", "folder": "/m/1"}\n')
        assert str(side.wait_export()) == "/m/1"
    finally:
        side.stop()
    assert exported_stage(resolve("mlmi2024", demo=True, stages=["unet_s"])) is None



def test_parts_are_final_once_their_last_training_stage_is_done(tmp_path):
    """The export loads a part early once no later stage trains it: DenseNet201 after the
    classifier (stage 1b; stages 2 and 3 keep it frozen), the UNet after stage 2."""
    recipe = resolve("mlmi2024", demo=True)
    assert final_parts(recipe, tmp_path) == []
    for stage, expected in [("triplet", []),  # the classifier trains DenseNet201 again
                            ("classifier", ["densenet", "densenet_head"]),
                            ("saliency", ["densenet", "densenet_head", "unet"]),
                            ("unet_s", ["densenet", "densenet_head", "unet", "unet_s"])]:
        (tmp_path / "stages" / stage).mkdir(parents=True)
        (tmp_path / "stages" / stage / "done.json").write_text("{}")
        assert sorted(final_parts(recipe, tmp_path)) == expected, stage


def test_the_main_process_loads_back_only_the_side_models_it_needs():
    recipe = resolve("mlmi2024", demo=True)
    assert loaded_back(recipe, ["unet_s", "mt_unet", "gazegnn"]) == []
    # the final model, or the report's Grad-CAM stage, when the side process trained it
    aside = resolve("mlmi2024", ["report.classification_reference=gazegnn"], demo=True)
    assert loaded_back(aside, ["unet_s", "gazegnn"]) == ["gazegnn"]
    backbones = resolve("mlmi2023", demo=True)
    assert backbones.final_stage() == "vit_small"  # no reference named: the last stage
    assert loaded_back(backbones, ["resnet34", "vit_small"]) == ["vit_small"]
