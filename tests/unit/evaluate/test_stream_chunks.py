import numpy as np

from sweep.evaluate.stream import chunk_inputs, initial_state, padded_audio
from sweep.model import Contract, ModelInterface, StatePair


def _model(contract: str, tiny_onnx, **kw) -> ModelInterface:
    if contract == "monolithic":
        return ModelInterface(name="m", onnx_path=tiny_onnx, contract=Contract(contract),
                              audio_input="signal", logprobs_output="logprobs",
                              states=(StatePair("state", "state_next"),), **kw)
    return ModelInterface(name="s", onnx_path=tiny_onnx, contract=Contract(contract),
                          audio_input="audio_signal", logprobs_output="logprobs",
                          length_input="length", states=(), **kw)


def test_padding_keeps_the_last_partial_chunk(tiny_onnx):
    model = _model("monolithic", tiny_onnx, pad_ms=300)
    samples = np.arange(1, 5001, dtype=np.int16)
    audio = padded_audio(model, samples)
    assert audio.size % model.chunk_samples == 0
    assert audio[2400:2400 + 5000].tolist() == samples.tolist()  # 300 ms = 2400 samples
    assert not audio[:2400].any() and not audio[2400 + 5000:].any()


def test_monolithic_chunks_are_int32_samples(tiny_onnx):
    model = _model("monolithic", tiny_onnx, pad_ms=0)
    samples = (np.arange(6400) % 1000).astype(np.int16)
    chunks = list(chunk_inputs(model, samples))
    assert len(chunks) == 2
    assert chunks[0]["signal"].dtype == np.int32 and chunks[0]["signal"].shape == (1, 3200, 1)
    assert chunks[1]["signal"][0, :, 0].tolist() == samples[3200:].tolist()


def test_ensemble_chunks_carry_left_context_and_scaling(tiny_onnx):
    model = _model("skip_preprocessor", tiny_onnx, pad_ms=0)
    samples = np.full(6400, 32767, np.int16)
    samples[3200 - 80:3200] = -32767
    first, second = list(chunk_inputs(model, samples))
    assert first["AUDIO_CHUNK"].shape == (1, 3280)
    assert not first["AUDIO_CHUNK"][0, :80].any()  # zeros before the first chunk
    assert np.allclose(first["AUDIO_CHUNK"][0, 80:3200 - 80 + 80], 1.0)
    assert np.allclose(second["AUDIO_CHUNK"][0, :80], -1.0)  # previous chunk's tail


def test_initial_state_is_zero_with_batch_axis(tiny_onnx):
    model = _model("monolithic", tiny_onnx)
    inputs, _ = model.tensors()
    state = initial_state(model, inputs)
    assert state["state"].shape == (1, 10) and not state["state"].any()
