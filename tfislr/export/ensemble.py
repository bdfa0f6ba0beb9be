"""One Kaggle-ready TFLite file from one or more training runs: the export and its report.

The exported graph is the competition contract (`contract.py`): raw MediaPipe
frames in, the average of the members' softmax probabilities out. Each member
brings its own `Preprocess(max_len)` — the same TF code that built its training
store — and its (distilled soup) Keras model, so what trained is what ships.

After writing the file `export_ensemble` checks it and fails loudly (`ExportError`):
builtin ops only, size, TF-vs-TFLite parity, finite probabilities on edge inputs,
and it measures 1-thread latency. The report is printed and saved as JSON next to
the `.tflite` file, with the file's sha256 (`pair.py`: readers check that they match).
"""

import pathlib
import time

import numpy as np

from tfislr import atomic
from tfislr import landmarks as lm
from tfislr.config import check_yaml_file_kind, empty_value_error, read_yaml_mapping, shipped_config_path
from tfislr.errors import ConfigError, MissingFileError
from tfislr.export import checks, graph, pair
from tfislr.export.contract import INPUT_NAME, OUTPUT_NAME, SIGNATURE_KEY, ExportError
from tfislr.export.members import (check_members_agree, member_label, resolve_member,
                                   training_data)
from tfislr.export.runner import measure_latency
from tfislr.text import plural

# Labelled clips of a given data dir that the int8-vs-fp32 agreement runs on (both files,
# one clip at a time: one int8 and one fp32 inference a clip; latencies in benchmarks/README.md).
AGREEMENT_SEQUENCES = 256


def load_ensemble_config(path):
    """Reads an ensemble YAML (tfislr/configs/ensemble.yaml-style): name, members, weights,
    quantization, output. `path` may also name a shipped one (`ensemble`, `demo_ensemble`).

    Raises:
        MissingFileError: `path` does not exist.
        ConfigError: `path` is a folder, not a .yaml/.yml/.json file, or not a valid
            ensemble config.
    """
    path = shipped_config_path(path) or pathlib.Path(path)
    check_yaml_file_kind(path, "an ensemble YAML file")
    if not path.is_file():
        raise MissingFileError(f"{path}: ensemble config not found")
    values = read_yaml_mapping(path)
    known = {"name", "members", "weights", "quantization", "output", "runs_dir"}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown}; known: {sorted(known)}")
    members = values.get("members")
    empty = [key for key, value in values.items() if value is None]
    for i, member in enumerate(members if isinstance(members, list) else []):
        if member is None:
            empty.append(f"members[{i}]")
        elif isinstance(member, dict):
            empty += [f"members[{i}].{key}" for key, value in member.items() if value is None]
    if empty:
        raise ConfigError(f"{path}: {empty_value_error(empty[0])}")
    if not members:
        raise ConfigError(f"{path}: 'members' must list at least one run")
    values.setdefault("name", path.stem)
    return values


def export_ensemble(
    ensemble,
    output_path=None,
    quantization=None,
    *,
    runs_dir=None,
    weights=None,
    max_size_mb=checks.MAX_SIZE_MB,
    parity_clips=None,
    parity_tolerance=None,
    latency_repeats=3,
    verbose=True,
    member_role="an ensemble member",
):
    """Builds, converts, writes and checks the ensemble; returns the report dict.

    Args:
        ensemble: an ensemble YAML (a path, or a shipped one's name: `ensemble`) or a list of
            members (config names, run dirs, `{config|run, weights}` dicts or
            `EnsembleMember`s).
        output_path: the .tflite to write; default the YAML's `output`, else
            `artifacts/<name>.tflite`. The report goes to `<output>.json` with the
            file's sha256 (`tfislr.export.pair`); both are written only when every check
            passes, and then an earlier failed attempt's `<output>.rejected.*` go.
        quantization: "fp16" (default; fp16 weights), "fp32" or "int8"
            (dynamic-range int8 weights).
        runs_dir: where `runs/<config>/<timestamp>/` live (default "runs").
        weights: which soup to load when a member does not say (default
            "distilled").
        max_size_mb: size limit in MB (10**6 bytes); None disables the check.
        parity_clips: raw clips for parity and latency (default `checks.probe_sequences()`),
            or a Kaggle-layout data dir whose clips to use (`checks.clips_from_data_dir`),
            read before the conversion; its clips that cannot be read are skipped, each
            named in one logged line and in the report's "parity_skipped".
            For int8, the report's "agreement" compares the file with the fp32
            conversion of the same graph on these clips (`checks.check_agreement`); with
            a data dir, on up to `AGREEMENT_SEQUENCES` of its labelled clips, including
            the accuracy difference and whether those clips are held-out data by the
            members' recorded splits (`checks.training_use`).
        parity_tolerance: default `checks.PARITY_TOLERANCE[quantization]`.
        member_role: where the members were given, for the run-dir errors
            (`members.resolve_member`; `tfislr-export single` says "--run").

    Raises (all `tfislr.errors.TfislrError`s, reported by `tfislr-export` as one line):
        ConfigError: bad ensemble config, an output folder that cannot be written, or
            members that disagree on the classes.
        MissingFileError: a run, run dir, weights file or ensemble YAML does not exist.
        DataError: the parity data dir has none of its chosen clips readable.
        ExportError: a check failed; the file and its report are kept for inspection as
            `<output>.rejected.tflite` / `.rejected.json`, an earlier `<output>.tflite` /
            `.json` stays as it was.
    """
    name, specs, quantization, runs_dir, weights, output_path = _settings(
        ensemble, output_path, quantization, runs_dir, weights)
    log = print if verbose else (lambda *a, **k: None)
    # Read before the slow conversion: a data dir with no readable clip fails in seconds.
    clips, labelled, skipped = _parity_inputs(parity_clips, quantization, log)

    start = time.perf_counter()
    members = [resolve_member(s, runs_dir=runs_dir, default_weights=weights, role=member_role)
               for s in specs]
    # After the runs (`single`'s default output is in its run dir), before the conversion.
    atomic.check_writable_dir(output_path.parent)
    num_classes = check_members_agree(members)
    module, ops, unchecked_path = _convert(members, quantization, output_path, log)
    convert_seconds = time.perf_counter() - start

    report = _base_report(output_path, name, quantization, members, num_classes, ops,
                          convert_seconds)
    report["parity_skipped"] = skipped
    try:
        _check_file(report, module, unchecked_path, max_size_mb=max_size_mb, clips=clips,
                    labelled=labelled, parity_tolerance=parity_tolerance,
                    latency_repeats=latency_repeats, log=log)
    except ExportError as error:
        _reject(report, output_path, unchecked_path, error)
    _publish(report, unchecked_path, output_path)
    log(format_report(report))
    return report


def _settings(ensemble, output_path, quantization, runs_dir, weights):
    """(name, member specs, quantization, runs_dir, weights, output path) of an export: the
    arguments, else the ensemble YAML's values, else the defaults (`export_ensemble`).

    Raises:
        ConfigError: a bad ensemble config or quantization, or an output path that is a folder.
    """
    name, specs, config = _read_ensemble(ensemble)
    quantization = quantization or config.get("quantization", "fp16")
    if quantization not in graph.QUANTIZATIONS:
        raise ConfigError(f"quantization must be one of {graph.QUANTIZATIONS}, got {quantization!r}")
    runs_dir = runs_dir or config.get("runs_dir", "runs")
    weights = weights or config.get("weights", "distilled")
    output_path = pathlib.Path(output_path or config.get("output") or f"artifacts/{name}.tflite")
    if output_path.is_dir():  # found before the conversion, not by the final rename
        raise ConfigError(f"{output_path}: is a folder; the output is the .tflite file to write "
                          f"(e.g. {output_path / (name + '.tflite')})")
    return name, specs, quantization, runs_dir, weights, output_path


def _convert(members, quantization, output_path, log):
    """(ensemble module, its TFLite ops, the unchecked file): the members' graph converted
    and written under a side name, `<output>.unchecked.tflite`, so that the output path
    only ever holds a file that passed every check (an earlier good export stays in place
    when this one fails)."""
    module = graph.build_ensemble_module(members)
    log(f"converting {plural(len(members), 'member')} to TFLite ({quantization}) ...")
    content = graph.convert(module, quantization)
    ops = graph.check_builtin_ops(content)
    unchecked_path = output_path.with_suffix(".unchecked.tflite")
    atomic.write_bytes(unchecked_path, content)
    return module, ops, unchecked_path


def _publish(report, unchecked_path, output_path):
    """Moves the checked file and its report to `output_path` and `<output>.json` (one
    pair, `tfislr.export.pair`) and removes an earlier failed attempt's rejected pair,
    which describes a file this one replaces."""
    pair.write_pair(unchecked_path, output_path, report)
    for stale in pair.rejected_paths(output_path):
        stale.unlink(missing_ok=True)
    report["report_path"] = str(pair.report_path(output_path))


def _reject(report, output_path, unchecked_path, error):
    """Moves the file that failed a check and its report to `<output>.rejected.tflite` /
    `.rejected.json`, and raises the error naming the output and the rejected file.

    `<output>.tflite` and `<output>.json` are not touched: an earlier export that passed
    stays usable, file and report together.

    Raises:
        ExportError: always.
    """
    rejected_path, rejected_report = pair.rejected_paths(output_path)
    # The checks name the file they read, the side name that will no longer exist.
    reason = str(error).replace(str(unchecked_path), str(rejected_path))
    report.update(path=str(rejected_path), error=reason, rejected_path=str(rejected_path))
    pair.write_pair(unchecked_path, rejected_path, report)
    raise ExportError(f"{output_path} not written: {reason}; the file that failed and its "
                      f"report are kept as {rejected_path} and {rejected_report}") from None


def _read_ensemble(ensemble):
    """`(name, member specs list, ensemble YAML dict or {})` of `export_ensemble`'s argument.

    Raises:
        ConfigError: neither a path nor a list of members; a path that is a folder or
            not a .yaml/.yml/.json file; a bad YAML.
        MissingFileError: the YAML does not exist.
    """
    if isinstance(ensemble, (str, pathlib.Path)):  # load_ensemble_config checks its kind
        config = load_ensemble_config(ensemble)
        return config["name"], config["members"], config
    if isinstance(ensemble, (list, tuple)):
        return "ensemble", list(ensemble), {}
    raise ConfigError(
        f"ensemble must be an ensemble YAML path or a list of members, got {ensemble!r}"
    )


def _base_report(output_path, name, quantization, members, num_classes, ops, convert_seconds):
    """The report's fields known before the checks: the contract (input `[None, 543, 3]`
    float32 raw frames, output `[num_classes]` probabilities), the members, the ops and
    the conversion time in seconds."""
    return {
        "path": str(output_path),
        "name": name,
        "quantization": quantization,
        "signature": SIGNATURE_KEY,
        "input": {"name": INPUT_NAME, "shape": [None, lm.NUM_RAW_LANDMARKS, 3]},
        "output": {"name": OUTPUT_NAME, "shape": [num_classes]},
        "num_classes": num_classes,
        "members": [
            {
                "name": m.name,
                "run_dir": m.run_dir,
                "weights": m.weights,
                "max_len": m.max_len,
                "num_params": int(sum(np.prod(v.shape) for v in m.model.weights)),
                "split": m.split,
                "trained_on": training_data(m.split),
            }
            for m in members
        ],
        "ops": ops,
        "convert_seconds": round(convert_seconds, 1),
        "signs": next((m.signs for m in members if m.signs is not None), None),
    }


def _parity_inputs(parity_clips, quantization, log):
    """`(clips, labelled, skipped)` of `export_ensemble`'s `parity_clips`: the parity and
    latency clips (each `[T, 543, 3]` float32); for int8 with a data dir, `(clips, labels,
    signs, participants)` of up to `AGREEMENT_SEQUENCES` labelled clips for the agreement,
    else None; and the messages of a data dir's clips that could not be read, each logged
    as one line. Each clip is read once: int8's parity clips are `PARITY_SEQUENCES` evenly
    spaced ones of its labelled clips.

    Raises:
        MissingFileError / DataError: the data dir has no train.csv or sign map, or none of
            its chosen clips can be read (`checks.clips_from_data_dir`).
    """
    if parity_clips is None:
        return checks.probe_sequences(), None, []
    if not isinstance(parity_clips, (str, pathlib.Path)):
        return list(parity_clips), None, []
    skipped = []
    labelled = None
    if quantization == "int8":
        labelled = checks.clips_from_data_dir(parity_clips, AGREEMENT_SEQUENCES,
                                              with_labels=True, skipped=skipped)
        read = labelled[0]
        clips = [read[i] for i in checks.spaced_rows(len(read), checks.PARITY_SEQUENCES)]
    else:
        clips = checks.clips_from_data_dir(parity_clips, skipped=skipped)
    for message in skipped:
        log(f"parity data: skipped a clip that cannot be read: {message}")
    return clips, labelled, skipped


def _check_file(report, module, path, *, max_size_mb, clips, labelled, parity_tolerance,
                latency_repeats, log):
    """Runs the checks on the written file `path` and adds their results to `report`
    (size; parity and latency on `clips`, each `[T, 543, 3]` float32; edge cases; for
    int8 the agreement with fp32, on `labelled` when given: see `_parity_inputs`).

    Raises:
        ExportError: a check failed (the results so far are in `report`).
    """
    quantization, num_classes = report["quantization"], report["num_classes"]
    report["size"] = checks.check_size(path, max_size_mb)
    tolerance = (checks.PARITY_TOLERANCE[quantization] if parity_tolerance is None
                 else parity_tolerance)
    report["parity"] = checks.check_parity(module, path, clips, tolerance)
    report["edge_cases"] = checks.check_edge_cases(path, num_classes)
    report["latency"] = measure_latency(path, clips, repeats=latency_repeats)
    if quantization == "int8":
        log("measuring int8 agreement with the fp32 graph ...")
        report["agreement"] = _int8_agreement(module, path, clips, labelled, report["signs"],
                                              num_classes, [m["split"] for m in report["members"]])


def _int8_agreement(module, output_path, clips, labelled, signs, num_classes, splits):
    """`checks.check_agreement` against a fresh fp32 conversion; with `labelled` (a data
    dir's `(clips, labels, signs, participants)`), on those clips (accuracy only when its
    signs are the model's, said to be on held-out data or not by the members' `splits`).
    Without an accuracy, "no_accuracy" says why (`_why_no_accuracy`)."""
    labels = training = None
    if labelled is not None:
        clips, labels, data_signs, participants = labelled
        training = checks.training_use(participants, splits)
    why = _why_no_accuracy(labelled, signs, num_classes)
    if why is not None:
        labels = None
    reference = graph.convert(module, "fp32")
    result = checks.check_agreement(reference, output_path, clips, labels, training)
    return result if why is None else {**result, "no_accuracy": why}


def _why_no_accuracy(labelled, signs, num_classes):
    """Why the int8 agreement cannot measure an accuracy on `labelled`, or None if it can:
    no labelled data, or data labelled with other signs than the model's (`signs` by label,
    None when the members record none: then only their number can be compared)."""
    if labelled is None:
        return "pass labelled data (--parity-data DATA_DIR) to measure it"
    data_signs = labelled[2]
    if len(data_signs) != num_classes:
        return (f"not measured: the parity data has {plural(len(data_signs), 'sign')}, the model "
                f"{num_classes}")
    if signs is not None and list(signs) != list(data_signs):
        label = next(i for i, (a, b) in enumerate(zip(signs, data_signs)) if a != b)
        return (f"not measured: the parity data's sign map is not the model's (label {label} "
                f"is {data_signs[label]!r} there, {signs[label]!r} in the model)")
    return None


def _accuracy_data(accuracy, agreement):
    """What the int8 accuracy's clips are to the members (`checks.training_use`)."""
    data, trained = accuracy.get("data"), accuracy.get("training_clips")
    if data == checks.HELD_OUT:
        return "on held-out data (no member trained on these clips' signers)"
    if data == checks.TRAINING:
        return (f"on training data ({trained} of {plural(agreement['num_sequences'], 'clip')} are of "
                "signers a member trained on)")
    return "on data that may be training data (a member records no split)"


def format_report(report):
    size, parity, latency = report["size"], report["parity"], report["latency"]
    members = "; ".join(f"{member_label(m['name'], m['run_dir'], m['weights'])}: max_len "
                        f"{m['max_len']}, {m['num_params']:,} params" for m in report["members"])
    lines = [
        f"wrote {report['path']} ({report['quantization']}, {plural(len(report['members']), 'member')}: "
        f"{members})",
        f"  size     {size['mb']:.2f} MB = {size['mib']:.2f} MiB ({size['bytes']:,} bytes), "
        f"limit {size['max_mb']} MB",
        f"  ops      {len(report['ops'])} builtin op types, no Select TF / custom ops",
        f"  parity   max |TF - TFLite| = {parity['max_abs_diff']:.2e} "
        f"(tolerance {parity['tolerance']:g}) over {plural(parity['num_sequences'], 'clip')}, "
        f"argmax agreement {parity['argmax_agreement']:.0%}"
        + (f" ({plural(len(report['parity_skipped']), 'unreadable clip')} skipped)"
           if report.get("parity_skipped") else ""),
        f"  edge     finite probabilities summing to 1 for: {', '.join(report['edge_cases'])}",
        f"  latency  median {latency['median_ms']:.2f} ms, p95 {latency['p95_ms']:.2f} ms per "
        f"sequence ({plural(latency['num_threads'], 'thread')}, {plural(latency['num_calls'], 'call')}; first pass "
        f"incl. memory re-planning: mean {latency['first_pass']['mean_ms']:.1f}, "
        f"max {latency['first_pass']['max_ms']:.1f} ms)",
    ]
    agreement = report.get("agreement")
    if agreement is not None:
        line = (f"  vs fp32  top-1 agreement {agreement['top1_agreement']:.1%}, max probability "
                f"diff {agreement['max_prob_diff']:.2e} over {plural(agreement['num_sequences'], 'clip')}")
        accuracy = agreement["accuracy"]
        if accuracy is not None:
            line += (f"; accuracy {accuracy['quantized']:.4f} vs fp32 {accuracy['fp32']:.4f} "
                     f"({accuracy['difference']:+.4f}) {_accuracy_data(accuracy, agreement)}")
        else:
            line += f"; accuracy: {agreement['no_accuracy']}"
        lines.append(line)
    lines.append(f"  report   {pair.report_path(report['path'])}")
    # Last, where it is seen: which runs became the file, and on which data they trained.
    lines.append("  runs     " + "; ".join(
        f"{member_label(m['name'], m['run_dir'], m['weights'])} trained on "
        f"{m.get('trained_on') or training_data(m['split'])}" for m in report["members"]))
    return "\n".join(lines)
