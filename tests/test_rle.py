"""The SIIM-ACR run-length codec against hand-worked examples."""

import numpy as np
import pytest

from data_prep.siim_acr import RLEError, rle_decode, rle_encode


def test_single_run_fills_down_a_column():
    # 3 rows x 2 columns; flat index k -> row k % 3, column k // 3.
    mask = rle_decode("1 2", 3, 2)
    expected = np.array([[0, 0], [1, 0], [1, 0]], bool)
    np.testing.assert_array_equal(mask, expected)


def test_multi_run_is_relative_and_column_major():
    # 4 rows x 3 columns. Runs: offset 1 -> start 1, length 2 fills k=1,2; cursor at 3;
    # offset 3 -> start 6, length 3 fills k=6,7,8; cursor at 9; offset 2 -> start 11, length 1.
    mask = rle_decode("1 2 3 3 2 1", 4, 3)
    expected = np.zeros(12, bool)
    expected[[1, 2, 6, 7, 8, 11]] = True
    np.testing.assert_array_equal(mask, expected.reshape(3, 4).T)
    # The same cells by (row, column): k=6 is row 2 of column 1, k=11 is row 3 of column 2.
    assert mask[2, 1] and mask[3, 2] and mask[1, 0] and not mask[0, 0]


def test_run_wrapping_into_the_next_column():
    # 2 rows x 3 columns: start 1, length 3 covers k=1 (r1,c0), k=2 (r0,c1), k=3 (r1,c1).
    np.testing.assert_array_equal(rle_decode("1 3", 2, 3), [[0, 1, 0], [1, 1, 0]])


def test_empty_mask_is_minus_one_both_ways():
    assert not rle_decode("-1", 5, 4).any()
    assert not rle_decode(" -1", 5, 4).any()
    assert rle_encode(np.zeros((5, 4))) == "-1"


def test_encode_hand_worked():
    mask = np.array([[0, 1, 1], [1, 1, 0], [1, 0, 1]])
    # Column-major flat: col0 = 0,1,1 ; col1 = 1,1,0 ; col2 = 1,0,1 -> runs at k=1..4, 6, 8.
    assert rle_encode(mask) == "1 4 1 1 1 1"


@pytest.mark.parametrize("seed", range(5))
def test_round_trips(seed):
    rng = np.random.default_rng(seed)
    mask = rng.random((37, 23)) < rng.uniform(0.05, 0.9)
    text = rle_encode(mask)
    np.testing.assert_array_equal(rle_decode(text, 37, 23), mask)
    assert rle_encode(rle_decode(text, 37, 23)) == text


def test_canonical_strings_round_trip_exactly():
    for text in ("0 1", "5 2 1 4", "2 3 4 1 1 1", "0 12"):
        assert rle_encode(rle_decode(text, 4, 3)) == text


def test_full_mask_and_last_pixel():
    np.testing.assert_array_equal(rle_decode("0 6", 2, 3), np.ones((2, 3), bool))
    assert rle_decode("5 1", 2, 3)[1, 2]


@pytest.mark.parametrize(
    "text, message",
    [
        ("1 2 3", "odd count"),
        ("1 -2", "negative"),
        ("4 3", "past the 2x3 image"),
        ("1 x", "not a plain non-negative decimal integer"),
        ("", "empty"),
        ("1.5 2", "not a plain non-negative decimal integer"),
        ("1 --", "not a plain"),
        ("1 \u00b2", "not a plain"),  # superscript two: str.isdigit() says yes
        ("1 \u0663", "not a plain"),  # Arabic-Indic three: int() accepts it
        ("1_000 2", "not a plain"),  # int() accepts it as 1000
        ("+1 2", "not a plain"),
        ("1 99999999999999999999", "larger than any image"),
        ("1 9223372036854775808", "larger than any image"),  # past int64
        ("2 0", "length 0"),  # an annotated row with an empty mask
        ("0 1 3 0", "run 2 has length 0"),
    ],
)
def test_malformed_strings_are_rejected(text, message):
    with pytest.raises(RLEError, match=message):
        rle_decode(text, 2, 3)
