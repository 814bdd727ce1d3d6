"""The model interface: how the sweep talks to an exported streaming CTC model.

Two contracts are first-class (conf/model/*.yaml):

- ``monolithic`` (T-one's public export): int16-range INT32 samples in, the model computes
  its own features; every recurrent state in one flat tensor.
- ``skip_preprocessor`` (the seed's fork): log-mel FP32 in, computed by a separate
  preprocessing step (Triton ensemble); NeMo-style caches.

Shapes are read from the ONNX file itself and checked against the config, so a mismatch
fails before any build. ``check()`` goes further: it runs one zero chunk through ONNX
Runtime and compares what the graph really produces with what it declares. A state output
declared 1000 wide whose graph makes 105489 values passed every static check, was built
and served with the declared size, and crashed the server (SIGSEGV) on the first chunk.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from sweep.errors import ModelError


class Contract(StrEnum):
    """How a model takes audio. A StrEnum: its values are the config's and MLflow's strings."""

    MONOLITHIC = "monolithic"  # T-one's public export: samples in, features inside
    SKIP_PREPROCESSOR = "skip_preprocessor"  # the seed's fork: log-mel in, ensemble in Triton

_ONNX_TO_TRITON: dict[int, str] = {
    onnx.TensorProto.FLOAT: "TYPE_FP32",
    onnx.TensorProto.FLOAT16: "TYPE_FP16",
    onnx.TensorProto.BFLOAT16: "TYPE_BF16",
    onnx.TensorProto.INT32: "TYPE_INT32",
    onnx.TensorProto.INT64: "TYPE_INT64",
    onnx.TensorProto.DOUBLE: "TYPE_FP64",
}
_ONNX_TO_NUMPY: dict[int, str] = {
    onnx.TensorProto.FLOAT: "float32",
    onnx.TensorProto.FLOAT16: "float16",
    onnx.TensorProto.INT32: "int32",
    onnx.TensorProto.INT64: "int64",
    onnx.TensorProto.DOUBLE: "float64",
}


@dataclass(frozen=True)
class StatePair:
    """A state input and the output that carries its next value."""

    input: str
    output: str


@dataclass(frozen=True)
class TensorSpec:
    """One ONNX input or output: name, element type, shape without the batch axis."""

    name: str
    dtype: str  # numpy dtype name
    triton_type: str
    dims: tuple[int, ...]


@dataclass(frozen=True)
class ModelInterface:
    """Which tensors carry audio, state and logprobs, and how audio is chunked."""

    name: str
    onnx_path: Path
    contract: Contract
    audio_input: str
    logprobs_output: str
    states: tuple[StatePair, ...]
    length_input: str | None = None
    chunk_ms: int = 400
    sample_rate: int = 8000
    # Samples of the previous chunk prepended for a stateless preprocessing step
    # (n_fft - hop = 80 at 8 kHz): the seed's preproc_left_context.
    left_context_samples: int = 80
    # int16 full scale: T-one's ONNX divides INT32 samples by it; the ensemble's client
    # sends float audio already divided by it.
    scale: float = 32767.0
    blank_id: int = 34
    # Silence padded on both sides of every utterance, as T-one's pipeline does.
    pad_ms: int = 300

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "contract", Contract(self.contract))
        except ValueError:
            raise ModelError(
                f"model.contract={str(self.contract)!r} is unknown; expected one of "
                f"{', '.join(c.value for c in Contract)}."
            ) from None
        if (self.sample_rate * self.chunk_ms) % 1000:
            raise ModelError(
                f"model.chunk_ms={self.chunk_ms} is not a whole number of samples at "
                f"{self.sample_rate} Hz."
            )

    @property
    def chunk_samples(self) -> int:
        return self.sample_rate * self.chunk_ms // 1000

    @property
    def entry_model(self) -> str:
        """The Triton model a client calls: the ensemble for the skip-preprocessor contract."""
        return "ensemble" if self.contract is Contract.SKIP_PREPROCESSOR else "model"

    def load_graph(self) -> onnx.ModelProto:
        """Read the ONNX file (structure only), with one clear error when it cannot be read."""
        return read_onnx(self.onnx_path, load_weights=False)

    def tensors(self, graph: onnx.ModelProto | None = None
                ) -> tuple[dict[str, TensorSpec], dict[str, TensorSpec]]:
        """Inputs and outputs of the ONNX model, checked against this interface."""
        graph = graph if graph is not None else self.load_graph()
        inputs = {v.name: _spec(v, self.onnx_path) for v in graph.graph.input
                  if v.name not in {i.name for i in graph.graph.initializer}}
        outputs = {v.name: _spec(v, self.onnx_path) for v in graph.graph.output}
        want_in = [self.audio_input, *(s.input for s in self.states)]
        if self.length_input:
            want_in.append(self.length_input)
        want_out = [self.logprobs_output, *(s.output for s in self.states)]
        missing_in = [n for n in want_in if n not in inputs]
        missing_out = [n for n in want_out if n not in outputs]
        if missing_in or missing_out or set(inputs) - set(want_in):
            raise ModelError(
                f"{self.onnx_path}: does not match model interface {self.name!r} "
                f"({self.contract}). Expected inputs {want_in} and outputs {want_out}; the "
                f"ONNX has inputs {list(inputs)} and outputs {list(outputs)}. Pick the "
                "matching model=... config or fix conf/model/."
            )
        audio = inputs[self.audio_input]
        if self.contract is Contract.MONOLITHIC and audio.dims[:1] != (self.chunk_samples,):
            raise ModelError(
                f"{self.onnx_path}: input {self.audio_input!r} takes {audio.dims} samples per "
                f"chunk, but model.chunk_ms={self.chunk_ms} means {self.chunk_samples}. "
                "Set model.chunk_ms to the chunk the model was exported with."
            )
        if self.contract is Contract.SKIP_PREPROCESSOR:
            frames = self.chunk_samples // 80
            if len(audio.dims) != 2 or audio.dims[1] != frames:
                raise ModelError(
                    f"{self.onnx_path}: input {self.audio_input!r} has shape {audio.dims}; for "
                    f"model.chunk_ms={self.chunk_ms} expected (64, {frames}) feature frames."
                )
        for pair in self.states:
            if inputs[pair.input].dims != outputs[pair.output].dims:
                raise ModelError(
                    f"{self.onnx_path}: state {pair.input} {inputs[pair.input].dims} and its "
                    f"next value {pair.output} {outputs[pair.output].dims} differ in shape."
                )
        return inputs, outputs

    def check(self) -> ModelCheck:
        """``tensors()``, then one zero chunk at batch 1 through ONNX Runtime: every output's
        real shape and type must be the declared ones (``tensors()`` already holds each
        state's declared input and output to one shape, so a state that comes out as
        declared can be fed back), the logprobs must have a class for the blank. Raises
        ModelError naming the tensor, the declared and the real shape.

        A model ONNX Runtime cannot run here (an op it lacks, a bf16 input numpy cannot
        make) is held to ONNX's strict shape inference instead, which refuses the same
        mismatches from the graph alone. Checked once per file and interface in a process
        (a multirun's jobs share it)."""
        stat = self.onnx_path.stat() if self.onnx_path.is_file() else None
        key = (self, stat.st_mtime_ns if stat else 0, stat.st_size if stat else 0)
        if key not in _CHECKED:
            inputs, outputs = self.tensors()
            classes = outputs[self.logprobs_output].dims[-1]
            if classes <= self.blank_id:
                raise ModelError(
                    f"{self.onnx_path}: output {self.logprobs_output!r} has {classes} classes, "
                    f"but model.blank_id={self.blank_id} needs at least {self.blank_id + 1}.")
            how = self._run_zero_chunk(inputs, outputs)
            _CHECKED[key] = ModelCheck(inputs, outputs, how)
        return _CHECKED[key]

    def _run_zero_chunk(self, inputs: dict[str, TensorSpec],
                        outputs: dict[str, TensorSpec]) -> str:
        import onnxruntime as ort

        if any(spec.triton_type == "TYPE_BF16" for spec in inputs.values()):
            return self._strict_shapes("a bf16 input cannot be fed from numpy")
        feed: dict[str, Any] = {}
        for name, spec in inputs.items():
            feed[name] = np.zeros((1, *spec.dims), dtype=spec.dtype)
        if self.length_input:  # the frames of the chunk, as the client sends them
            frames = inputs[self.audio_input].dims[-1]
            feed[self.length_input] = np.full(feed[self.length_input].shape, frames,
                                              feed[self.length_input].dtype)
        options = ort.SessionOptions()
        options.log_severity_level = 3  # the mismatch is reported below, by name
        options.intra_op_num_threads = 1
        try:
            session = ort.InferenceSession(str(self.onnx_path), options,
                                           providers=["CPUExecutionProvider"])
            names = [o.name for o in session.get_outputs()]
            produced = dict(zip(names, session.run(names, feed), strict=True))
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph/RuntimeException
            return self._strict_shapes(
                f"ONNX Runtime cannot run one zero chunk of the declared shapes "
                f"({', '.join(f'{n} {_shape(s.dims)}' for n, s in inputs.items())}): "
                f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:400]}")
        problems = []
        for name, spec in outputs.items():
            value = np.asarray(produced[name])
            real = tuple(value.shape[1:])
            if value.shape[:1] != (1,) or real != spec.dims:
                problems.append(f"output {name!r} is declared {_shape(spec.dims)} but the "
                                f"graph produces {tuple(value.shape)} for a batch of 1")
            elif value.dtype != np.dtype(spec.dtype):
                problems.append(f"output {name!r} is declared {spec.dtype} but the graph "
                                f"produces {value.dtype}")
        if problems:
            raise ModelError(
                f"{self.onnx_path}: one zero chunk through ONNX Runtime does not match the "
                f"declared interface: {'; '.join(problems)}. Re-export the model with the "
                "real shapes (a state's declared size must be the size the graph makes).")
        return "one zero chunk ran as declared (ONNX Runtime)"

    def _strict_shapes(self, why: str) -> str:
        """ONNX's shape inference in strict mode: an inferred shape or type that contradicts
        a declared one is an error naming the node."""
        from onnx import shape_inference

        try:
            shape_inference.infer_shapes(read_onnx(self.onnx_path), check_type=True,
                                         strict_mode=True, data_prop=True)
        except Exception as exc:  # InferenceError, or a graph the checker cannot read
            raise ModelError(
                f"{self.onnx_path}: {why}; and ONNX's strict shape inference refuses it: "
                f"{' '.join(str(exc).split())[:500]}. The graph does not compute with the "
                "shapes and types it declares; re-export it.") from exc
        return f"strict shape inference agrees with the declared shapes ({why})"


@dataclass(frozen=True)
class ModelCheck:
    """What ``ModelInterface.check()`` found: the tensors, and how they were checked."""

    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]
    how: str


# (interface, mtime, size) -> the check of a model that computes as it declares.
_CHECKED: dict[tuple[ModelInterface, int, int], ModelCheck] = {}


def _shape(dims: tuple[int, ...]) -> str:
    """A shape as a user reads it: the batch axis first."""
    return "(batch, " + ", ".join(str(d) for d in dims) + ")" if dims else "(batch,)"


def read_onnx(path: Path, *, load_weights: bool = True) -> onnx.ModelProto:
    """Load an ONNX file or raise ModelError naming it and what was expected."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(
            f"ONNX model {path} does not exist. Expected an exported model file; check "
            "model.onnx_path (the demo's are under demo/assets/)."
        )
    try:
        return onnx.load(str(path), load_external_data=load_weights)
    except Exception as exc:  # onnx raises DecodeError, ValueError, OSError...
        raise ModelError(
            f"ONNX model {path} cannot be read ({type(exc).__name__}: {exc}). Expected a "
            "valid ONNX protobuf; re-export it."
        ) from exc


def _spec(value: onnx.ValueInfoProto, path: Path) -> TensorSpec:
    t = value.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
    if not dims or t.elem_type not in _ONNX_TO_TRITON:
        raise ModelError(f"{path}: tensor {value.name!r} has an unsupported type or shape.")
    if any(d < 1 for d in dims[1:]):
        raise ModelError(
            f"{path}: tensor {value.name!r} has dynamic non-batch dims {dims}; the sweep needs "
            "fixed shapes except the batch axis (export with a fixed chunk)."
        )
    return TensorSpec(value.name, _ONNX_TO_NUMPY.get(t.elem_type, "float32"),
                      _ONNX_TO_TRITON[t.elem_type], tuple(dims[1:]))
