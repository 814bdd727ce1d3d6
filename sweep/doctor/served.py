"""The served side of a parity check: a Triton endpoint streamed one chunk at a time.

Synchronous and one utterance at a time on purpose: the doctor wants each chunk's output
(and, for the ensemble, its preprocessing step's features), not throughput. Every call
carries a deadline, so a server that is down or hangs ends in a DoctorError, never a hang.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from sweep.data.manifest import Utterance
from sweep.errors import DoctorError, ModelError
from sweep.evaluate.reference import UtteranceTrace
from sweep.evaluate.stream import chunk_inputs
from sweep.evaluate.variant import ClientVariant
from sweep.model import Contract, ModelInterface

_NUMPY = {"FP32": np.float32, "FP16": np.float16, "INT32": np.int32, "INT64": np.int64,
          "FP64": np.float64}


@dataclass(frozen=True)
class ServedTensor:
    name: str
    datatype: str  # Triton's: FP32, INT64, ...
    dims: tuple[int, ...]  # without the batch axis


@dataclass(frozen=True)
class ServedInterface:
    """What the server says about the model a client calls."""

    model_name: str
    inputs: dict[str, ServedTensor]
    outputs: dict[str, ServedTensor]
    chunk_samples: int
    preprocessing: str | None  # the ensemble's feature step, callable on its own
    features_output: str | None


def _tensors(items: Any, batched: bool) -> dict[str, ServedTensor]:
    out = {}
    for t in items:
        dims = tuple(int(d) for d in t.shape)
        out[t.name] = ServedTensor(t.name, t.datatype, dims[1:] if batched else dims)
    return out


class TritonTarget:
    """A served streaming model, checked against the reference's interface on connect."""

    def __init__(self, url: str, model_name: str, reference: ModelInterface, *,
                 timeout_s: float = 10.0, variant: ClientVariant | None = None) -> None:
        import tritonclient.grpc as grpcclient

        self.url = url
        self.model_name = model_name
        self.reference = reference
        self.timeout_s = timeout_s
        self.variant = variant or ClientVariant()
        self._grpc = grpcclient
        self.client = grpcclient.InferenceServerClient(url)
        self.notes: list[str] = []
        self.served_left_context = reference.left_context_samples
        try:
            self.interface = self._connect()
            self.model = self._served_model()
        except BaseException:
            self.client.close()
            raise

    # -- connecting -------------------------------------------------------------------

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        import grpc
        from tritonclient.utils import InferenceServerException

        try:
            return fn(*args, client_timeout=self.timeout_s, **kwargs)
        except InferenceServerException as exc:
            message = exc.message() or str(exc)
            # tritonclient.grpc keeps the call's gRPC status as str(grpc.StatusCode.X):
            # UNAVAILABLE (nothing listens, connection lost) and DEADLINE_EXCEEDED (nobody
            # answered in time) both mean no server answers there.
            if exc.status() in (str(grpc.StatusCode.UNAVAILABLE),
                                str(grpc.StatusCode.DEADLINE_EXCEEDED)):
                raise DoctorError(
                    f"no Triton server answers at {self.url} (gRPC) for {what} within "
                    f"{self.timeout_s:g} s: {message.strip()}. Is it running, and is "
                    "--url its gRPC port (Triton's default is 8001)?") from exc
            raise DoctorError(f"{what} at {self.url} failed: {message.strip()}") from exc

    def _connect(self) -> ServedInterface:
        self._call("the liveness check", self.client.is_server_live)
        if not self._call(f"model {self.model_name!r}", self.client.is_model_ready,
                          self.model_name):
            index = self._call("the repository index", self.client.get_model_repository_index)
            ready = [m.name for m in index.models if m.state == "READY"]
            raise DoctorError(f"model {self.model_name!r} is not ready at {self.url}; the "
                              f"server's ready models: {ready or 'none'}. Pass --model-name.")
        meta = self._call("the model metadata", self.client.get_model_metadata, self.model_name)
        config = self._call("the model config", self.client.get_model_config,
                            self.model_name).config
        batched = config.max_batch_size > 0
        inputs, outputs = _tensors(meta.inputs, batched), _tensors(meta.outputs, batched)
        preprocessing, features_output = None, None
        if config.platform == "ensemble" and config.ensemble_scheduling.step:
            preprocessing = config.ensemble_scheduling.step[0].model_name
            features_output = self._features_output(preprocessing)
        chunk = self._check(inputs, outputs)
        return ServedInterface(self.model_name, inputs, outputs, chunk, preprocessing,
                               features_output)

    def _features_output(self, name: str) -> str | None:
        meta = self._call(f"model {name!r} metadata", self.client.get_model_metadata, name)
        config = self._call(f"model {name!r} config", self.client.get_model_config, name).config
        outs = _tensors(meta.outputs, config.max_batch_size > 0)
        # The log-mel output is the float tensor of rank 2 (n_mels, frames).
        found = [t.name for t in outs.values() if t.datatype == "FP32" and len(t.dims) == 2]
        return found[0] if found else None

    def _check(self, inputs: dict[str, ServedTensor], outputs: dict[str, ServedTensor]) -> int:
        """Names and types must match the reference export; returns samples per chunk."""
        ref = self.reference
        try:
            ref_in, ref_out = ref.tensors()
        except ModelError as exc:
            raise DoctorError(f"the reference export cannot be used: {exc}") from exc
        audio = "AUDIO_CHUNK" if ref.contract is Contract.SKIP_PREPROCESSOR else ref.audio_input
        want_in = {audio: "FP32" if audio == "AUDIO_CHUNK" else ref_in[audio].triton_type[5:]}
        want_in |= {p.input: ref_in[p.input].triton_type[5:] for p in ref.states}
        want_out = {ref.logprobs_output: ref_out[ref.logprobs_output].triton_type[5:]}
        want_out |= {p.output: ref_out[p.output].triton_type[5:] for p in ref.states}
        problems = []
        for kind, want, have in (("input", want_in, inputs), ("output", want_out, outputs)):
            for name, dtype in want.items():
                if name not in have:
                    problems.append(f"no {kind} {name!r}")
                elif have[name].datatype != dtype:
                    problems.append(f"{kind} {name!r} is {have[name].datatype}, the reference "
                                    f"export's is {dtype}")
        extra = set(inputs) - set(want_in)
        if extra:
            problems.append(f"unexpected inputs {sorted(extra)}")
        if problems:
            raise DoctorError(
                f"model {self.model_name!r} at {self.url} does not match the reference export "
                f"{ref.onnx_path} ({ref.contract} contract): " + "; ".join(problems) +
                f". The server has inputs {_describe(inputs)} and outputs "
                f"{_describe(outputs)}. Pick the reference model that was deployed "
                "(--model/--onnx) or the right --model-name (the ensemble for "
                "skip_preprocessor).")
        served = inputs[audio].dims
        chunk = served[0] - ref.left_context_samples if audio == "AUDIO_CHUNK" else served[0]
        if audio == "AUDIO_CHUNK" and ref.left_context_samples and \
                served[0] == ref.chunk_samples:
            # Exactly one reference chunk wide: a preprocessing step deployed without room
            # for left context (it pads by itself, or fails). Stream it that way.
            chunk, self.served_left_context = served[0], 0
            self.notes.append(
                f"{audio!r} of {self.model_name!r} is {served[0]} samples wide: one "
                f"{ref.chunk_ms} ms chunk with no room for the {ref.left_context_samples} "
                "samples of left context the reference gets. Left-context padding is a cause "
                "by construction; the doctor streams it without context.")
        if chunk <= 0:
            raise DoctorError(f"{audio!r} of {self.model_name!r} has dims {served}: shorter "
                              f"than the {ref.left_context_samples} samples of left context.")
        if chunk == ref.chunk_samples:
            for p in ref.states:
                # A batch-only ONNX tensor (B,) is declared to Triton as dims [1].
                if inputs[p.input].dims != (ref_in[p.input].dims or (1,)):
                    raise DoctorError(
                        f"state {p.input!r} of {self.model_name!r} has dims "
                        f"{inputs[p.input].dims}, the reference export's "
                        f"{ref_in[p.input].dims}: a different model was deployed.")
        classes = ref_out[ref.logprobs_output].dims[-1]
        if outputs[ref.logprobs_output].dims[-1] != classes:
            raise DoctorError(f"{ref.logprobs_output!r} of {self.model_name!r} has "
                              f"{outputs[ref.logprobs_output].dims[-1]} classes, the "
                              f"reference export {classes}.")
        return chunk

    def _served_model(self) -> ModelInterface:
        samples = self.interface.chunk_samples
        rate = self.reference.sample_rate
        if (samples * 1000) % rate:
            raise DoctorError(f"the served model takes {samples} samples per chunk, not a "
                              f"whole number of milliseconds at {rate} Hz.")
        return dataclasses.replace(self.reference, chunk_ms=samples * 1000 // rate,
                                   left_context_samples=self.served_left_context)

    @property
    def chunk_ms(self) -> int:
        return self.model.chunk_ms

    def describe(self) -> str:
        return f"{self.model_name!r} at {self.url}"

    # -- streaming --------------------------------------------------------------------

    def _infer(self, model_name: str, feed: dict[str, np.ndarray], outputs: list[str],
               where: str) -> Any:
        g = self._grpc
        tensors = []
        for name, array in feed.items():
            t = g.InferInput(name, list(array.shape), _triton_type(array))
            t.set_data_from_numpy(np.ascontiguousarray(array))
            tensors.append(t)
        return self._call(where, self.client.infer, model_name, tensors,
                          outputs=[g.InferRequestedOutput(o) for o in outputs])

    def trace(self, utterance: Utterance, samples: np.ndarray) -> UtteranceTrace:
        served = self.interface
        ref = self.reference
        state = {p.input: np.zeros((1, *(served.inputs[p.input].dims or (1,))),
                                   _NUMPY[served.inputs[p.input].datatype])
                 for p in ref.states}
        names = [ref.logprobs_output, *(p.output for p in ref.states)]
        logprobs: list[np.ndarray] = []
        features: list[np.ndarray] | None = [] if served.features_output else None
        for index, chunk in enumerate(chunk_inputs(self.model, samples, self.variant)):
            where = f"chunk {index} of utterance {utterance.id!r}"
            response = self._infer(self.model_name, chunk | state, names, where)
            lp = response.as_numpy(ref.logprobs_output)
            if lp is None or lp.size == 0:
                raise DoctorError(f"{self.describe()} returned no {ref.logprobs_output!r} for "
                                  f"{where}.")
            logprobs.append(lp[0])
            state = {p.input: response.as_numpy(p.output).reshape(state[p.input].shape)
                     for p in ref.states}
            if features is not None and served.preprocessing and served.features_output:
                pre = self._infer(served.preprocessing, chunk, [served.features_output],
                                  f"preprocessing of {where}")
                features.append(pre.as_numpy(served.features_output)[0])
        return UtteranceTrace(utterance, self.model.chunk_samples, self.model.sample_rate,
                              logprobs, features)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> TritonTarget:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _triton_type(array: np.ndarray) -> str:
    for name, dtype in _NUMPY.items():
        if array.dtype == dtype:
            return name
    raise DoctorError(f"cannot send a {array.dtype} tensor to Triton.")


def _describe(tensors: dict[str, ServedTensor]) -> str:
    return ", ".join(f"{t.name} {t.datatype} {list(t.dims)}" for t in tensors.values())
