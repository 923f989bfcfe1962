"""The cxrkit command line: version, help everywhere, demo data, one-line errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from cxrkit import __version__
from cxrkit.cli import cli

GROUPS = {"data", "models", "explain", "recipe", "export", "predict"}


def _commands(group, path=()):
    yield path
    if isinstance(group, click.Group):
        for name, command in group.commands.items():
            yield from _commands(command, (*path, name))


def test_version():
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"cxrkit, version {__version__}"


def test_the_console_script_relaxes_full_collections_and_freezes_at_exit():
    """cxrkit.gc_policy: full collections 100x rarer while a command runs; every live object
    frozen out of the collector once it is done (the exit, with an error too)."""
    probe = ("import atexit, gc, sys\n"
             "atexit.register(lambda: print(gc.get_threshold()[2], gc.get_freeze_count() > 0))\n"
             "from cxrkit.cli import main\n"
             "sys.argv = ['cxrkit'] + sys.argv[1:]\n"
             "main()\n")
    for args, status in ((["--version"], 0), (["data", "dicom-info", "/no/such.dcm"], 1)):
        done = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == status, done.stderr
        assert done.stdout.splitlines()[-1] == "1000 True"


def test_every_command_has_help():
    assert set(cli.commands) >= GROUPS
    paths = list(_commands(cli))
    assert ("data", "demo", "siim-acr") in paths and ("data", "demo", "egd-cxr") in paths
    for path in paths:
        result = CliRunner().invoke(cli, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert result.output.startswith("Usage: "), path


def test_demo_commands_write_the_raw_layouts(tmp_path):
    runner = CliRunner()
    siim = runner.invoke(cli, ["data", "demo", "siim-acr", "--out", str(tmp_path / "s"),
                               "--n", "4", "--size", "48", "--seed", "1"])
    assert siim.exit_code == 0, siim.output
    assert "wrote 4 phantom SIIM-ACR images (2 with pneumothorax, 2 healthy)" in siim.output
    assert len(list((tmp_path / "s").glob("dicom-images-train/*/*/*.dcm"))) == 4
    egd = runner.invoke(cli, ["data", "demo", "egd-cxr", "--out", str(tmp_path / "e"),
                              "--n", "3", "--size", "96"])
    assert egd.exit_code == 0, egd.output
    assert "1 Normal, 1 CHF, 1 pneumonia" in egd.output
    assert len(list((tmp_path / "e").glob("files/p*/p*/s*/*.dcm"))) == 3


def test_dicom_info_prints_json_without_patient_fields(tmp_path):
    runner = CliRunner()
    runner.invoke(cli, ["data", "demo", "siim-acr", "--out", str(tmp_path), "--n", "2",
                        "--size", "40"])
    files = sorted(str(p) for p in tmp_path.rglob("*.dcm"))
    result = runner.invoke(cli, ["data", "dicom-info", *files])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [line["file"] for line in lines] == files
    assert all(line["rows"] == line["columns"] == 40 for line in lines)
    assert "PHANTOM" not in result.output and "ACC" not in result.output


@pytest.mark.parametrize("content", [b"", b"garbage" * 50])
def test_bad_input_is_one_line_naming_the_file(tmp_path, content):
    """dicom-info reads on past a bad file: it gets a JSON line with its problem, the good
    file its sizes, and the command ends with one error line and status 1."""
    CliRunner().invoke(cli, ["data", "demo", "siim-acr", "--out", str(tmp_path / "ok"),
                             "--n", "1", "--size", "40"])
    good = str(next((tmp_path / "ok").rglob("*.dcm")))
    bad = tmp_path / "broken.dcm"
    bad.write_bytes(content)
    result = subprocess.run(
        [sys.executable, "-c", "from cxrkit.cli import main; main()", "data", "dicom-info",
         str(bad), good],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    first, second = (json.loads(line) for line in result.stdout.splitlines())
    assert first["file"] == str(bad) and "DICOM" in first["error"]
    assert second["file"] == good and second["rows"] == 40
    assert result.stderr.strip() == "Error: 1 of 2 file(s) could not be read"


def test_unwritable_output_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = CliRunner().invoke(cli, ["data", "demo", "siim-acr", "--out",
                                      str(blocker / "sub"), "--n", "1", "--size", "32"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].startswith(f"Error: {Path(blocker)}")


def test_errors_after_tensorflow_starts_are_still_one_line(tmp_path):
    """`predict` imports TensorFlow before it finds the folder is no export: TensorFlow's
    start-up lines (CUDA probe, oneDNN notice) stay hidden, the error is the only line."""
    image = tmp_path / "x.png"
    image.write_bytes(b"")
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL",
                                                            "CXRKIT_VERBOSE")}
    result = subprocess.run(
        [sys.executable, "-c", "from cxrkit.cli import main; main()", "predict", "--model",
         str(tmp_path), str(image)], capture_output=True, text=True, check=False, env=env)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"Error: {tmp_path}: not a SavedModel version folder (no saved_model.pb); pass "
        "saved_models/NAME/VERSION"]


def test_beam_options_need_the_beam_runner(tmp_path):
    result = CliRunner().invoke(cli, ["data", "siim-acr", "--images", str(tmp_path), "--rle",
                                      str(tmp_path / "t.csv"), "--out", str(tmp_path / "o"),
                                      "--beam-options", "--runner=FlinkRunner"])
    assert result.exit_code == 2 and "--beam-options needs --runner beam" in result.output
