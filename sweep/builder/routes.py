"""TensorRT 11.1+ build routes: the reference pairs trtexec's accuracy filter reads, the
tuning record it writes, and the route a finished search picked.

Everything here is read off trtexec's own sources (NVIDIA/TensorRT at the 11.1 release):
``samples/trtexec/README.md`` example 7 for the options, ``samples/common/sampleUtils.cpp``
(``writeTuningCacheHeader``/``writeTuningCacheIteration``) for the record: JSON lines, a
header (``tuner_version``, ``accuracy_algorithm``, ``accuracy_parameter``,
``searching_algorithm``, ``command_line``, ``default_build_route``, ``tuning_expr``,
``files``, ``argv``) then one line per finished iteration (``iter``, ``build_route``,
``crash``, ``error_message``, ``accuracy_loss`` per output or null, ``gpu_time`` in ms or
null). ``samples/trtexec/trtexec.cpp`` (``finalizeBestEngine``) logs the winner as
``Best iteration: <route> (gpu_time_ms=<t>)``; ``--continue --tuningCacheFile=<f>``
resumes from the header's argv and must be given nothing else.

The reference pairs are (audio chunk, state) inputs of real streamed calibration audio
(``sweep/precision/calibration.py``) and the fp32 model's outputs on them, never random
tensors: a route is judged on the inputs the stream will meet.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sweep import keys
from sweep.errors import BuildError, ConfigError
from sweep.flags import FlagSet

# In the trtexec container, the flag set's tuning folder (reference pairs, record).
CONTAINER_DIR = "/tuning"
_BEST = re.compile(r"Best iteration: (.*) \(gpu_time_ms=([-+0-9.eE]+|inf|nan)\)")


@dataclass(frozen=True)
class ReferencePairs:
    """``--refPair`` groups: per pair, input name -> file and output name -> file (names
    relative to ``dir``); every tensor is ``batch`` streamed chunks, raw bytes."""

    dir: Path
    pairs: tuple[tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]], ...]
    batch: int
    digest: str


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def write_reference_pairs(onnx_path: Path, arrays: dict[str, np.ndarray], batch: int,
                          root: Path, flags: FlagSet, count: int = 2,
                          onnx_digest: str | None = None) -> ReferencePairs:
    """``count`` pairs of ``batch`` consecutive streamed chunks and the fp32 ONNX's outputs
    on them, written once under ``root`` (keyed by content: ``keys.reference_pairs_key``;
    ``onnx_digest``, the ONNX's sha256 when the caller has it)."""
    rows = min(len(a) for a in arrays.values()) if arrays else 0
    if rows < batch:
        raise ConfigError(
            f"a build-route search needs reference pairs of {batch} streamed chunks (the "
            f"inference batch), the calibration audio gave {rows}. Raise "
            "dataset.calibration_utterances or lower trt.opt_batch.")
    count = max(1, min(count, rows // batch))
    digest = keys.reference_pairs_key(onnx_digest or keys.file_digest(Path(onnx_path)),
                                      arrays, count * batch, batch, count, flags.digest)
    folder = root / digest
    import onnxruntime as ort

    # The fp32 model, as the pipeline streams it: its outputs are the references.
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    out_names = [o.name for o in session.get_outputs()]
    pairs = []
    for k in range(count):
        feed = {n: np.ascontiguousarray(a[k * batch:(k + 1) * batch]) for n, a in arrays.items()}
        inputs = [(name, f"in{k}_{_safe(name)}.bin") for name in feed]
        outputs = [(name, f"ref{k}_{_safe(name)}.bin") for name in out_names]
        if not all((folder / f).is_file() for _, f in inputs + outputs):
            folder.mkdir(parents=True, exist_ok=True)
            results = session.run(out_names, feed)
            for (_, f), value in zip(inputs, feed.values(), strict=True):
                (folder / f).write_bytes(value.tobytes())
            for (_, f), value in zip(outputs, results, strict=True):
                (folder / f).write_bytes(np.ascontiguousarray(value).tobytes())
        pairs.append((tuple(inputs), tuple(outputs)))
    return ReferencePairs(folder, tuple(pairs), batch, digest)


def tuning_args(flags: FlagSet, reference: ReferencePairs, record: str) -> list[str]:
    """The route search's options (README example 7), paths as trtexec sees them."""
    args = [f"--tuneBuildRoutes={flags.tuning_expr}",
            f"--tuningSearch={flags.tune_build_routes}", f"--tuningCacheFile={record}"]
    if flags.tuning_timeout_s != -1:
        args.append(f"--tuningTimeOut={int(flags.tuning_timeout_s)}")
    if flags.save_all_engines:
        args.append("--saveAllEngines")
    for k, (inputs, outputs) in enumerate(reference.pairs):
        args += [f"--refPair={k}",
                 "--loadInputs=" + ",".join(f"{n}:{CONTAINER_DIR}/{f}" for n, f in inputs),
                 "--loadRefOutputs=" + ",".join(f"{n}:{CONTAINER_DIR}/{f}"
                                                for n, f in outputs)]
    args += [f"--accuracyAlgorithm={flags.tuning_accuracy_algorithm}",
             f"--accuracyThreshold={flags.tuning_accuracy_threshold:g}"]
    return args


def record_name(tensorrt: str, device: str) -> str:
    """One record per TensorRT release and GPU model: the guide calls routes version- and
    GPU-specific, so a record is never resumed on another."""
    return f"record-{_safe(tensorrt)}-{_safe(device)}.jsonl"


@dataclass
class TuningRecord:
    header: dict[str, Any]
    iterations: list[dict[str, Any]] = field(default_factory=list)

    def metrics(self) -> dict[str, float]:
        done = [i for i in self.iterations if not i.get("crash") and
                isinstance(i.get("gpu_time"), int | float)]
        out = {"tuning_iterations": float(len(self.iterations)),
               "tuning_crashed": float(len(self.iterations) - len(done))}
        if done:
            out["tuning_best_gpu_time_ms"] = float(min(i["gpu_time"] for i in done))
        first = self.iterations[0] if self.iterations else None
        if first is not None and self.header.get("searching_algorithm") in ("fast", "mixed") \
                and isinstance(first.get("gpu_time"), int | float):
            # fast/mixed try the baseline (every knob at its default) first.
            out["tuning_baseline_gpu_time_ms"] = float(first["gpu_time"])
        return out


def read_record(path: Path) -> TuningRecord | None:
    """The record, or None when there is none (or not even a header line)."""
    if not path.is_file():
        return None
    lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    if not lines:
        return None
    try:
        header = json.loads(lines[0])
    except json.JSONDecodeError as exc:
        raise BuildError(f"{path}: the tuning record's header is not JSON ({exc}); delete "
                         "the file to search again.") from exc
    if not isinstance(header, dict) or "argv" not in header or "tuning_expr" not in header:
        raise BuildError(f"{path}: not a trtexec tuning record (its header lacks 'argv' or "
                         "'tuning_expr', which --continue needs); delete it to search again.")
    iterations = []
    for line in lines[1:]:
        try:
            iterations.append(json.loads(line))
        except json.JSONDecodeError:  # trtexec itself counts a malformed line as a crash
            iterations.append({"crash": True, "gpu_time": None})
    return TuningRecord(header, iterations)


def best_from_log(text: str) -> tuple[str, float] | None:
    """The route and GPU time trtexec reported for the winning iteration."""
    found = _BEST.findall(text)
    if not found:
        return None
    route, ms = found[-1]
    return route.strip(), float(ms)


def job_reference(inputs: Any, flags: FlagSet, derived_dir: Path) -> ReferencePairs | None:
    """A route search's reference pairs for one job (``inputs``: its ``ResolvedInputs``):
    calibration audio streamed through the fp32 model (the calibration stage's cached
    pairs), the fp32 outputs beside them."""
    if not flags.tunes_routes:
        return None
    from sweep.precision.calibration import collect

    resolved = inputs.calibration
    calibration = collect(inputs.model, resolved.utterances, resolved.wanted,
                          cache_dir=derived_dir, key=resolved.pairs_key)
    return write_reference_pairs(inputs.model.onnx_path, calibration.arrays, flags.opt_batch,
                                 derived_dir / "tuning", flags, onnx_digest=inputs.onnx_digest)
