"""Reading SIIM-ACR mask tables in every header variant seen in real copies."""

import pytest

from cxrkit.errors import InputError
from data_prep.siim_acr import read_rle_csv, rle_decode

ROWS = "img1, -1\nimg2, 1 2\nimg2, 3 1\nimg3,-1\n"


@pytest.mark.parametrize(
    "header, bom",
    [
        ("ImageId, EncodedPixels", False),
        ("ImageId,EncodedPixels", False),
        ("ImageId, EncodedPixels", True),
        ("fname,mask", True),
    ],
)
def test_header_variants(tmp_path, header, bom):
    path = tmp_path / "train-rle.csv"
    path.write_bytes(("\ufeff" if bom else "").encode() + f"{header}\n{ROWS}".encode())
    table = read_rle_csv(path)
    assert table.problems == []
    assert table.regions == {"img1": [], "img2": ["1 2", "3 1"], "img3": []}
    assert [table.label(i) for i in ("img1", "img2", "img3")] == [0, 1, 0]


def test_malformed_rows_are_reported_with_file_and_line(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("ImageId, EncodedPixels\nok, 1 2\nodd, 1 2 3\nneg, 1 -4\nboth, -1\n"
                    "both, 2 2\nshort\n")
    table = read_rle_csv(path)
    assert table.bad_images == {"odd", "neg", "both"}
    messages = [str(p) for p in table.problems]
    assert messages[0].startswith(f"{path}:3: image odd") and "odd count" in messages[0]
    assert "negative" in messages[1] and f"{path}:4" in messages[1]
    assert "both healthy (-1) and annotated" in messages[2]
    assert messages[3].startswith(f"{path}:7:")
    assert table.regions["ok"] == ["1 2"]


def test_unknown_header_and_missing_file(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,b\nx,1 2\n")
    with pytest.raises(InputError, match="unrecognised header"):
        read_rle_csv(path)
    with pytest.raises(InputError, match="cannot read the mask table"):
        read_rle_csv(tmp_path / "absent.csv")


@pytest.mark.parametrize(("content", "problem"), [
    ("ImageId,EncodedPixels\na,-1\nb,\"1 2\nc,-1\n" + "x" * 140_000 + "\n",
     "not well-formed CSV: field larger than field limit.*unterminated quote"),
    ("ImageId,EncodedPixels\na,-1\nb\xe9,-1\n".encode("latin-1"), "not UTF-8 text"),
    (bytes(range(256)) * 4, "not UTF-8 text"),
])
def test_tables_that_are_not_utf8_csv_are_one_error(tmp_path, content, problem):
    path = tmp_path / "t.csv"
    if isinstance(content, str):
        path.write_text(content)
    else:
        path.write_bytes(content)
    with pytest.raises(InputError, match=rf"t\.csv: the mask table is {problem}"):
        read_rle_csv(path)


def test_real_sample_table(realdata):
    table = read_rle_csv(realdata / "siim-acr" / "train-rle-sample.csv")
    assert table.problems == []
    labels = [table.label(i) for i in table.regions]
    assert len(labels) == 10 and sum(labels) == 5
    for regions in table.regions.values():
        for rle in regions:  # the real positives are valid 1024 x 1024 masks
            assert rle_decode(rle, 1024, 1024).sum() > 100


def test_the_split_plan_on_the_official_table(realdata):
    """The default plan on the full official table: every positive and as many negatives
    (5,338), 1,000 validation and 1,000 test images, train on the rest, every split
    balanced; the thesis' 7,200 is refused with the available counts."""
    from cxrkit.errors import InputError
    from data_prep.siim_acr.convert import split_plan

    table = read_rle_csv(realdata / "siim-acr" / "train-rle-full.csv.gz")
    labels = {i: table.label(i) for i in table.regions if i not in table.bad_images}
    assert len(labels) == 12047 and sum(labels.values()) == 2669
    plan = split_plan(labels)
    sizes = {name: len(ids) for name, ids in plan.items()}
    assert sizes == {"train": 3338, "validation": 1000, "test": 1000}
    for ids in plan.values():
        assert 2 * sum(labels[i] for i in ids) == len(ids)
    assert len(set().union(*plan.values())) == 5338
    assert split_plan(labels, seed=1) != plan and split_plan(labels) == plan
    with pytest.raises(InputError, match=r"7200 needs 3600 pneumothorax and 3600 healthy "
                                         r"images; the data holds 2669 and 9378 \(the largest "
                                         r"balanced subset: 5338"):
        split_plan(labels, subset=7200)
