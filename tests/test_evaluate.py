"""Test-split predictions: as few eager calls as the pixel budget allows, the same numbers."""

import keras
import numpy as np

from cxrkit.recipes.evaluate import predict_batches


def test_predict_batches_calls_the_model_on_budget_sized_batches():
    image, gaze = keras.Input((4, 3, 1), name="image"), keras.Input((4, 3, 1), name="gaze")
    joined = keras.layers.Concatenate()([image, gaze])
    model = keras.Model({"image": image, "gaze": gaze},
                        {"logits": keras.layers.Dense(2)(keras.layers.Flatten()(joined)),
                         "map": keras.layers.Conv2D(1, 3, padding="same")(joined)})
    calls = []

    def counted(inputs, training):
        calls.append(len(inputs["image"]))
        assert training is False
        return model(inputs, training=training)

    rng = np.random.default_rng(0)
    inputs = {k: rng.normal(size=(10, 4, 3, 1)).astype(np.float32) for k in ("image", "gaze")}
    expected = {k: np.concatenate([model({n: a[i:i + 1] for n, a in inputs.items()})[k].numpy()
                                   for i in range(10)]) for k in ("logits", "map")}
    # an example is 2 x 12 input pixels
    for pixels, sizes in [(96, [4, 4, 2]), (240, [10]), (10, [1] * 10)]:
        calls.clear()
        got = predict_batches(counted, inputs, pixels=pixels)
        assert calls == sizes
        for k, want in expected.items():
            np.testing.assert_allclose(got[k], want, rtol=1e-5, atol=1e-6)
    calls.clear()
    single = keras.Model(image, keras.layers.Flatten()(image))  # one array in, one out
    np.testing.assert_array_equal(predict_batches(single, inputs["image"], pixels=36),
                                  inputs["image"].reshape(10, 12))
