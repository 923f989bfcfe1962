"""The backbone registry and the MLMI 2023 classifiers: architectures, heads, taps, weights."""

from __future__ import annotations

import json

import keras
import keras_hub
import numpy as np
import pytest
import requests

from cxrkit.errors import CxrkitError, InputError
from cxrkit.models import SPECS, CxrClassifier, build_backbone, build_classifier

# Trainable parameters of each feature extractor (no classifier head) at 224 px, from the
# reference implementations: torchvision (VGG, ResNet, DenseNet: total minus the 1000-way fc)
# and timm (ViT: total minus the 1000-way head); Inception-ResNet-v2 from keras.applications'
# table (54,336,736 including BN statistics). keras-hub additionally stores BN moving stats.
REFERENCE_TRAINABLE = {
    "vgg16": 14_714_688, "vgg19": 20_024_384,
    "resnet18": 11_176_512, "resnet34": 21_284_672, "resnet50": 23_508_032,
    "resnet101": 42_500_160, "densenet201": 18_092_928,
    "vit_small": 21_665_664, "vit_base": 85_798_656, "vit_large": 303_301_632,
}


def _trainable(model):
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


@pytest.mark.parametrize("name", sorted(SPECS))
def test_parameter_counts_match_the_reference_architectures(name):
    # A CNN's parameter count does not depend on the input size, so CNNs are built small;
    # a ViT's position table does (197 tokens at 224 px), so ViTs are built at 224.
    size = {"vit": 224, "inception_resnet": 75}.get(SPECS[name].family, 32)
    backbone = build_backbone(name, image_size=size)
    if name == "inception_resnet_v2":
        assert backbone.count_params() == 54_336_736
    else:
        assert _trainable(backbone) == REFERENCE_TRAINABLE[name]
    if SPECS[name].family != "vit":  # the ViT target sits inside vit_encoder (tapped)
        target = backbone.get_layer(SPECS[name].target_layer).output
        assert target.shape[-1] == backbone.output.shape[-1]  # the final feature width


def _small(name):
    return 75 if name == "inception_resnet_v2" else 32


# One architecture per code path: the others differ only in depth and width, which the
# parameter counts above pin (VGG, basic and bottleneck ResNet blocks, ViT, DenseNet, IRv2).
CODE_PATHS = ["vgg16", "resnet18", "resnet50", "vit_small", "densenet201",
              "inception_resnet_v2"]


@pytest.mark.parametrize("name", CODE_PATHS)
def test_classifier_forward_train_step_and_grad_cam_tap(name):
    size = _small(name)
    model = build_classifier(name, num_classes=3, input_shape=(size, size, 1))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, size, size, 1)).astype("float32")
    logits = np.asarray(model(x))
    assert logits.shape == (2, 3) and np.isfinite(logits).all()
    # the tap shares the weights: identical logits, a spatial target map
    target, tap_logits = model.cam_model()(x)
    target = model.cam_reshape(target)
    np.testing.assert_allclose(np.asarray(tap_logits), logits, atol=1e-5)
    assert len(target.shape) == 4
    if SPECS[name].family == "vit":
        assert tuple(target.shape[1:]) == (size // 16, size // 16, model.backbone.hidden_dim)
    # grayscale is repeated inside: the same image as 3 equal channels gives the same output
    rgb = model.get_layer("grayscale_to_rgb")(x)
    np.testing.assert_array_equal(np.asarray(rgb)[..., 0], np.asarray(rgb)[..., 2])
    # keras.applications' Inception-ResNet-v2 expects [-1, 1]: it is scaled inside; the other
    # backbones see the records' values as they are
    scaled = np.asarray(model.input_scale(rgb))
    expected = np.asarray(rgb) * 2 - 1 if name == "inception_resnet_v2" else np.asarray(rgb)
    np.testing.assert_allclose(scaled, expected, atol=1e-6)
    if name in ("densenet201", "inception_resnet_v2"):
        return  # an eager step of their ~700 layers costs seconds and adds no code path
    model.compile(keras.optimizers.Adam(1e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  run_eagerly=True)
    before = [w.numpy().copy() for w in model.trainable_weights[-2:]]
    model.train_on_batch(x, np.array([0, 2]))
    after = [w.numpy() for w in model.trainable_weights[-2:]]
    assert any(not np.allclose(a, b) for a, b in zip(before, after, strict=True))


@pytest.mark.parametrize("name", ["resnet18", "vit_small", "inception_resnet_v2"])
def test_classifier_round_trips_through_a_keras_file(name, tmp_path):
    """Through a .keras file (safe mode on); ViT-small and Inception-ResNet-v2 through the
    same serialization in memory, with their weights copied (their 90-220 MB files add no code
    path to ResNet18's)."""
    size = _small(name)
    model = build_classifier(name, num_classes=1, input_shape=(size, size, 1), dropout=0.1)
    x = np.random.default_rng(1).normal(size=(2, size, size, 1)).astype("float32")
    if name != "resnet18":
        loaded = keras.saving.deserialize_keras_object(
            keras.saving.serialize_keras_object(model), safe_mode=True)
        loaded.set_weights(model.get_weights())
    else:
        model.save(tmp_path / "m.keras")
        loaded = keras.saving.load_model(tmp_path / "m.keras")  # safe_mode stays on
    assert isinstance(loaded, CxrClassifier) and loaded.target_layer == model.target_layer
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), atol=1e-6)
    np.testing.assert_allclose(np.asarray(loaded.cam_model()(x)[0]),
                               np.asarray(model.cam_model()(x)[0]), atol=1e-5)


def test_local_weight_files_and_preset_directories_load_offline(tmp_path):
    source = build_backbone("resnet18", image_size=64)
    source.save_weights(tmp_path / "r18.weights.h5")
    source.save_to_preset(str(tmp_path / "preset"))
    x = np.random.default_rng(2).normal(size=(1, 64, 64, 3)).astype("float32")
    want = np.asarray(source(x))
    for weights in (tmp_path / "r18.weights.h5", tmp_path / "preset"):
        loaded = build_backbone("resnet18", image_size=64, weights=weights)
        np.testing.assert_array_equal(np.asarray(loaded(x)), want)
    fresh = build_backbone("resnet18", image_size=64)
    assert not np.allclose(np.asarray(fresh(x)), want)  # None really is a random init
    model = build_classifier("resnet18", num_classes=2, input_shape=(64, 64, 1),
                             weights=tmp_path / "r18.weights.h5")
    np.testing.assert_array_equal(
        np.asarray(model.backbone(np.repeat(x[..., :1], 3, -1))),
        np.asarray(source(np.repeat(x[..., :1], 3, -1))))


def test_weight_errors_say_what_to_do(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise requests.exceptions.ConnectionError("Failed to resolve 'api.kaggle.com'")

    monkeypatch.setattr(keras_hub.models.Backbone, "from_preset", offline)
    with pytest.raises(CxrkitError, match="no network.*local keras-hub preset directory"):
        build_backbone("resnet50", image_size=64, weights="imagenet")
    with pytest.raises(CxrkitError, match="no ImageNet preset for resnet34.*weights=PATH"):
        build_backbone("resnet34", image_size=64, weights="imagenet")
    with pytest.raises(InputError, match="weights not found"):
        build_backbone("resnet18", image_size=64, weights=tmp_path / "missing.weights.h5")
    build_backbone("vgg16", image_size=32).save_weights(tmp_path / "vgg.weights.h5")
    with pytest.raises(InputError, match="do not fit the resnet18"):
        build_backbone("resnet18", image_size=64, weights=tmp_path / "vgg.weights.h5")
    with pytest.raises(CxrkitError, match="unknown model 'resnet99'"):
        build_backbone("resnet99")
    with pytest.raises(CxrkitError, match="multiple of 16"):
        build_backbone("vit_small", image_size=40)


def test_models_cli_lists_and_describes():
    import json

    from click.testing import CliRunner

    from cxrkit.cli import cli

    listed = CliRunner().invoke(cli, ["models", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    names = [row["name"] for row in json.loads(listed.output)]
    assert set(SPECS) <= set(names) and "mlmi2024" in names
    described = CliRunner().invoke(cli, ["models", "describe", "resnet18", "--input-size",
                                         "64", "--json"])
    info = json.loads(described.output)
    assert info["grad_cam_target"] == "stack3_block1_out"
    assert info["feature_extractor"]["trainable"] == REFERENCE_TRAINABLE["resnet18"]
    assert info["input_shape"] == [64, 64, 1]
    unknown = CliRunner().invoke(cli, ["models", "describe", "resnet99"])
    assert unknown.exit_code == 1 and "unknown model 'resnet99'" in unknown.output


def test_check_weights_reports_coverage_and_architecture(tmp_path):
    """`cxrkit models check-weights` on a preset saved from a randomly initialised backbone:
    every variable set; the same preset checked as another depth, and an h5 file missing a
    layer, fail with the reason."""
    import h5py
    from click.testing import CliRunner

    from cxrkit.cli import cli

    backbone = build_backbone("resnet18", image_size=64)
    backbone.save_to_preset(str(tmp_path / "preset"))
    backbone.save_weights(str(tmp_path / "full.weights.h5"))
    runner = CliRunner()
    ok = runner.invoke(cli, ["models", "check-weights", str(tmp_path / "preset"),
                             "--model", "resnet18", "--json"])
    assert ok.exit_code == 0, ok.output
    report = json.loads(ok.output)
    assert report["covered"] == report["variables"] == len(
        [w for w in backbone.weights if "float" in str(w.dtype)]) and report["ok"]
    deeper = runner.invoke(cli, ["models", "check-weights", str(tmp_path / "preset"),
                                 "--model", "resnet34"])
    assert deeper.exit_code == 1
    assert "stackwise_num_blocks: preset [2, 2, 2, 2], resnet34 needs [3, 4, 6, 3]" \
        in deeper.output
    with h5py.File(tmp_path / "full.weights.h5", "a") as handle:
        layers = handle["layers"]
        del layers[next(k for k in sorted(layers) if len(layers[k].get("vars", {})))]
    partial = runner.invoke(cli, ["models", "check-weights", str(tmp_path / "full.weights.h5"),
                                  "--model", "resnet18"])
    assert partial.exit_code == 1 and "weights do not fit the resnet18 backbone" \
        in partial.output
