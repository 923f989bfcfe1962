"""Frozen-part outputs computed once per stage: where the cut falls, that the cut model is the
model, that the cache serves each example once an epoch, and that a stage trained on the cache
ends with the weights it ends with when the frozen parts run at every step."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from tensorboard_images import written_images

from cxrkit.models import GazeDiagnosisNet, build_parts, encoder_model, saliency_model
from cxrkit.recipes.frozen_cache import FrozenCache, split_frozen

SHAPE = (32, 32, 1)


@pytest.fixture(scope="module")
def parts():
    keras.utils.set_random_seed(0)
    return build_parts(SHAPE, unet_filters=(4, 8, 16, 32, 64), densenet_blocks=[1, 1, 1, 1])


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).random((5, *SHAPE), dtype=np.float32)


def _ids(variables) -> set[int]:
    return {id(v) for v in variables}


def test_stage_2_is_cut_at_the_frozen_densenet(parts, images):
    parts["densenet"].trainable, parts["unet"].trainable = False, True
    model = saliency_model(parts["densenet"], parts["unet"])
    prefix, suffix = split_frozen(model)
    # the UNet reads the image itself and DenseNet201's block 4
    shapes = {name: tuple(t.shape[1:]) for name, t in prefix.output.items()}
    block4 = parts["densenet"].output["block4"].shape[1:]
    assert sorted(shapes.values()) == sorted([SHAPE, tuple(block4)])
    assert shapes["image"] == SHAPE
    assert _ids(suffix.trainable_variables) == _ids(parts["unet"].trainable_variables)
    assert not _ids(suffix.variables) & _ids(parts["densenet"].variables)
    features = prefix(images)
    np.testing.assert_array_equal(features["image"], images)
    np.testing.assert_array_equal(
        [v for k, v in features.items() if k != "image"][0],
        parts["densenet"](images)["block4"])
    np.testing.assert_allclose(suffix(features)["saliency"], model(images)["saliency"],
                               rtol=0, atol=1e-6)


def test_stage_3_trains_the_fusion_head_on_both_encoders_outputs(parts, images):
    parts["densenet"].trainable = parts["unet"].trainable = False
    net = GazeDiagnosisNet(parts["densenet"], parts["unet"], parts["fusion"])
    view = keras.Model(net.inputs, {"logits": net.output["logits"]})
    prefix, suffix = split_frozen(view)
    widths = sorted(t.shape[-1] for t in prefix.outputs)
    assert widths == sorted([parts["densenet"].output["features"].shape[-1],
                             parts["unet"].output["decoder_features"].shape[-1]])
    assert "image" not in prefix.output  # the head never reads the image
    assert _ids(suffix.trainable_variables) == _ids(parts["fusion"].trainable_variables)
    assert _ids(suffix.variables) == _ids(parts["fusion"].variables)
    np.testing.assert_allclose(suffix(prefix(images))["logits"], view(images)["logits"],
                               rtol=0, atol=1e-6)
    parts["densenet"].trainable = parts["unet"].trainable = True


def test_no_cut_where_nothing_frozen_precedes_or_a_frozen_part_is_random(parts):
    parts["densenet"].trainable = True
    assert split_frozen(encoder_model(parts["densenet"], parts["densenet_head"])) is None

    def two_parts(dropout: bool):
        inner_in = keras.Input((6,))
        x = keras.layers.Dense(6)(inner_in)
        if dropout:
            x = keras.layers.Dropout(0.5)(x)
        frozen = keras.Model(inner_in, x)
        frozen.trainable = False
        image = keras.Input((6,))
        return keras.Model(image, keras.layers.Dense(2)(frozen(image)))

    assert split_frozen(two_parts(dropout=True)) is None  # a new draw every step
    prefix, suffix = split_frozen(two_parts(dropout=False))
    assert len(suffix.trainable_variables) == 2  # the trained Dense's kernel and bias
    # weightless work ahead of the trained layers alone is not worth a cache
    image = keras.Input((6,))
    scaled = keras.layers.Rescaling(2.0)(image)
    assert split_frozen(keras.Model(image, keras.layers.Dense(2)(scaled))) is None


def test_cache_serves_every_example_once_an_epoch_in_a_new_order():
    image = keras.Input((3,), name="image")
    frozen = keras.Model(image, keras.layers.Dense(2, name="d")(image))
    frozen.trainable = False
    prefix = keras.Model(image, {"f": frozen(image)})
    x = np.arange(30, dtype=np.float32).reshape(10, 3)
    labels = np.arange(10)
    cache = FrozenCache(prefix, [(x[:4], {"logits": labels[:4]}),
                                 (x[4:], {"logits": labels[4:]})])
    assert cache.count == 10 and cache.nbytes == 10 * 2 * 4
    np.testing.assert_allclose(cache.features["f"], x @ frozen.get_weights()[0]
                               + frozen.get_weights()[1], rtol=1e-6)
    ds = cache.dataset(4, shuffle=True, seed=0)
    epochs = [np.concatenate([y["logits"].numpy() for _, y in ds]) for _ in range(2)]
    for order in epochs:
        assert sorted(order) == list(range(10))
    assert list(epochs[0]) != list(epochs[1])
    for features, y in ds.take(1):  # each row keeps its own label
        row = {int(v): i for i, v in enumerate(labels)}
        np.testing.assert_allclose(features["f"].numpy(),
                                   cache.features["f"][[row[int(v)] for v in y["logits"]]])


def test_cache_joins_batches_into_few_prefix_calls():
    """The prefix runs on as few calls as ``chunk_pixels`` allows (a larger batch alone), and
    the cache holds what one call per batch gives, in the batches' order."""
    image = keras.Input((5, 1), name="image")
    frozen = keras.Model(image, keras.layers.Dense(2)(image))
    frozen.trainable = False
    prefix = keras.Model(image, {"f": frozen(image)})
    calls = []

    def counted(inputs, training):
        calls.append(len(inputs))
        return prefix(inputs, training=training)

    x = np.random.default_rng(0).normal(size=(10, 5, 1)).astype(np.float32)
    batches = [(x[:4], {"logits": np.arange(4)}), (x[4:8], {"logits": np.arange(4, 8)}),
               (x[8:], {"logits": np.arange(8, 10)})]
    expected = np.concatenate([prefix(b, training=False)["f"].numpy() for b, _ in batches])
    for pixels, sizes in [(40, [8, 2]), (50, [10]), (15, [4, 4, 2])]:  # 5 "pixels" an image
        calls.clear()
        cache = FrozenCache(counted, batches, chunk_pixels=pixels)
        assert calls == sizes
        np.testing.assert_allclose(cache.features["f"], expected, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(cache.targets["logits"], np.arange(10))


def test_a_stage_trained_on_the_cache_ends_with_the_same_weights(egd_records, tmp_path):
    """One batch holds the whole training split, so the order the cache serves it in changes
    nothing but the order of a sum: the UNet trained on cached DenseNet201 outputs ends where
    it ends when DenseNet201 runs at every step."""
    from cxrkit.recipes import resolve
    from cxrkit.recipes.engine import Run

    weights, lines = {}, []
    for cache in (False, True):
        recipe = resolve("mlmi2024-demo", [
            "parts.densenet.blocks=[1, 1, 1, 1]", "parts.unet.filters=[4, 8, 16, 32, 64]",
            "stages.saliency.epochs=2", "stages.saliency.batch_size=64",
            "stages.saliency.precise_bn_batches=1", f"training.cache_frozen={str(cache).lower()}",
            "training.run_eagerly=true"], stages=["saliency"])
        run = Run(recipe, egd_records, tmp_path / str(cache), echo=lines.append)
        run.build_parts()
        initial = [w.numpy() for w in run.parts["unet"].weights]
        run.train_stage(recipe.stages["saliency"])
        weights[cache] = [w.numpy() for w in run.parts["unet"].weights]
    assert any(line.startswith("stage saliency: outputs of the frozen densenet computed once")
               for line in lines)
    assert max(np.abs(a - b).max() for a, b in zip(weights[True], initial, strict=True)) > 1e-3
    for cached, direct in zip(weights[True], weights[False], strict=True):
        np.testing.assert_allclose(cached, direct, rtol=1e-4, atol=1e-5)
    # the TensorBoard saliency images take the cached outputs of the same images
    images = [written_images(tmp_path / str(cache) / "tensorboard" / "saliency" / "images",
                             "images/saliency") for cache in (False, True)]
    assert sorted(images[True]) == sorted(images[False]) == [0, 1]
    for step, maps in images[True].items():
        np.testing.assert_allclose(maps.astype(float), images[False][step], atol=2.0)
