"""Inference preprocessing equals the training records; ``cxrkit explain`` on files."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from cxrkit.cli import cli
from cxrkit.data import load
from cxrkit.errors import InputError
from cxrkit.inference import ModelCard, prepare, read_image
from cxrkit.models import build_classifier
from data_prep.egd_cxr.convert import convert_egd_cxr
from data_prep.siim_acr.convert import convert_siim_acr


def _records(out, split):
    return {r["image_id"].numpy().decode(): r["image"].numpy() for r in load(out, split)}


def _convert_siim(src, out):
    convert_siim_acr(src, Path(src) / "train-rle.csv", out, size=48, subset=None, split="1,0,0")
    return ModelCard("siim-acr", (48, 48), ("healthy", "pneumothorax")), "image_id"


def _convert_egd(src, out):
    convert_egd_cxr(Path(src) / "master_sheet.csv", Path(src) / "eye_gaze.csv", src, out,
                    target=(40, 32), test=0, val=0, sigma=20.0)
    return ModelCard("egd-cxr", (40, 32), ("Normal", "CHF", "pneumonia")), "dicom_id"


@pytest.mark.parametrize(("phantom", "convert"), [("siim_phantom", _convert_siim),
                                                  ("egd_phantom", _convert_egd)])
def test_prepare_reproduces_the_training_inputs(phantom, convert, request, tmp_path):
    """A raw file through the model card's preprocessing equals its training record."""
    src, items = request.getfixturevalue(phantom)
    card, id_field = convert(src, tmp_path)
    records = _records(tmp_path, "train")
    for item in items[:4]:
        want = records[getattr(item, id_field)]
        np.testing.assert_allclose(prepare(read_image(item.path), card), want, atol=1e-5)


def test_explain_command_on_dicom_png_and_jpeg(siim_phantom, tmp_path):
    src, items = siim_phantom
    model = build_classifier("resnet18", num_classes=2, input_shape=(64, 64, 1))
    model.save(tmp_path / "model.keras")
    ModelCard("siim-acr", (64, 64), ("healthy", "pneumothorax")).save(tmp_path / "model.keras")
    pixels = read_image(items[0].path)
    gray = np.round(255 * (pixels - pixels.min()) / np.ptp(pixels)).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), gray)
    cv2.imwrite(str(tmp_path / "b.jpg"), cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))
    inputs = [items[1].path, str(tmp_path / "a.png"), str(tmp_path / "b.jpg")]
    result = CliRunner().invoke(cli, ["explain", *inputs, "--model", str(tmp_path),
                                      "--out", str(tmp_path / "out"), "--class", "pneumothorax"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert [r["file"] for r in lines] == inputs
    for record in lines:
        assert sum(record["probabilities"].values()) == pytest.approx(1.0)
        assert record["explained_class"] == "pneumothorax"
        png = cv2.imread(record["overlay"])
        assert png.shape == (64, 64, 3)
    # PNG and JPEG of the same pixels give (almost) the same prediction
    assert lines[1]["probabilities"]["healthy"] == pytest.approx(
        lines[2]["probabilities"]["healthy"], abs=0.05)
    bad = CliRunner().invoke(cli, ["explain", str(tmp_path / "missing.png"), "--model",
                                   str(tmp_path), "--out", str(tmp_path / "o2")])
    assert bad.exit_code == 1 and "missing.png: image not found" in bad.output


def test_model_card_errors(tmp_path):
    with pytest.raises(InputError, match="model card not found"):
        ModelCard.load(tmp_path / "m.keras")
    (tmp_path / "m.card.json").write_text("{}")
    with pytest.raises(InputError, match="not a valid model card"):
        ModelCard.load(tmp_path / "m.keras")


def test_explain_a_model_saved_without_a_card(tmp_path, siim_phantom):
    src, items = siim_phantom
    model = build_classifier("resnet18", num_classes=1, input_shape=(64, 64, 1))
    model.save(tmp_path / "own.keras")
    missing = CliRunner().invoke(cli, ["explain", items[0].path, "--model",
                                       str(tmp_path / "own.keras"), "--out", str(tmp_path / "o")])
    assert missing.exit_code == 1 and "--preprocessing" in missing.output
    result = CliRunner().invoke(cli, ["explain", items[0].path, "--model",
                                      str(tmp_path / "own.keras"), "--out", str(tmp_path / "o"),
                                      "--preprocessing", "siim-acr", "--classes",
                                      "healthy,pneumothorax"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.output.splitlines()[-1])
    assert set(record["probabilities"]) == {"healthy", "pneumothorax"}
