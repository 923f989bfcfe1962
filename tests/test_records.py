"""The guarantees of a record folder (docs/data.md): byte-identical reruns, shards the manifest
vouches for, nothing foreign overwritten, and the bounds the converters put on parameters."""

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import quiet_env

from cxrkit.errors import InputError
from data_prep.siim_acr.convert import convert_siim_acr, parse_split

tf = pytest.importorskip("tensorflow")
from cxrkit.data import load  # noqa: E402


def _digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def convert_both(siim, egd, out, workers) -> None:
    """Both converters on the phantoms into ``out``/siim-acr and ``out``/egd-cxr."""
    from data_prep.egd_cxr.convert import convert_egd_cxr

    siim, egd, out = Path(siim), Path(egd), Path(out)
    convert_siim_acr(siim, siim / "train-rle.csv", out / "siim-acr", size=32, subset=None,
                     shards=2, workers=int(workers))
    convert_egd_cxr(egd / "master_sheet.csv", egd / "eye_gaze.csv", egd, out / "egd-cxr",
                    target=(40, 32), canvas=(160, 128), test=2, val=2,
                    workers=int(workers))


ANOTHER_PROCESS = ("import sys; sys.path.insert(0, sys.argv[1]); "
                   "from test_records import convert_both; convert_both(*sys.argv[2:])")


def test_reruns_are_byte_identical_across_processes_and_workers(siim_phantom, egd_phantom,
                                                                 tmp_path):
    """The same conversions in two processes (other hash seeds, 1 and 2 workers) write the
    same bytes in every file: examples serialize their features in key order."""
    siim, _ = siim_phantom
    egd, _ = egd_phantom
    convert_both(siim, egd, tmp_path / "0", 1)  # here, one worker
    subprocess.run([sys.executable, "-c", ANOTHER_PROCESS, str(Path(__file__).parent),
                    str(siim), str(egd), str(tmp_path / "1"), "2"],  # two workers there
                   env={**quiet_env(), "PYTHONHASHSEED": "12345"}, check=True,
                   capture_output=True)
    for dataset in ("siim-acr", "egd-cxr"):
        first, second = _digests(tmp_path / "0" / dataset), _digests(tmp_path / "1" / dataset)
        assert len(first) >= 4 and first == second, dataset
        manifest = json.loads((tmp_path / "0" / dataset / "manifest.json").read_text())
        assert {name: c["sha256"] for name, c in manifest["shard_checksums"].items()} == {
            name: digest for name, digest in first.items() if name != "manifest.json"}


def _convert(src, out, size=32):
    return convert_siim_acr(src, src / "train-rle.csv", out, size=size, subset=None,
                            split="0.5,0.25,0.25", shards=2)


def test_the_reader_reads_only_the_shards_the_manifest_vouches_for(siim_phantom, tmp_path):
    src, _ = siim_phantom
    _convert(src, tmp_path / "a")
    _convert(src, tmp_path / "b", size=48)
    assert len(list(load(tmp_path / "a", "train"))) == 6
    # A shard of another conversion dropped into the folder, under a name the manifest lacks.
    stale = tmp_path / "a" / "train-00000-of-00003.tfrecord"
    shutil.copy(tmp_path / "b" / "train-00000-of-00002.tfrecord", stale)
    with pytest.raises(InputError, match="not listed in manifest.json"):
        load(tmp_path / "a", "train")
    stale.unlink()
    # ... or under a listed name: the checksum gives it away.
    shutil.copy(tmp_path / "b" / "test-00000-of-00002.tfrecord",
                tmp_path / "a" / "test-00000-of-00002.tfrecord")
    with pytest.raises(InputError, match="does not match the checksum"):
        load(tmp_path / "a", "test")


def test_a_reconversion_replaces_the_old_one_and_refuses_foreign_files(siim_phantom, tmp_path):
    src, _ = siim_phantom
    out = tmp_path / "records"
    _convert(src, out, size=32)
    first = set(_digests(out))
    _convert(src, out, size=48)
    assert set(_digests(out)) == first  # same names, new content
    shapes = {tuple(e["image"].shape) for split in ("train", "validation", "test")
              for e in load(out, split)}
    assert shapes == {(48, 48, 1)}
    convert_siim_acr(src, src / "train-rle.csv", out, size=32, subset=None, split="1,0,0")
    assert sorted(_digests(out)) == ["manifest.json", "train-00000-of-00001.tfrecord"]
    (out / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match=r"holds 1 entries a conversion did not write "
                                         r"\(notes\.txt\)"):
        _convert(src, out)
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "manifest.json").is_file()  # refused before anything was touched


def test_an_interrupted_reconversion_leaves_no_manifest(siim_phantom, tmp_path, monkeypatch):
    """The old manifest goes first: a conversion that dies half way leaves a folder the reader
    refuses, not an old manifest over a mix of old and new shards."""
    import data_prep.records as records

    src, _ = siim_phantom
    out = tmp_path / "records"
    _convert(src, out)
    real = records.write_shards

    def dies_on_test(out_, split, *args, **kwargs):
        if split == "test":
            raise KeyboardInterrupt
        return real(out_, split, *args, **kwargs)

    monkeypatch.setattr(records, "write_shards", dies_on_test)
    with pytest.raises(KeyboardInterrupt):
        _convert(src, out, size=48)
    with pytest.raises(InputError, match="no manifest.json"):
        load(out, "train")


@pytest.mark.parametrize(("kwargs", "problem"), [
    ({"size": 100_000}, r"--size: image side 100000 is outside 16\.\.4096"),
    ({"size": 8}, "outside 16"),
    ({"split": "nan,0.5,0.5"}, "non-negative"),
    ({"split": "inf,1,1"}, "non-negative"),
])
def test_parameters_out_of_bounds_are_refused(siim_phantom, tmp_path, kwargs, problem):
    src, _ = siim_phantom
    params = {"size": 32, "subset": None, "split": "0.5,0.25,0.25", **kwargs}
    with pytest.raises(InputError, match=problem):
        convert_siim_acr(src, src / "train-rle.csv", tmp_path / "out", **params)
    assert not (tmp_path / "out").exists()


def test_a_conversion_that_finds_no_image_is_an_error(siim_phantom, tmp_path):
    src, _ = siim_phantom
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "readme.txt").write_text("no images here")
    with pytest.raises(InputError, match="no DICOM, PNG or JPEG image found"):
        convert_siim_acr(empty, src / "train-rle.csv", tmp_path / "out", subset=None)
    assert parse_split("0.6,0.2,0.2", 10) == (0.6, 0.2, 0.2)


def test_egd_size_is_bounded(egd_phantom, tmp_path):
    from data_prep.egd_cxr.convert import convert_egd_cxr

    src, _ = egd_phantom
    with pytest.raises(InputError, match="outside 16..4096"):
        convert_egd_cxr(src / "master_sheet.csv", src / "eye_gaze.csv", src, tmp_path / "o",
                        target=(100_000, 512))
