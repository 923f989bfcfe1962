"""The converters on Apache Beam (``cxrkit data ... --runner beam``; ``pip install -e ".[beam]"``).

The per-image work is the local runner's own (:mod:`data_prep.egd_cxr.convert`,
:mod:`data_prep.siim_acr.convert`), so the records, shards and ``manifest.json`` are
byte-identical to the local runner's for the same inputs and options (tested on phantoms with
two DirectRunner workers).

- **EGD-CXR.** A first pipeline reads the gaze table and counts, per DICOM id, its usable and
  dropped rows (:func:`egd_gaze_index`); from that index and the master sheet the launching
  process decides the patient-level splits, before any image is read, as the local runner does
  (:func:`data_prep.egd_cxr.convert.plan_conversion`). The second pipeline
  (:func:`egd_write`) joins each image to its gaze rows by DICOM id (``CoGroupByKey``; no
  worker holds the whole table), decodes the DICOM and draws its maps, gives each record its
  shard from the sorted ids of the images that succeeded (a small side input), and writes each
  shard on a worker (:func:`data_prep.records.write_shard`).
- **SIIM-ACR.** Its subset draws replacements for images that fail, so each round of decoding
  is a pipeline (:func:`beam_map`) whose results come back to the launching process, which
  writes the shards as the local runner does (a few hundred MB for the 12,047 images at 224 px).

A bad image fails its element, not the pipeline: the reason reaches the manifest's ``skipped``
list by name, as with the local runner. Small results (ids, reasons, checksums) come back
through files in ``--temp_location`` (a local temporary folder by default). The shards are
written straight into the output folder, which every worker must therefore see (one machine,
or a file system all workers mount). Only the DirectRunner was tested here; docs/data.md gives
the Dataflow, Flink and Spark options.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import functools
import json
import logging
import pickle
import shlex
import tempfile
import time
import uuid

from cxrkit.errors import CxrkitError
from cxrkit.files import stderr_silenced
from data_prep.pipeline import Guarded, as_reason
from data_prep.records import prepare_out, remove_stale_shards, shard_layout, write_shard

_root = logging.getLogger()
_level = _root.level
# Beam's GCP options warn on import that the BigQuery client ("apitools") is absent; nothing
# here uses BigQuery, so that one line would only make a user doubt the tool.
_root.setLevel(logging.ERROR)
try:
    import apache_beam as beam
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import (
        DirectOptions,
        GoogleCloudOptions,
        PipelineOptions,
        StandardOptions,
        WorkerOptions,
    )
except ImportError:  # pragma: no cover - the optional extra is missing
    beam = None
finally:
    _root.setLevel(_level)


def _require_beam() -> None:
    if beam is None:
        raise CxrkitError("--runner beam needs Apache Beam: pip install -e \".[beam]\"")


def beam_options(text: str, workers: int):
    """Pipeline options from ``--beam-options`` (command-line style flags). Without a
    ``--runner`` it is the DirectRunner with ``workers`` worker processes."""
    _require_beam()
    flags = shlex.split(text or "")
    options = PipelineOptions(flags)
    harness = options.view_as(WorkerOptions)
    if not harness.default_sdk_harness_log_level:  # workers log their plumbing at INFO/WARN
        harness.default_sdk_harness_log_level = "ERROR"
    if not options.view_as(StandardOptions).runner:
        options.view_as(StandardOptions).runner = "DirectRunner"
        direct = options.view_as(DirectOptions)
        direct.direct_num_workers = max(1, workers)
        direct.direct_running_mode = "multi_processing" if workers > 1 else "in_memory"
    return options


def _results_prefix(options, name: str) -> str:
    base = options.view_as(GoogleCloudOptions).temp_location or tempfile.gettempdir()
    return FileSystems.join(base, f"cxrkit-{uuid.uuid4().hex}", name)


def _read_results(prefix: str) -> list:
    """The JSON lines a pipeline wrote under ``prefix``; then deletes their folder."""
    matches = FileSystems.match([prefix + "*"])[0].metadata_list
    lines = []
    for match in matches:
        with FileSystems.open(match.path) as handle:
            lines += [json.loads(line) for line in handle.read().decode().splitlines() if line]
    FileSystems.delete([FileSystems.split(prefix)[0]])
    return lines


def _run(pipeline_builder, options, what: str) -> None:
    """Runs a pipeline; an error that escapes it (not an image's: those are caught per
    element) is one message naming the step.

    Under ``cxrkit``'s quiet console (which sets the ``apache_beam`` logger to ERROR) the
    workers' standard error is silenced while it runs: each worker process imports TensorFlow,
    whose start-up lines no log level reaches. A failure still comes back as the exception.
    """
    quiet = logging.getLogger("apache_beam").getEffectiveLevel() >= logging.ERROR
    started = time.time()
    if options.view_as(StandardOptions).runner == "DirectRunner":
        workers = options.view_as(DirectOptions).direct_num_workers
        print(f"{what}: Apache Beam, DirectRunner on {workers} worker(s) ...", flush=True)
    else:
        print(f"{what}: Apache Beam, {options.view_as(StandardOptions).runner} ...", flush=True)
    try:
        with stderr_silenced() if quiet else contextlib.nullcontext(), \
                beam.Pipeline(options=options) as pipeline:
            pipeline_builder(pipeline)
    except CxrkitError:
        raise
    except Exception as err:  # noqa: BLE001 - Beam wraps worker errors in many types
        raise CxrkitError(f"the Beam pipeline ({what}) failed: {type(err).__name__}: "
                          f"{' '.join(str(err).split())[:500]}") from None
    print(f"{what}: done in {time.time() - started:.1f} s", flush=True)


def _encode(value) -> str:
    return base64.b64encode(pickle.dumps(value)).decode()


def beam_map(function, jobs: list, options, *, failed, label: str = "map") -> list:
    """``[function(job) for job in jobs]`` as a Beam pipeline, in order; an element whose
    ``function`` raises gives ``failed(reason)`` instead."""
    _require_beam()
    prefix = _results_prefix(options, "map")
    guarded = Guarded(function, failed)

    def build(pipeline):
        (pipeline
         | "jobs" >> beam.Create(list(enumerate(jobs)))
         | "work" >> beam.Map(lambda item: json.dumps([item[0], _encode(guarded(item[1]))]))
         | "results" >> beam.io.WriteToText(prefix))

    _run(build, options, f"{label} ({len(jobs)} jobs)")
    results = sorted(_read_results(prefix), key=lambda pair: pair[0])
    return [pickle.loads(base64.b64decode(encoded)) for _, encoded in results]


# --- EGD-CXR --------------------------------------------------------------------------------
def _parse_line(line: str, columns):
    """A gaze table line as :meth:`GazeColumns.parse` reads a row."""
    return columns.parse(next(csv.reader([line]), []))


def _index_key(parsed):
    dicom_id, point = parsed
    if not dicom_id:
        return "unattributed", ""
    return ("usable" if point is not None else "dropped"), dicom_id


def egd_gaze_index(gaze_table: str, options):
    """The :class:`~data_prep.egd_cxr.gaze_table.GazeIndex` of a gaze table, counted by a
    pipeline (the launching process reads only the header)."""
    from data_prep.egd_cxr.gaze_table import GazeIndex, read_header

    _require_beam()
    columns = read_header(gaze_table)
    prefix = _results_prefix(options, "gaze-index")

    def build(pipeline):
        (pipeline
         | "read" >> beam.io.ReadFromText(gaze_table, skip_header_lines=1)
         | "parse" >> beam.Map(_parse_line, columns)
         | "rows" >> beam.Filter(lambda parsed: parsed is not None)
         | "key" >> beam.Map(_index_key)
         | "count" >> beam.combiners.Count.PerElement()
         | "json" >> beam.Map(lambda kv: json.dumps([kv[0][0], kv[0][1], kv[1]]))
         | "results" >> beam.io.WriteToText(prefix))

    _run(build, options, "gaze table index")
    usable, dropped, unattributed = set(), {}, 0
    for kind, dicom_id, count in _read_results(prefix):
        if kind == "usable":
            usable.add(dicom_id)
        elif kind == "dropped":
            dropped[dicom_id] = count
        else:
            unattributed = count
    return GazeIndex(usable, dropped, unattributed, columns.timed)


def _egd_convert(element, make_job, index: dict):
    """Joined (dicom id, {"image": [candidate], "gaze": [points]}) -> a kept record
    (main output) or a failure (tagged ``failed``)."""
    from data_prep.egd_cxr.convert import _prepare, example
    from data_prep.egd_cxr.gaze_table import gaze_of

    dicom_id, groups = element
    if not groups["image"]:
        return  # gaze rows of an image that is not converted
    candidate = groups["image"][0]
    result = Guarded(_prepare, as_reason)(make_job(candidate, gaze_of(list(groups["gaze"]))))
    if isinstance(result, str):
        yield beam.pvalue.TaggedOutput("failed", json.dumps(
            [index[dicom_id], candidate.source, result]))
        return
    yield (dicom_id, candidate.label, candidate.patient_id, candidate.source, result.sha256,
           example(dicom_id, candidate.label, candidate.patient_id, result))


def _layouts(kept_ids: list, split_of: dict, shards, compression) -> dict:
    """dicom id -> its shard's name, from the ids of the images that succeeded."""
    from data_prep.records import SPLITS

    where = {}
    for split in SPLITS:
        ids = sorted(i for i in kept_ids if split_of[i] == split)
        for name, chunk in shard_layout(split, ids, shards=shards, compression=compression):
            where.update(dict.fromkeys(chunk, name))
    return where


def _write(group, out: str, compression):
    name, records = group
    checksum = write_shard(out, name, [ex for _, ex in sorted(records)], compression)
    return json.dumps([name, checksum])


def egd_write(plan, gaze_table: str, out: str, *, weight: str, sigma: float, shards,
              compression, options):
    """The second EGD-CXR pipeline (see the module docstring). Returns ``(kept, failures,
    shard names per split, checksums)`` as the local runner's ``write_splits`` would."""
    from data_prep.egd_cxr.convert import Kept, job_for
    from data_prep.egd_cxr.gaze_table import read_header
    from data_prep.records import SPLITS

    _require_beam()
    columns = read_header(gaze_table)
    prepare_out(out)
    split_of = {i: split for split, ids in plan.members.items() for i in ids}
    index = {c.dicom_id: n for n, c in enumerate(plan.candidates)}
    prefix = {k: _results_prefix(options, k) for k in ("kept", "failed", "shards")}

    make_job = functools.partial(job_for, weight=weight, sigma=sigma,
                                 preprocessing=plan.preprocessing, dwell=plan.gaze.timed)

    def build(pipeline):
        images = pipeline | "images" >> beam.Create([(c.dicom_id, c) for c in plan.candidates])
        gaze = (pipeline
                | "read gaze" >> beam.io.ReadFromText(gaze_table, skip_header_lines=1)
                | "parse" >> beam.Map(_parse_line, columns)
                | "usable" >> beam.Filter(lambda p: p is not None and p[1] is not None))
        results = ({"image": images, "gaze": gaze}
                   | "join by dicom id" >> beam.CoGroupByKey()
                   | "convert" >> beam.FlatMap(_egd_convert, make_job, index).with_outputs(
                       "failed", main="kept"))
        kept = results.kept
        _ = results.failed | "failures" >> beam.io.WriteToText(prefix["failed"])
        _ = (kept | "meta" >> beam.Map(lambda k: json.dumps(list(k[:5])))
             | "kept ids" >> beam.io.WriteToText(prefix["kept"]))
        layout = (kept | "ids" >> beam.Map(lambda k: k[0])
                  | "all ids" >> beam.combiners.ToList()
                  | "layout" >> beam.Map(_layouts, split_of, shards, compression))
        _ = (kept
             | "to shard" >> beam.Map(lambda k, where: (where[k[0]], (k[0], k[5])),
                                      beam.pvalue.AsSingleton(layout))
             | "by shard" >> beam.GroupByKey()
             | "write shard" >> beam.Map(_write, out, compression)
             | "checksums" >> beam.io.WriteToText(prefix["shards"]))

    _run(build, options, f"EGD-CXR ({len(plan.candidates)} images)")
    kept = {i: Kept(label, source, sha, patient)
            for i, label, patient, source, sha in _read_results(prefix["kept"])}
    failures = [(source, reason) for _, source, reason in sorted(_read_results(
        prefix["failed"]))]
    checksums = dict(_read_results(prefix["shards"]))
    names = {split: [name for name, _ in shard_layout(
        split, sorted(i for i in kept if split_of[i] == split), shards=shards,
        compression=compression)] for split in SPLITS}
    missing = [n for split in SPLITS for n in names[split] if n not in checksums]
    if missing:
        raise CxrkitError(f"the Beam pipeline did not write shard(s) {', '.join(missing)}")
    remove_stale_shards(out, set(checksums))
    return kept, failures, names, {name: checksums[name] for name in sorted(checksums)}
