"""cxrkit.data.load: manifest checks, augmentation that keeps image and mask aligned, balance."""

import numpy as np
import pytest

from cxrkit.errors import InputError
from data_prep.egd_cxr.convert import convert_egd_cxr
from data_prep.siim_acr.convert import convert_siim_acr

tf = pytest.importorskip("tensorflow")
from cxrkit.data import load  # noqa: E402
from cxrkit.data.reader import augment_batch  # noqa: E402


@pytest.fixture(scope="module")
def siim_records(siim_phantom, tmp_path_factory):
    src, _ = siim_phantom
    out = tmp_path_factory.mktemp("siim-records")
    convert_siim_acr(src, src / "train-rle.csv", out, size=64, subset=None, split="1,0,0")
    return out


def test_augmentation_moves_image_and_mask_together():
    yy, xx = np.mgrid[0:64, 0:64]
    square = ((abs(yy - 20) < 8) & (abs(xx - 40) < 10)).astype(np.float32)[..., None]
    example = {"image": tf.constant(square[None]), "mask": tf.constant(square[None])}
    for seed in range(8):
        out = augment_batch(example, tf.constant([seed, 1], tf.int64), noise_std=0.0,
                      brightness=0.0, contrast=0.0)
        image, mask = out["image"].numpy()[0, ..., 0] > 0.5, out["mask"].numpy()[0, ..., 0]
        assert set(np.unique(mask)) <= {0.0, 1.0}  # nearest keeps a binary mask binary
        iou = (image & (mask > 0)).sum() / (image | (mask > 0)).sum()
        assert iou > 0.85, seed
        assert abs(mask.sum() - square.sum()) <= 0.1 * square.sum()  # rotation <= 10 degrees


def test_augmentation_changes_intensity_only_in_the_image():
    example = {"image": tf.ones((2, 32, 32, 1)) * 3.0, "mask": tf.ones((2, 32, 32, 1))}
    out = augment_batch(example, tf.constant([0, 5], tf.int64), max_degrees=0.0)
    centre = (slice(None), slice(8, 24), slice(8, 24))
    assert not np.allclose(out["image"].numpy()[centre], 3.0)
    np.testing.assert_array_equal(out["mask"].numpy()[centre], 1.0)


def test_seeded_augmented_stream_repeats(siim_records):
    def first(seed):
        batch = next(iter(load(siim_records, "train", batch_size=4, shuffle=True,
                               augment=True, seed=seed)))
        return batch["image"].numpy()

    np.testing.assert_array_equal(first(3), first(3))
    assert not np.array_equal(first(3), first(4))


def test_balanced_batches(egd_phantom, tmp_path):
    src, _ = egd_phantom
    convert_egd_cxr(src / "master_sheet.csv", src / "eye_gaze.csv", src, tmp_path,
                    target=(32, 24), test=0, val=0)
    for batch in load(tmp_path, "train", batch_size=6, balanced=True, seed=0).take(4):
        counts = np.bincount(batch["label"].numpy(), minlength=3)
        assert (counts >= 2).all(), counts


def test_clear_errors(siim_records, tmp_path):
    with pytest.raises(InputError, match="no manifest.json"):
        load(tmp_path, "train")
    with pytest.raises(InputError, match="split 'test' holds no images"):
        load(siim_records, "test")
    with pytest.raises(InputError, match="no split 'dev'"):
        load(siim_records, "dev")


def test_in_model_augmentation_layers(tmp_path):
    keras = pytest.importorskip("keras")
    from cxrkit.data import augmentation_layers

    images = np.random.default_rng(0).normal(size=(4, 32, 32, 1)).astype("float32")
    layers = augmentation_layers(seed=1)
    np.testing.assert_array_equal(layers(images, training=False), images)  # identity at test
    trained = np.asarray(layers(images, training=True))
    assert trained.shape == images.shape and not np.allclose(trained, images)
    model = keras.Sequential([keras.Input((32, 32, 1)), augmentation_layers(seed=1),
                              keras.layers.GlobalAveragePooling2D()])
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")  # safe_mode stays on
    np.testing.assert_allclose(loaded(images, training=False), model(images, training=False))
