"""server.state=server against the real tritonserver: the python-backend model keeps each
sequence's state by correlation id, and the transcripts are those of client-side state on
the same engine; sequences are independent (interleaved streams) and a new START resets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sweep.builder.emulate import EmulateBuilder
from sweep.data.manifest import load_manifest
from sweep.doctor.cli import load_model
from sweep.evaluate.decode import GreedyDecoder
from sweep.evaluate.stream import GrpcStreamer
from sweep.flags import FlagSet
from sweep.server.base import ServingOptions
from sweep.server.local import LocalServer
from sweep.server.repository import render
from tests.support.paths import DEMO
from tests.support.processes import our_processes

pytestmark = pytest.mark.integration


def test_server_side_state_gives_the_transcripts_of_client_side_state(tmp_path: Path) -> None:
    model = load_model("demo_monolithic")
    engine = EmulateBuilder().build(model.onnx_path, FlagSet.from_mapping({"tf32": False}),
                                    tmp_path / "engine")
    utterances = load_manifest(DEMO / "data" / "demo_tiny")
    server = LocalServer()
    decoder = GreedyDecoder()
    runs = {}
    for state in ("client", "server"):
        repository = render(model, engine, tmp_path / f"repo-{state}",
                            site_packages=server.site_packages(),
                            options=ServingOptions(max_batch_size=8, state=state))
        with server.serving(repository, tmp_path / f"{state}.log") as endpoint:
            # 4 streams over 8 utterances: sequences interleave in the server's batches,
            # and each stream's second utterance starts a new sequence after an END.
            runs[state] = GrpcStreamer(model, endpoint.grpc_url, endpoint.model_name,
                                       streams=4, transport="grpc", state=state
                                       ).run(utterances)
    for a, b in zip(runs["client"].results, runs["server"].results, strict=True):
        assert a.utterance.id == b.utterance.id
        assert a.logprobs.shape == b.logprobs.shape
        # The batches differ between the two (dynamic vs sequence batcher): last bits may.
        assert np.abs(a.logprobs - b.logprobs).max() < 1e-3
        assert decoder.decode(a.logprobs) == decoder.decode(b.logprobs)
    # Not a trivial equality: the utterances do differ from one another.
    assert len({decoder.decode(r.logprobs) for r in runs["server"].results}) > 1
    assert our_processes() == []
