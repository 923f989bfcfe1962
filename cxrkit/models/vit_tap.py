"""The ViT family's Grad-CAM tap: the input LayerNorm of the final encoder block.

keras-hub's ``ViTBackbone`` nests every encoder block inside one ``vit_encoder`` layer, so
no functional output exists between them. :func:`vit_tap` calls the backbone's own sub-layers
(patch embedding, blocks, final norm) one by one on a new tensor, unrolling the last block to
reach its ``ln_1``: the result shares every weight with the backbone and gives identical
outputs. The patch tokens at the *output* of the final block are useless as a target: with a
class-token head they receive zero gradient (pytorch-grad-cam taps ``blocks[-1].norm1`` for
the same reason). The encoder's two dropout layers are left out (they share a name, and
are the identity at inference, where the tap is used). :func:`tokens_to_grid` is the token
reshape: class token dropped, patches laid on their grid (14x14 at 224 px, 16 px patches).
"""

from __future__ import annotations

import keras
from keras import ops


def vit_tap(backbone: keras.Model, images):
    """Returns ``(ln_1 tokens of the final block, final normalised sequence)`` for ``images``."""
    embed = backbone.get_layer("vit_patching_and_embedding")
    encoder = backbone.get_layer("vit_encoder")
    x = embed(images)
    for block in encoder.encoder_layers[:-1]:
        x = block(x)
    last = encoder.encoder_layers[-1]
    target = last.layer_norm_1(x)
    x = x + last.mha(target, target)
    x = x + last.mlp(last.layer_norm_2(x))
    return target, encoder.layer_norm(x)


def tokens_to_grid(tokens, grid: tuple[int, int]):
    """(B, 1 + rows * cols, D) tokens to a (B, rows, cols, D) map, class token dropped."""
    return ops.reshape(tokens[:, 1:, :], (-1, grid[0], grid[1], tokens.shape[-1]))
