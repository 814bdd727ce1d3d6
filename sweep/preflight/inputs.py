"""What a sweep needs of its inputs, checked before any job: the flag sets, the model
(file, tensor names, chunk, one zero chunk through ONNX Runtime), the test set (every
manifest line and audio file), the calibration set and ModelOpt when a flag set is
realised in the graph, the KenLM of a beam decoder.

``python -m sweep`` runs these checks before its first job (``callback.py``) and refuses
a sweep that fails one, so every problem of every job shows once, before any run is
opened; ``python -m sweep.preflight`` prints them all, passed or not. A job still checks
its own model and data (a sampling sweeper's values are known only then).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

from omegaconf import DictConfig

from sweep.errors import SweepError
from sweep.preflight.checks import Check

_MODEL_FIX = ("fix conf/model/<name>.yaml (onnx_path, audio_input, states, logprobs_output, "
              "chunk_ms) or re-export the ONNX; docs/your-model.md")
_DATASET_FIX = "fix the manifest line or the audio file it names; docs/your-model.md"


def input_checks(cfgs: Iterable[DictConfig]) -> list[Check]:
    """One check per distinct flag set error, model, dataset, calibration set and decoder
    among the composed configs of a sweep's jobs."""
    return list(_checks(list(cfgs)))


def _key(node: Any) -> str:
    from sweep.config import as_dict

    return json.dumps(as_dict(node), sort_keys=True, default=str)


def _checks(cfgs: list[DictConfig]) -> Iterator[Check]:
    from sweep.config import JobSettings, as_dict
    from sweep.flags import FlagSet

    seen: set[tuple[str, str]] = set()

    def first(kind: str, *nodes: Any) -> bool:
        key = (kind, "|".join(_key(n) if isinstance(n, DictConfig) else str(n)
                              for n in nodes))
        if key in seen:
            return False
        seen.add(key)
        return True

    in_graph = []
    for cfg in cfgs:
        settings = JobSettings.from_cfg(cfg)
        try:
            flags = FlagSet.from_mapping(as_dict(cfg.trt))
        except SweepError as exc:
            if first("trt", str(exc)):  # one line per reason, however many flag sets
                yield Check("flag set", False, str(exc), "fix the trt.* overrides")
            flags = None
        if first("model", cfg.model):
            yield _model(settings)
        if first("dataset", cfg.dataset, cfg.model.sample_rate):
            yield _dataset(settings)
        if flags is not None and flags.in_graph:
            in_graph.append(flags.label)
            if first("calibration", cfg.dataset, cfg.model.sample_rate):
                yield _calibration(settings, flags.label)
        if settings.decoder.name == "beam" and first("decoder", cfg.decoder):
            yield _kenlm(settings.decoder.kenlm_path)
    if in_graph:
        yield _modelopt(in_graph)


def _model(settings: Any) -> Check:
    name = settings.model_config.name
    try:
        model = settings.model_interface()
        checked = model.check()
    except SweepError as exc:
        return Check(f"model {name}", False, str(exc), _MODEL_FIX)

    def spec(s: Any) -> str:
        return f"{s.name} {(-1, *s.dims)} {s.dtype}".replace("-1", "batch")

    return Check(f"model {name}", True,
                 f"{model.onnx_path}: {', '.join(spec(s) for s in checked.inputs.values())}"
                 f" -> {', '.join(spec(s) for s in checked.outputs.values())}; "
                 f"{model.chunk_ms} ms chunks; {checked.how}")


def _describe(utterances: list[Any]) -> str:
    import soundfile as sf

    subtypes = Counter(sf.info(str(u.audio_path)).subtype for u in utterances)
    minutes = sum(u.duration for u in utterances) / 60
    return (f"{len(utterances)} utterances, {minutes:.1f} min, audio "
            + ", ".join(f"{k} x{v}" for k, v in sorted(subtypes.items())))


def _dataset(settings: Any) -> Check:
    spec = settings.dataset
    try:
        utterances = spec.load()
    except SweepError as exc:
        return Check(f"dataset {spec.name}", False, str(exc), _DATASET_FIX)
    return Check(f"dataset {spec.name}", True,
                 f"{spec.folder / spec.manifest}: {_describe(utterances)}, every line read"
                 + (f" (the first {spec.limit} scored)" if spec.limit else ""))


def _calibration(settings: Any, label: str) -> Check:
    spec = settings.dataset
    name = f"calibration set {spec.calibration.name if spec.calibration else '(none)'}"
    try:
        utterances = spec.load_calibration()[: spec.calibration_utterances]
    except SweepError as exc:
        return Check(name, False, f"{label} is realised in the graph and needs it: {exc}",
                     "set dataset.calibration to a dataset folder (same layout as the test "
                     "set, never its utterances) under dataset.base_path")
    return Check(name, True, f"{_describe(utterances)} (for {label})")


def _kenlm(path: str | None) -> Check:
    from pathlib import Path

    if not path or not Path(path).is_file():
        return Check("KenLM for decoder=beam", False,
                     f"decoder.kenlm_path={path} is not a file",
                     "point decoder.kenlm_path at an ARPA or binary KenLM model")
    return Check("KenLM for decoder=beam", True, str(path))


def _modelopt(labels: list[str]) -> Check:
    what = f"flag set(s) realised in the graph ({', '.join(sorted(set(labels)))})"
    try:
        import modelopt.onnx  # noqa: F401
    except ImportError as exc:
        return Check("ModelOpt", False, f"{what} need NVIDIA ModelOpt's ONNX tools: {exc}",
                     "bash scripts/setup.sh --precision")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = f"nvidia-modelopt {version('nvidia-modelopt')}"
    except PackageNotFoundError:
        found = "modelopt (importable)"
    return Check("ModelOpt", True, f"{found} for {what}")
