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


def test_augmentation_is_new_each_epoch_and_reproducible_for_a_seed(siim_records):
    def two_epochs(seed):
        dataset = load(siim_records, "train", batch_size=4, augment=True, seed=seed)
        return [next(iter(dataset))["image"].numpy() for _ in range(2)]

    first, again, other = two_epochs(3), two_epochs(3), two_epochs(4)
    for epoch in range(2):  # a new dataset with the same seed repeats every epoch
        np.testing.assert_array_equal(first[epoch], again[epoch])
    assert not np.array_equal(first[0], first[1])  # same images, new draws in epoch 2
    assert not np.array_equal(first[0], other[0])


@pytest.mark.parametrize("flip", [False, True])
def test_rotation_and_flip_match_scipy(flip):
    """``transform`` against scipy.ndimage.affine_transform: bilinear for images (order 1),
    nearest neighbour for masks (order 0), on a non-square image so axes cannot swap."""
    ndimage = pytest.importorskip("scipy.ndimage")
    from cxrkit.data.reader import _flip_rotation_matrices, transform

    rng = np.random.default_rng(1)
    height, width = 40, 56
    image = rng.normal(size=(height, width)).astype(np.float32)
    mask = (rng.uniform(size=(height, width)) > 0.6).astype(np.float32)
    angle = np.deg2rad(7.3)
    m = _flip_rotation_matrices(tf.constant([angle], tf.float32), tf.constant([flip]),
                                float(height), float(width)).numpy()[0]
    # transform maps output (x, y) to input (m0 x + m1 y + m2, m3 x + m4 y + m5); scipy
    # maps output (row, col) to input matrix @ (row, col) + offset.
    matrix, offset = np.array([[m[4], m[3]], [m[1], m[0]]]), np.array([m[5], m[2]])
    got = transform(tf.constant(image[None, ..., None]), m[None]).numpy()[0, ..., 0]
    want = ndimage.affine_transform(image.astype(np.float64), matrix, offset, order=1,
                                    mode="constant", cval=0.0)
    rows, cols = np.mgrid[0:height, 0:width]
    source = np.einsum("ij,jhw->ihw", matrix, np.stack([rows, cols])) + offset[:, None, None]
    inside = ((source[0] >= 1) & (source[0] <= height - 2)
              & (source[1] >= 1) & (source[1] <= width - 2))
    assert inside.mean() > 0.7
    np.testing.assert_allclose(got[inside], want[inside], atol=1e-4)
    assert np.abs(got[~inside]).max() <= np.abs(image).max()  # edges fade to the zero fill

    got_mask = transform(tf.constant(mask[None, ..., None]), m[None], "NEAREST").numpy()[0, ..., 0]
    want_mask = ndimage.affine_transform(mask, matrix, offset, order=0, mode="constant")
    assert set(np.unique(got_mask)) <= {0.0, 1.0}
    assert (got_mask[inside] == want_mask[inside]).mean() > 0.995


def test_balanced_batches(egd_phantom, tmp_path):
    src, _ = egd_phantom
    convert_egd_cxr(src / "master_sheet.csv", src / "eye_gaze.csv", src, tmp_path,
                    target=(32, 24), canvas=(160, 120), test=0, val=0)
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


def test_finite_datasets_know_their_length(siim_records):
    """The manifest's counts become the dataset's cardinality (Keras then sizes epochs and
    progress bars instead of warning that the input ran out of data)."""
    import math

    from cxrkit.data import read_manifest

    total = read_manifest(siim_records)["counts"]["train"]["total"]
    assert int(load(siim_records, "train").cardinality()) == total
    assert int(load(siim_records, "train", batch_size=4, shuffle=True, augment=True, seed=1)
               .cardinality()) == math.ceil(total / 4)
    assert len(list(load(siim_records, "train", batch_size=4))) == math.ceil(total / 4)
