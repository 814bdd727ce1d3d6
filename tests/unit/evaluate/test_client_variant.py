"""ClientVariant: the default is today's client byte for byte; variants change only what
they name."""

from __future__ import annotations

import numpy as np
import pytest

from sweep.errors import ConfigError
from sweep.evaluate.stream import chunk_inputs
from sweep.evaluate.variant import ClientVariant
from sweep.model import Contract, ModelInterface, StatePair


def _model(contract: str, tiny_onnx) -> ModelInterface:
    if contract == "monolithic":
        return ModelInterface(name="m", onnx_path=tiny_onnx, contract=Contract(contract),
                              audio_input="signal", logprobs_output="logprobs",
                              states=(StatePair("state", "state_next"),), pad_ms=0)
    return ModelInterface(name="s", onnx_path=tiny_onnx, contract=Contract(contract),
                          audio_input="audio_signal", logprobs_output="logprobs",
                          length_input="length", states=(), pad_ms=0)


SAMPLES = (np.arange(7000) % 2000 - 1000).astype(np.int16)


@pytest.mark.parametrize("contract", ["monolithic", "skip_preprocessor"])
def test_default_variant_is_todays_client(contract, tiny_onnx):
    model = _model(contract, tiny_onnx)
    plain = list(chunk_inputs(model, SAMPLES))
    for variant in (None, ClientVariant()):
        chunks = list(chunk_inputs(model, SAMPLES, variant))
        assert len(chunks) == len(plain)
        for a, b in zip(chunks, plain, strict=True):
            assert a.keys() == b.keys()
            for k in a:
                assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k])


def test_left_context_zero_sends_zeros_in_place_of_the_previous_tail(tiny_onnx):
    model = _model("skip_preprocessor", tiny_onnx)
    plain = list(chunk_inputs(model, SAMPLES))
    cut = list(chunk_inputs(model, SAMPLES, ClientVariant(left_context_samples=0)))
    assert [c["AUDIO_CHUNK"].shape for c in cut] == [c["AUDIO_CHUNK"].shape for c in plain]
    assert plain[1]["AUDIO_CHUNK"][0, :80].any()
    assert not cut[1]["AUDIO_CHUNK"][0, :80].any()
    assert np.array_equal(cut[1]["AUDIO_CHUNK"][0, 80:], plain[1]["AUDIO_CHUNK"][0, 80:])
    half = list(chunk_inputs(model, SAMPLES, ClientVariant(left_context_samples=40)))
    assert not half[1]["AUDIO_CHUNK"][0, :40].any()
    assert np.array_equal(half[1]["AUDIO_CHUNK"][0, 40:], plain[1]["AUDIO_CHUNK"][0, 40:])


def test_scaling_variants(tiny_onnx):
    ensemble = _model("skip_preprocessor", tiny_onnx)
    raw = list(chunk_inputs(ensemble, SAMPLES, ClientVariant(scale=1.0)))
    plain = list(chunk_inputs(ensemble, SAMPLES))
    assert np.allclose(raw[0]["AUDIO_CHUNK"], plain[0]["AUDIO_CHUNK"] * 32767, atol=1e-2)
    mono = _model("monolithic", tiny_onnx)
    floats = list(chunk_inputs(mono, SAMPLES, ClientVariant(scale=32767.0)))
    assert floats[0]["signal"].dtype == np.int32 and not floats[0]["signal"].any()


def test_variant_validation_and_description():
    assert ClientVariant().is_default
    assert ClientVariant().describe() == "as the model interface says"
    assert ClientVariant(0, 1.0).describe() == "left context 0 samples, samples divided by 1"
    with pytest.raises(ConfigError):
        ClientVariant(left_context_samples=-1)
    with pytest.raises(ConfigError):
        ClientVariant(scale=0.0)
