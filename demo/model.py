"""A small streaming Conformer-CTC acoustic model that honours T-one's ONNX contracts.

Pipeline: log-mel front end (the same maths as ``sweep/data/features.py``, as convolutions) ->
causal 1-D conv subsampling (2x: 10 ms feature frames -> 20 ms output frames) ->
conformer blocks (macaron feed-forward, chunk-wise multi-head self-attention with a
left-context KV cache, causal depthwise convolution with a cache, LayerNorm everywhere) ->
linear CTC head with LogSoftmax over T-one's 35 classes.

Two ways to run the same weights:

* :meth:`DemoConformer.forward` — offline, whole utterance at once, with the chunk-wise
  attention mask for a given chunk size; used for training and as the reference;
* :meth:`DemoConformer.step` — one chunk at a time with explicit state; this is what the
  ONNX exports trace (see ``demo/export.py``).

They agree to float rounding because every recurrent piece is causal and zero-initialised:
the subsampling and depthwise-conv caches start as the zero padding the offline forward
uses, and the attention cache is masked until it holds real frames (``counter``).

Chunk-wise attention (as in T-one): an output frame sees every frame of its own chunk
plus the ``left_context`` frames before the chunk's start, nothing else.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sweep.data.features import HOP, LOG_GUARD, N_BINS, N_MELS, mel_filterbank, stft_basis
from sweep.data.text import NUM_CLASSES

SUBSAMPLING = 2  # feature frames (10 ms) per output frame (20 ms)
FRAME_SAMPLES = HOP * SUBSAMPLING  # 160 samples = 20 ms per output frame
FEATURE_OVERLAP = 80  # n_fft - hop samples carried from chunk to chunk
# Additive mask value: exp() of it is exactly 0 in fp32, and it stays finite in fp16/bf16
# so a precision sweep never meets inf - inf.
MASK_VALUE = -1.0e4
# Log-mel of speech at telephone level sits around -16.6 (silence) .. +2; this fixed
# affine map puts it near [-2, 2] before the first convolution.
FEAT_SHIFT = 8.0
FEAT_SCALE = 0.25
SUB1_KERNEL = 4
SUB2_KERNEL = 3


@dataclass(frozen=True)
class ModelConfig:
    d_model: int = 224
    n_layers: int = 6
    n_heads: int = 4
    ff_mult: int = 3
    conv_kernel: int = 15
    left_context: int = 64  # attention cache, in output frames (1.28 s)
    max_future: int = 48  # relative-position buckets ahead of the query (>= chunk - 1)
    dropout: float = 0.1
    n_classes: int = NUM_CLASSES

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class StreamState(NamedTuple):
    """Everything a chunk hands to the next one (feature overlap excluded: see export)."""

    sub1: Tensor  # (B, 64, SUB1_KERNEL - 2): normalised feature frames before the chunk
    sub2: Tensor  # (B, d, SUB2_KERNEL - 1): first conv's outputs before the chunk
    attn: Tensor  # (B, n_layers, L, d): normalised attention inputs of the last L frames
    conv: Tensor  # (B, n_layers, K - 1, d): depthwise-conv inputs of the last K-1 frames
    counter: Tensor  # (B,) float: real frames in the attention cache, min(seen, L)


class LogMel(nn.Module):
    """``sweep.data.features.log_mel`` as a strided convolution + matmul (float32)."""

    basis: Tensor
    fb: Tensor

    def __init__(self) -> None:
        super().__init__()
        basis = torch.from_numpy(stft_basis().T.astype(np.float32)).unsqueeze(1)  # (162,1,160)
        fb = torch.from_numpy(mel_filterbank().T.astype(np.float32))  # (64, 81)
        # Not persistent: rebuilt from the numpy reference, so a checkpoint can never carry
        # a stale front end.
        self.register_buffer("basis", basis, persistent=False)
        self.register_buffer("fb", fb, persistent=False)

    def forward(self, audio: Tensor) -> Tensor:
        """(B, N) float audio in [-1, 1] -> (B, 64, 1 + (N - 160) // 80)."""
        spec = F.conv1d(audio.unsqueeze(1), self.basis, stride=HOP)
        re = spec[:, :N_BINS]
        im = spec[:, N_BINS:]
        power = re * re + im * im
        mel = torch.matmul(self.fb, power)
        return torch.log(mel + LOG_GUARD)


class Subsampling(nn.Module):
    """Two causal 1-D convolutions; the first halves the frame rate."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(N_MELS, d_model, SUB1_KERNEL, stride=SUBSAMPLING)
        self.conv2 = nn.Conv1d(d_model, d_model, SUB2_KERNEL)
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, feats: Tensor, c1: Tensor, c2: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        # Cache lengths are module constants, not traced sizes, so the exported graph
        # slices with constants instead of Shape/Gather arithmetic.
        x = torch.cat([c1, (feats + FEAT_SHIFT) * FEAT_SCALE], dim=2)
        new_c1 = x[:, :, -(SUB1_KERNEL - SUBSAMPLING) :]
        h = F.silu(self.conv1(x))
        h = torch.cat([c2, h], dim=2)
        new_c2 = h[:, :, -(SUB2_KERNEL - 1) :]
        h = F.silu(self.conv2(h))
        return self.proj(h.transpose(1, 2)), new_c1, new_c2


class FeedForward(nn.Module):
    def __init__(self, d: int, mult: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.up = nn.Linear(d, d * mult)
        self.down = nn.Linear(d * mult, d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.down(self.drop(F.silu(self.up(self.norm(x))))))


class ChunkAttention(nn.Module):
    """Multi-head self-attention with explicit scores and Softmax (a real ONNX Softmax,
    which precision sweeps pin to fp32), a learned relative-position bias and a cache of
    the last ``left_context`` normalised inputs."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.n_heads = cfg.n_heads
        self.head_dim = d // cfg.n_heads
        self.norm = nn.LayerNorm(d)
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)
        self.out = nn.Linear(d, d)
        self.drop = nn.Dropout(cfg.dropout)
        self.left_context = cfg.left_context
        self.max_future = cfg.max_future
        self.max_past = cfg.left_context + cfg.max_future
        self.rel_bias = nn.Embedding(self.max_past + self.max_future + 1, cfg.n_heads)
        nn.init.zeros_(self.rel_bias.weight)

    def position_bias(self, rel: Tensor) -> Tensor:
        """(Tq, Tk) integer query-minus-key distances -> (1, H, Tq, Tk) bias."""
        idx = rel.clamp(-self.max_future, self.max_past) + self.max_future
        return self.rel_bias(idx).permute(2, 0, 1).unsqueeze(0)

    def forward(
        self, x: Tensor, cache: Tensor | None, mask: Tensor, rel: Tensor
    ) -> tuple[Tensor, Tensor | None]:
        """x (B, Tq, d); cache (B, L, d) or None (offline: keys are x itself); mask
        broadcastable to (B, H, Tq, keys)."""
        xn = self.norm(x)
        kv_in = xn if cache is None else torch.cat([cache, xn], dim=1)
        # Reshapes with Python-int sizes and -1 for the batch: the export then needs no
        # Shape/Mod arithmetic, only constant-shaped Reshapes.
        tq, tk = int(xn.shape[1]), int(kv_in.shape[1])
        h, dh = self.n_heads, self.head_dim
        q = self.q(xn).reshape(-1, tq, h, dh).transpose(1, 2)
        kv = self.kv(kv_in).reshape(-1, tk, 2, h, dh)
        k = kv[:, :, 0].transpose(1, 2)
        v = kv[:, :, 1].transpose(1, 2)
        scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(self.head_dim))
        scores = scores + self.position_bias(rel) + mask
        weights = self.drop(torch.softmax(scores, dim=-1))
        ctx = torch.matmul(weights, v).transpose(1, 2).reshape(-1, tq, h * dh)
        new_cache = None if cache is None else kv_in[:, -self.left_context :]
        return self.drop(self.out(ctx)), new_cache


class ConvModule(nn.Module):
    """Pointwise + GLU, causal depthwise conv (cache of K-1 frames), LayerNorm, SiLU,
    pointwise. LayerNorm instead of BatchNorm: no batch statistics to drift, and the
    precision sweep sees it as one more LayerNormalization."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.norm = nn.LayerNorm(d)
        self.pw1 = nn.Linear(d, 2 * d)
        self.dw = nn.Conv1d(d, d, cfg.conv_kernel, groups=d)
        self.dw_norm = nn.LayerNorm(d)
        self.pw2 = nn.Linear(d, d)
        self.drop = nn.Dropout(cfg.dropout)
        self.cache_len = cfg.conv_kernel - 1

    def forward(self, x: Tensor, cache: Tensor) -> tuple[Tensor, Tensor]:
        h = F.glu(self.pw1(self.norm(x)), dim=-1)
        h = torch.cat([cache, h], dim=1)
        new_cache = h[:, -self.cache_len :]
        h = self.dw(h.transpose(1, 2)).transpose(1, 2)
        h = self.pw2(F.silu(self.dw_norm(h)))
        return self.drop(h), new_cache


class ConformerBlock(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.ff1 = FeedForward(cfg.d_model, cfg.ff_mult, cfg.dropout)
        self.attn = ChunkAttention(cfg)
        self.conv = ConvModule(cfg)
        self.ff2 = FeedForward(cfg.d_model, cfg.ff_mult, cfg.dropout)
        self.norm = nn.LayerNorm(cfg.d_model)

    def forward(
        self, x: Tensor, attn_cache: Tensor | None, conv_cache: Tensor, mask: Tensor, rel: Tensor
    ) -> tuple[Tensor, Tensor | None, Tensor]:
        x = x + 0.5 * self.ff1(x)
        a, new_attn = self.attn(x, attn_cache, mask, rel)
        x = x + a
        c, new_conv = self.conv(x, conv_cache)
        x = x + c
        x = x + 0.5 * self.ff2(x)
        return self.norm(x), new_attn, new_conv


def chunk_mask(num_frames: int, chunk: int, left_context: int, device: torch.device) -> Tensor:
    """(1, 1, T, T) additive mask: frame i sees its chunk plus ``left_context`` frames
    before the chunk's start — exactly what a streaming step with that cache sees."""
    pos = torch.arange(num_frames, device=device)
    start = (pos // chunk) * chunk
    k = pos[None, :]
    allowed = (k >= (start - left_context)[:, None]) & (k < (start + chunk)[:, None])
    zero = torch.zeros((), device=device)
    return torch.where(allowed, zero, torch.full((), MASK_VALUE, device=device))[None, None]


class DemoConformer(nn.Module):
    def __init__(self, cfg: ModelConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or ModelConfig()
        c = self.cfg
        if c.d_model % c.n_heads:
            raise ValueError("d_model must be a multiple of n_heads")
        self.frontend = LogMel()
        self.subsampling = Subsampling(c.d_model)
        self.blocks = nn.ModuleList(ConformerBlock(c) for _ in range(c.n_layers))
        self.head = nn.Linear(c.d_model, c.n_classes)

    # -- front end ---------------------------------------------------------------------
    def features(self, audio: Tensor) -> Tensor:
        """(B, N) float audio -> (B, 64, N // 80) log-mel, as a stream starting from the
        all-zero state sees it: 80 zero samples of left context, trailing partial hop
        dropped."""
        n = audio.shape[-1] - audio.shape[-1] % HOP
        padded = F.pad(audio[..., :n], (FEATURE_OVERLAP, 0))
        return self.frontend(padded)

    # -- offline -----------------------------------------------------------------------
    def forward(self, feats: Tensor, chunk_frames: int | None) -> Tensor:
        """(B, 64, T) features (T even) -> (B, T // 2, 35) log-probabilities.

        ``chunk_frames`` is the streaming chunk in output frames (20 per 400 ms); ``None``
        lets every frame see the whole utterance (no streaming equivalent).
        """
        if feats.shape[2] % SUBSAMPLING:
            feats = F.pad(feats, (0, 1), value=math.log(LOG_GUARD))
        state = self.initial_state(feats.shape[0], device=feats.device, dtype=feats.dtype)
        x, _, _ = self.subsampling(feats, state.sub1, state.sub2)
        t = x.shape[1]
        if chunk_frames is None:
            mask = torch.zeros(1, 1, t, t, device=x.device, dtype=x.dtype)
        else:
            mask = chunk_mask(t, chunk_frames, self.cfg.left_context, x.device).to(x.dtype)
        pos = torch.arange(t, device=x.device)
        rel = pos[:, None] - pos[None, :]
        for i, block in enumerate(self.blocks):
            x, _, _ = block(x, None, state.conv[:, i], mask, rel)
        return torch.log_softmax(self.head(x), dim=-1)

    # -- streaming ---------------------------------------------------------------------
    def initial_state(
        self, batch: int, device: torch.device | None = None, dtype: torch.dtype = torch.float32
    ) -> StreamState:
        c = self.cfg
        return StreamState(
            sub1=torch.zeros(batch, N_MELS, SUB1_KERNEL - SUBSAMPLING, device=device, dtype=dtype),
            sub2=torch.zeros(batch, c.d_model, SUB2_KERNEL - 1, device=device, dtype=dtype),
            attn=torch.zeros(batch, c.n_layers, c.left_context, c.d_model, device=device,
                             dtype=dtype),
            conv=torch.zeros(batch, c.n_layers, c.conv_kernel - 1, c.d_model, device=device,
                             dtype=dtype),
            counter=torch.zeros(batch, device=device, dtype=dtype),
        )

    def step(self, feats: Tensor, state: StreamState) -> tuple[Tensor, StreamState]:
        """One chunk: (B, 64, 2C) features -> (B, C, 35) log-probs and the next state."""
        L = self.cfg.left_context
        x, sub1, sub2 = self.subsampling(feats, state.sub1, state.sub2)
        # A Python int: every export has a fixed chunk, so masks and position indices
        # fold into constants.
        chunk = int(feats.shape[2]) // SUBSAMPLING
        # Cache slot j (0 = oldest) holds a real frame once j >= L - counter; the rest are
        # the zeros of the initial state and must stay invisible, as in the offline mask.
        slots = torch.arange(L + chunk, device=x.device, dtype=state.counter.dtype)
        visible = slots[None, :] >= (L - state.counter)[:, None]
        mask = torch.where(
            visible, torch.zeros((), dtype=x.dtype, device=x.device),
            torch.full((), MASK_VALUE, dtype=x.dtype, device=x.device),
        )[:, None, None, :]
        q_pos = torch.arange(chunk, device=x.device) + L
        k_pos = torch.arange(L + chunk, device=x.device)
        rel = q_pos[:, None] - k_pos[None, :]
        attn_out = []
        conv_out = []
        for i, block in enumerate(self.blocks):
            x, a, cv = block(x, state.attn[:, i], state.conv[:, i], mask, rel)
            assert a is not None
            attn_out.append(a)
            conv_out.append(cv)
        logprobs = torch.log_softmax(self.head(x), dim=-1)
        counter = torch.clamp(state.counter + chunk, max=float(L))
        return logprobs, StreamState(
            sub1=sub1,
            sub2=sub2,
            attn=torch.stack(attn_out, dim=1),
            conv=torch.stack(conv_out, dim=1),
            counter=counter,
        )


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def save_checkpoint(path: str, model: DemoConformer, extra: dict[str, Any] | None = None) -> None:
    # CPU tensors, so the file loads anywhere without map_location.
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({"config": model.cfg.to_dict(), "state_dict": state, **(extra or {})}, path)


def load_checkpoint(path: str, map_location: str = "cpu") -> tuple[DemoConformer, dict[str, Any]]:
    ckpt = torch.load(path, map_location=map_location, weights_only=False)
    model = DemoConformer(ModelConfig(**ckpt["config"]))
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    return model, ckpt
