"""Export the demo model to T-one's two streaming ONNX contracts, and run them.

``python -m demo.export --checkpoint demo/assets/demo_checkpoint.pt --chunk-ms 400 \
    --contract monolithic|skip_preprocessor|both --out PATH``

Contracts (fixed non-batch shapes, batch axis named ``batch``):

* ``monolithic`` (T-one's public one): ``signal`` INT32 (B, chunk_samples, 1) of int16-range
  samples and ``state`` FP32 (B, S) -> ``logprobs`` FP32 (B, frames, 35) and
  ``state_next`` FP32 (B, S). The graph computes its own log-mel features; ``state`` is
  every recurrent state flattened (layout in the ONNX metadata ``state_layout``); the
  all-zero state is the valid initial state.
* ``skip_preprocessor`` (the seed's fork): ``audio_signal`` FP32 (B, 64, chunk_samples/80)
  log-mel (computed by ``sweep.data.features.log_mel`` from the chunk with the previous
  chunk's last 80 samples prepended), ``length`` INT64 (B,), ``cache_last_time`` FP32
  (B, layers, L + K - 1, d) (attention then depthwise-conv caches along time),
  ``cache_last_channel`` FP32 (B, 64*2 + d*2) (subsampling caches),
  ``cache_last_chan_len`` INT64 (B,) (real frames in the attention cache) -> ``logprobs``
  and the three ``*_next`` caches.

With ``--eval-dataset DIR`` the written files are also run chunk by chunk in ONNX Runtime
over ``DIR/tarred_audio_manifest.json`` and greedy WER / CER are printed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sweep.data.features import HOP, INT16_SCALE, N_MELS, SAMPLE_RATE, log_mel
from sweep.data.text import BLANK_ID, VOCABULARY, normalize

MONOLITHIC = "monolithic"
SKIP_PREPROCESSOR = "skip_preprocessor"
CONTRACTS = (MONOLITHIC, SKIP_PREPROCESSOR)
FRAME_MS = 20  # one output frame: 2 feature hops of 10 ms
FEATURE_OVERLAP = 80


class ChunkError(ValueError):
    """A chunk length the model cannot stream."""


def chunk_samples_for(chunk_ms: int) -> int:
    """Samples in a chunk of ``chunk_ms``; the chunk must be whole 20 ms output frames."""
    if chunk_ms <= 0 or chunk_ms % FRAME_MS:
        raise ChunkError(
            f"--chunk-ms {chunk_ms} is not a whole number of {FRAME_MS} ms output frames "
            f"(10 ms feature hop x 2 subsampling); use a positive multiple of {FRAME_MS}, "
            "e.g. 300, 400 or 600"
        )
    return chunk_ms * SAMPLE_RATE // 1000


# --------------------------------------------------------------------------------------
# Export (needs torch)
# --------------------------------------------------------------------------------------


def _wrappers() -> tuple[type[Any], type[Any], type[Any]]:
    """The torch wrappers, defined lazily so that running ONNX files needs no torch."""
    import torch
    from torch import Tensor, nn

    from demo.model import (
        SUB1_KERNEL,
        SUB2_KERNEL,
        SUBSAMPLING,
        DemoConformer,
        StreamState,
    )

    class Monolithic(nn.Module):
        def __init__(self, model: DemoConformer) -> None:
            super().__init__()
            self.model = model
            c = model.cfg
            self.sizes = [
                ("feature_overlap", (FEATURE_OVERLAP,)),
                ("subsampling_conv1", (N_MELS, SUB1_KERNEL - SUBSAMPLING)),
                ("subsampling_conv2", (c.d_model, SUB2_KERNEL - 1)),
                ("attention_kv_input", (c.n_layers, c.left_context, c.d_model)),
                ("depthwise_conv", (c.n_layers, c.conv_kernel - 1, c.d_model)),
                ("attention_counter", (1,)),
            ]

        def layout(self) -> list[dict[str, object]]:
            out, offset = [], 0
            for name, shape in self.sizes:
                n = int(np.prod(shape))
                out.append({"name": name, "offset": offset, "shape": list(shape)})
                offset += n
            return out

        def state_size(self) -> int:
            return sum(int(np.prod(s)) for _, s in self.sizes)

        def forward(self, signal: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
            audio = signal[:, :, 0].to(torch.float32) / INT16_SCALE
            parts = []
            offset = 0
            for _, shape in self.sizes:
                n = int(np.prod(shape))
                part = state[:, offset : offset + n]
                parts.append(part.reshape(-1, *shape) if len(shape) > 1 else part)
                offset += n
            overlap, sub1, sub2, attn, conv, counter = parts
            feats = self.model.frontend(torch.cat([overlap, audio], dim=1))
            logprobs, new = self.model.step(
                feats, StreamState(sub1, sub2, attn, conv, counter[:, 0])
            )
            state_next = torch.cat(
                [
                    audio[:, -FEATURE_OVERLAP:],
                    new.sub1.flatten(1),
                    new.sub2.flatten(1),
                    new.attn.flatten(1),
                    new.conv.flatten(1),
                    new.counter[:, None],
                ],
                dim=1,
            )
            return logprobs, state_next

    class Monolithic16(Monolithic):
        """T-one's style: the step under fp16 autocast, the front end in fp32, FP16 state."""

        def forward(self, signal: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
            audio = signal[:, :, 0].to(torch.float32) / INT16_SCALE
            overlap = state[:, :FEATURE_OVERLAP].float()
            feats = self.model.frontend(torch.cat([overlap, audio], dim=1))
            rest = state[:, FEATURE_OVERLAP:]
            with torch.autocast("cpu", dtype=torch.float16):
                logprobs, state_rest = self._step(feats, rest)
            state_next = torch.cat([audio[:, -FEATURE_OVERLAP:].half(), state_rest.half()],
                                   dim=1)
            return logprobs.float(), state_next

        def _step(self, feats: Tensor, rest: Tensor) -> tuple[Tensor, Tensor]:
            parts, offset = [], 0
            for _, shape in self.sizes[1:]:
                n = int(np.prod(shape))
                part = rest[:, offset : offset + n]
                parts.append(part.reshape(-1, *shape) if len(shape) > 1 else part)
                offset += n
            sub1, sub2, attn, conv, counter = parts
            logprobs, new = self.model.step(
                feats, StreamState(sub1, sub2, attn, conv, counter[:, 0].float()))
            return logprobs, torch.cat([new.sub1.flatten(1).half(), new.sub2.flatten(1).half(),
                                        new.attn.flatten(1).half(), new.conv.flatten(1).half(),
                                        new.counter[:, None].half()], dim=1)

    class SkipPreprocessor(nn.Module):
        def __init__(self, model: DemoConformer) -> None:
            super().__init__()
            self.model = model
            c = model.cfg
            self.sub1_shape = (N_MELS, SUB1_KERNEL - SUBSAMPLING)
            self.sub2_shape = (c.d_model, SUB2_KERNEL - 1)

        def cache_shapes(self) -> dict[str, tuple[int, ...]]:
            c = self.model.cfg
            return {
                "cache_last_time": (c.n_layers, c.left_context + c.conv_kernel - 1, c.d_model),
                "cache_last_channel": (
                    int(np.prod(self.sub1_shape)) + int(np.prod(self.sub2_shape)),
                ),
            }

        def forward(
            self,
            audio_signal: Tensor,
            length: Tensor,
            cache_last_time: Tensor,
            cache_last_channel: Tensor,
            cache_last_chan_len: Tensor,
        ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
            left = self.model.cfg.left_context
            n1 = int(np.prod(self.sub1_shape))
            state = StreamState(
                sub1=cache_last_channel[:, :n1].reshape(-1, *self.sub1_shape),
                sub2=cache_last_channel[:, n1:].reshape(-1, *self.sub2_shape),
                attn=cache_last_time[:, :, :left],
                conv=cache_last_time[:, :, left:],
                counter=cache_last_chan_len.to(torch.float32),
            )
            logprobs, new = self.model.step(audio_signal, state)
            # ``length`` (valid feature frames, = T_frames when streaming) advances the
            # count of real frames in the attention cache, like NeMo's cache_last_channel_len.
            chan_len = torch.clamp(
                # Lengths are non-negative: truncation is floor, and exports as one Div.
                cache_last_chan_len + torch.div(length, SUBSAMPLING, rounding_mode="trunc"),
                max=left,
            )
            return (
                logprobs,
                torch.cat([new.attn, new.conv], dim=2),
                torch.cat([new.sub1.flatten(1), new.sub2.flatten(1)], dim=1),
                chan_len,
            )

    return Monolithic, Monolithic16, SkipPreprocessor


def export(checkpoint: str | Path, chunk_ms: int, contract: str, out: str | Path, *,
           fp16_autocast: bool = False) -> Path:
    """Export one contract of a checkpoint to ``out``; returns the path written."""
    from demo.model import load_checkpoint

    model, ckpt = load_checkpoint(str(checkpoint))
    return export_model(model, chunk_ms, contract, out, training=ckpt,
                        fp16_autocast=fp16_autocast)


@contextlib.contextmanager
def _layer_norms_in_fp32(model: Any) -> Iterator[None]:
    """While tracing under autocast, every LayerNorm computes in fp32 on inputs cast to
    float, as T-one's export does (fp16 LayerNorm misbehaved there)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    def fp32_forward(module: nn.LayerNorm) -> Any:
        def forward(x: torch.Tensor) -> torch.Tensor:
            with torch.autocast("cpu", enabled=False):
                return F.layer_norm(x.float(), module.normalized_shape, module.weight,
                                    module.bias, module.eps)
        return forward

    norms = [m for m in model.modules() if isinstance(m, nn.LayerNorm)]
    for m in norms:
        m.forward = fp32_forward(m)  # type: ignore[method-assign]
    try:
        yield
    finally:
        for m in norms:
            del m.forward


def export_model(model: Any, chunk_ms: int, contract: str, out: str | Path, *,
                 training: dict[str, Any] | None = None, fp16_autocast: bool = False) -> Path:
    """Export one contract of an in-memory ``DemoConformer`` (bench exports untrained ones).

    ``fp16_autocast`` (monolithic only) exports in T-one's own style: traced under fp16
    autocast, so the ONNX is already mixed precision, with LayerNorm and the feature front
    end in fp32 and the state carried in FP16. TensorRT builds such a file strongly typed.
    """
    import onnx
    import torch

    samples = chunk_samples_for(chunk_ms)
    if contract not in CONTRACTS:
        raise ValueError(f"contract must be one of {CONTRACTS}, got {contract!r}")
    if fp16_autocast and contract != MONOLITHIC:
        raise ValueError("fp16_autocast exports the monolithic contract only (T-one's)")
    ckpt = training or {}
    Monolithic, Monolithic16, SkipPreprocessor = _wrappers()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    args: tuple[torch.Tensor, ...]
    batch = 2  # traced with B=2 so nothing specialises on a batch of one
    cfg = model.cfg
    meta: dict[str, str] = {
        "contract": contract,
        "chunk_ms": str(chunk_ms),
        "chunk_samples": str(samples),
        "frames_per_chunk": str(samples // (2 * HOP)),
        "sample_rate": str(SAMPLE_RATE),
        "model_config": json.dumps(cfg.to_dict()),
        "feature_left_context_samples": str(FEATURE_OVERLAP),
    }
    if contract == MONOLITHIC:
        wrapper = (Monolithic16 if fp16_autocast else Monolithic)(model).eval()
        s = wrapper.state_size()
        args = (
            torch.zeros(batch, samples, 1, dtype=torch.int32),
            torch.zeros(batch, s, dtype=torch.float16 if fp16_autocast else torch.float32),
        )
        if fp16_autocast:
            meta["precision"] = ("fp16 autocast; LayerNormalization and the feature front end "
                                 "in fp32; state FP16")
        inputs = ["signal", "state"]
        outputs = ["logprobs", "state_next"]
        meta["state_size"] = str(s)
        meta["state_layout"] = json.dumps(wrapper.layout())
    else:
        wrapper = SkipPreprocessor(model).eval()
        shapes = wrapper.cache_shapes()
        args = (
            torch.zeros(batch, N_MELS, samples // HOP, dtype=torch.float32),
            torch.full((batch,), samples // HOP, dtype=torch.int64),
            torch.zeros(batch, *shapes["cache_last_time"], dtype=torch.float32),
            torch.zeros(batch, *shapes["cache_last_channel"], dtype=torch.float32),
            torch.zeros(batch, dtype=torch.int64),
        )
        inputs = ["audio_signal", "length", "cache_last_time", "cache_last_channel",
                  "cache_last_chan_len"]
        outputs = ["logprobs", "cache_last_time_next", "cache_last_channel_next",
                   "cache_last_chan_len_next"]
        meta["cache_layout"] = json.dumps({
            "cache_last_time": "(B, layers, left_context attention inputs then "
                               "conv_kernel-1 depthwise-conv inputs, d_model)",
            "cache_last_channel": "(B, subsampling conv1 cache (64 x 2) then conv2 cache "
                                  "(d_model x 2), flattened)",
            "cache_last_chan_len": "(B,) real frames in the attention cache, <= left_context",
        })
    with torch.no_grad():
        expected = wrapper(*args)
    with torch.no_grad(), warnings.catch_warnings(), (
            _layer_norms_in_fp32(model) if fp16_autocast else contextlib.nullcontext()):
        # The TorchScript exporter announces its own deprecation and flags the chunk
        # length read as a Python int; both are intended here.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            args,
            str(out),
            input_names=inputs,
            output_names=outputs,
            dynamic_axes={name: {0: "batch"} for name in inputs + outputs},
            opset_version=17,
            do_constant_folding=True,
            # The TorchScript exporter keeps LayerNorm/Softmax/LogSoftmax as single ONNX
            # ops, which the precision sweep pins by name.
            dynamo=False,
        )
    proto = onnx.load(str(out))
    # The exporter names traced output sizes symbolically; every non-batch size is fixed.
    for value, tensor in zip(proto.graph.output, expected, strict=True):
        for dim, size in zip(list(value.type.tensor_type.shape.dim)[1:], tensor.shape[1:],
                             strict=True):
            dim.Clear()
            dim.dim_value = int(size)
    meta["training"] = json.dumps({k: ckpt[k] for k in ("epoch", "step", "val_wer") if k in ckpt})
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key = key
        entry.value = value
    proto.producer_name = "trt-sweep demo.export"
    onnx.checker.check_model(proto)
    onnx.save(proto, str(out))
    return out


# --------------------------------------------------------------------------------------
# Running the exports in ONNX Runtime (numpy only)
# --------------------------------------------------------------------------------------


def _metadata(session: Any) -> dict[str, str]:
    return dict(session.get_modelmeta().custom_metadata_map)


def pad_and_chunk(audio: np.ndarray, chunk_samples: int, pad_ms: int) -> np.ndarray:
    """int16 audio -> (n_chunks, chunk_samples) int16, with ``pad_ms`` of silence on both
    sides (T-one's pipeline pads 300 ms) and zeros to complete the last chunk."""
    pad = pad_ms * SAMPLE_RATE // 1000
    x = np.concatenate([np.zeros(pad, np.int16), audio.astype(np.int16), np.zeros(pad, np.int16)])
    n_chunks = -(-len(x) // chunk_samples)
    x = np.pad(x, (0, n_chunks * chunk_samples - len(x)))
    return x.reshape(n_chunks, chunk_samples)


def stream_monolithic(session: Any, chunks: np.ndarray) -> np.ndarray:
    """Run (B, n_chunks, chunk_samples) int16-range audio through a monolithic export,
    chunk by chunk from the zero state -> (B, frames, 35) log-probs."""
    meta = _metadata(session)
    # The fp16-autocast export carries its state in FP16, as T-one's does.
    state_type = next(i.type for i in session.get_inputs() if i.name == "state")
    dtype = np.float16 if state_type == "tensor(float16)" else np.float32
    state = np.zeros((chunks.shape[0], int(meta["state_size"])), dtype)
    out = []
    for i in range(chunks.shape[1]):
        signal = chunks[:, i, :, None].astype(np.int32)
        logprobs, state = session.run(None, {"signal": signal, "state": state})
        out.append(logprobs)
    return np.concatenate(out, axis=1)


def stream_features(chunks: np.ndarray, *, fp16_round_trip: bool = False) -> list[np.ndarray]:
    """What a stateless preprocessing step sees: each chunk with the previous chunk's last
    80 samples prepended (zeros before the first), through ``sweep.data.features.log_mel``."""
    audio = chunks.astype(np.float32) / np.float32(INT16_SCALE)
    prev = np.zeros((chunks.shape[0], FEATURE_OVERLAP), np.float32)
    feats = []
    for i in range(chunks.shape[1]):
        x = np.concatenate([prev, audio[:, i]], axis=1)
        feats.append(log_mel(x, fp16_round_trip=fp16_round_trip))
        prev = audio[:, i, -FEATURE_OVERLAP:]
    return feats


def stream_skip_preprocessor(
    session: Any, chunks: np.ndarray, *, fp16_round_trip: bool = False
) -> np.ndarray:
    """Like :func:`stream_monolithic` for a skip_preprocessor export, with the features
    computed outside the model as the seed's Triton ensemble does."""
    shapes = {i.name: i.shape for i in session.get_inputs()}
    b = chunks.shape[0]
    cache_time = np.zeros((b, *shapes["cache_last_time"][1:]), np.float32)
    cache_channel = np.zeros((b, *shapes["cache_last_channel"][1:]), np.float32)
    chan_len = np.zeros((b,), np.int64)
    out = []
    for feats in stream_features(chunks, fp16_round_trip=fp16_round_trip):
        logprobs, cache_time, cache_channel, chan_len = session.run(None, {
            "audio_signal": feats,
            "length": np.full((b,), feats.shape[2], np.int64),
            "cache_last_time": cache_time,
            "cache_last_channel": cache_channel,
            "cache_last_chan_len": chan_len,
        })
        out.append(logprobs)
    return np.concatenate(out, axis=1)


def greedy_decode(logprobs: np.ndarray) -> str:
    """(frames, 35) -> text: best class per frame, repeats merged, blanks dropped."""
    best = logprobs.argmax(axis=-1)
    keep = np.ones_like(best, dtype=bool)
    keep[1:] = best[1:] != best[:-1]
    return "".join(VOCABULARY[i] for i in best[keep] if i != BLANK_ID).strip()


def edit_distance(ref: list[str] | str, hyp: list[str] | str) -> int:
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


@dataclass
class Scores:
    wer: float
    cer: float
    utterances: int


def score(refs: list[str], hyps: list[str]) -> Scores:
    """Corpus WER and CER after T-one's normalisation (ё -> е in both texts)."""
    we = wn = ce = cn = 0
    for ref, hyp in zip(refs, hyps, strict=True):
        r, h = normalize(ref), normalize(hyp)
        we += edit_distance(r.split(), h.split())
        wn += len(r.split())
        ce += edit_distance(r, h)
        cn += len(r)
    return Scores(we / max(wn, 1), ce / max(cn, 1), len(refs))


def read_manifest(dataset: str | Path, limit: int | None = None) -> list[tuple[np.ndarray, str]]:
    """(int16 audio, text) pairs of ``DATASET/tarred_audio_manifest.json``; audio is looked
    up by basename inside the dataset folder, as the seed's client does."""
    import soundfile as sf

    dataset = Path(dataset)
    items = []
    for line in (dataset / "tarred_audio_manifest.json").read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        entry = json.loads(line)
        path = dataset / Path(entry["audio_filepath"]).name
        if not path.exists():
            path = dataset / entry["audio_filepath"]
        audio, sr = sf.read(str(path), dtype="int16")
        if sr != SAMPLE_RATE:
            raise ValueError(f"{path}: expected {SAMPLE_RATE} Hz audio, got {sr}")
        items.append((audio if audio.ndim == 1 else audio[:, 0], entry["text"]))
        if limit is not None and len(items) >= limit:
            break
    return items


def evaluate_onnx(path: str | Path, dataset: str | Path, *, pad_ms: int = 300,
                  limit: int | None = None, fp16_features: bool = False) -> Scores:
    """Greedy WER/CER of one export over a dataset, streamed chunk by chunk (batch 1).

    ``fp16_features`` rounds the external features through fp16 (skip_preprocessor only),
    as the seed's DALI step does."""
    pairs = transcribe_onnx(path, dataset, pad_ms=pad_ms, limit=limit,
                            fp16_features=fp16_features)
    return score([r for r, _ in pairs], [h for _, h in pairs])


def transcribe_onnx(path: str | Path, dataset: str | Path, *, pad_ms: int = 300,
                    limit: int | None = None, fp16_features: bool = False
                    ) -> list[tuple[str, str]]:
    """(reference, greedy hypothesis) per utterance, in manifest order."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    meta = _metadata(session)
    chunk = int(meta["chunk_samples"])
    pairs = []
    for audio, text in read_manifest(dataset, limit):
        chunks = pad_and_chunk(audio, chunk, pad_ms)[None]
        if meta["contract"] == MONOLITHIC:
            logprobs = stream_monolithic(session, chunks)
        else:
            logprobs = stream_skip_preprocessor(session, chunks, fp16_round_trip=fp16_features)
        pairs.append((text, greedy_decode(logprobs[0])))
    return pairs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="demo/assets/demo_checkpoint.pt")
    parser.add_argument("--chunk-ms", type=int, default=400)
    parser.add_argument("--contract", choices=[*CONTRACTS, "both"], default="both")
    parser.add_argument("--out", required=True,
                        help="ONNX file; with --contract both, a folder or a file stem "
                             "(demo_monolithic.onnx / demo_skip_preprocessor.onnx are written)")
    parser.add_argument("--eval-dataset", help="dataset folder to score the exports on")
    parser.add_argument("--eval-limit", type=int, help="score only the first N utterances")
    parser.add_argument("--pad-ms", type=int, default=300,
                        help="silence padded on both sides when scoring (T-one: 300)")
    parser.add_argument("--fp16-autocast", action="store_true",
                        help="monolithic only: export in T-one's style (fp16 autocast, fp32 "
                             "LayerNorm, FP16 state)")
    parser.add_argument("--fp16-features", action="store_true",
                        help="when scoring skip_preprocessor, round features through fp16 "
                             "as the seed's DALI preprocessing does")
    args = parser.parse_args(argv)
    try:
        chunk_samples_for(args.chunk_ms)
    except ChunkError as exc:
        parser.error(str(exc))
    out = Path(args.out)
    if args.contract == "both":
        folder = out if out.suffix != ".onnx" else out.parent
        targets = [(c, folder / f"demo_{c}.onnx") for c in CONTRACTS]
    else:
        targets = [(args.contract, out)]
    for contract, path in targets:
        export(args.checkpoint, args.chunk_ms, contract, path, fp16_autocast=args.fp16_autocast)
        print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB, {contract}, "
              f"{args.chunk_ms} ms chunks)")
    if args.eval_dataset:
        for contract, path in targets:
            t0 = time.perf_counter()
            s = evaluate_onnx(path, args.eval_dataset, pad_ms=args.pad_ms, limit=args.eval_limit,
                              fp16_features=args.fp16_features)
            print(f"{contract}: greedy WER {100 * s.wer:.2f}% CER {100 * s.cer:.2f}% on "
                  f"{s.utterances} utterances ({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
