"""An fp32 emulated engine served by the real tritonserver gives exactly the transcripts that
in-process ONNX Runtime gives on the same chunks, for both contracts."""

from __future__ import annotations

from pathlib import Path
from typing import TypedDict

import numpy as np
import pytest

from sweep.builder.emulate import EmulateBuilder
from sweep.data.manifest import load_manifest
from sweep.evaluate.decode import GreedyDecoder
from sweep.evaluate.reference import OrtPipeline
from sweep.evaluate.stream import GrpcStreamer
from sweep.flags import FlagSet
from sweep.model import Contract, ModelInterface, StatePair
from sweep.server.base import ServingOptions
from sweep.server.local import LocalServer
from sweep.server.repository import render
from tests.support.paths import DEMO
from tests.support.processes import our_processes

pytestmark = pytest.mark.integration


class _Tensors(TypedDict, total=False):
    """The contract-specific part of a ModelInterface."""

    onnx_path: Path
    audio_input: str
    length_input: str
    states: tuple[StatePair, ...]


CONTRACTS: dict[str, _Tensors] = {
    "monolithic": _Tensors(onnx_path=DEMO / "demo_monolithic.onnx", audio_input="signal",
                           states=(StatePair("state", "state_next"),)),
    "skip_preprocessor": _Tensors(
        onnx_path=DEMO / "demo_skip_preprocessor.onnx", audio_input="audio_signal",
        length_input="length",
        states=(StatePair("cache_last_time", "cache_last_time_next"),
                StatePair("cache_last_channel", "cache_last_channel_next"),
                StatePair("cache_last_chan_len", "cache_last_chan_len_next"))),
}


@pytest.mark.parametrize("transport", ["shm", "grpc"])
@pytest.mark.parametrize("contract", sorted(CONTRACTS))
def test_served_fp32_engine_matches_onnxruntime(contract: str, transport: str, tmp_path: Path):
    model = ModelInterface(name=contract, contract=Contract(contract), logprobs_output="logprobs",
                           **CONTRACTS[contract])
    engine = EmulateBuilder().build(model.onnx_path, FlagSet.from_mapping({"tf32": False}),
                                    tmp_path / "engine")
    utterances = load_manifest(DEMO / "data" / "demo_tiny")
    server = LocalServer()
    repository = render(model, engine, tmp_path / "repo", site_packages=server.site_packages(),
                        options=ServingOptions(max_batch_size=8))
    with server.serving(repository, tmp_path / "server.log") as endpoint:
        streamer = GrpcStreamer(model, endpoint.grpc_url, endpoint.model_name, streams=4,
                                transport=transport)
        served = streamer.run(utterances)
        assert streamer.used_transport == transport
    reference = OrtPipeline(model, engine.path, graph_optimization_level=str(
        engine.runtime["graph_optimization_level"])).run(utterances)
    decoder = GreedyDecoder()
    for a, b in zip(served.results, reference.results, strict=True):
        assert a.utterance.id == b.utterance.id
        assert a.logprobs.shape == b.logprobs.shape
        # Triton batches chunks of several streams together; a different batch size can
        # change GEMM blocking, so logprobs may differ in the last bits, transcripts not.
        assert np.abs(a.logprobs - b.logprobs).max() < 1e-3
        assert decoder.decode(a.logprobs) == decoder.decode(b.logprobs)
    assert our_processes() == []
