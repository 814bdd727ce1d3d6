"""Train the demo streaming Conformer-CTC on synthetic telephony speech.

``python -m demo.train --data BASE/demo_train --out demo/work/run --seed 0 --max-minutes 7``

* data: one or more dataset folders with ``tarred_audio_manifest.json`` (``demo.synth``);
  a seeded ``--val-fraction`` of them is held out for the per-epoch validation WER;
* on-the-fly augmentation: speed (resampling), gain, extra silence, white/coloured noise,
  int16 quantisation, then SpecAugment-like frequency and time masks on the log-mel;
* attention mask: the fixed 400 ms chunk for ``--fixed-chunk-prob`` of the batches, a random
  chunk from ``--chunks`` otherwise, so one model streams at any of those chunk sizes;
* CTC loss, AdamW, linear warm-up then cosine decay. ``--steps`` fixes the schedule; with
  ``--max-minutes`` alone the step count is derived from the speed of the first steps and
  recorded in the checkpoint so the run can be repeated with ``--steps``;
* one schedule over several sessions (a rented GPU gives 10 minutes a call):
  ``--schedule-minutes`` sizes the schedule, ``--max-minutes`` ends this call, and
  ``OUT/resume.pt`` (weights, optimiser, step, position in the epoch, random states) lets
  ``--resume`` carry on where the call stopped, with the same batches it would have had;
* CUDA (bf16 autocast) when available, else CPU.

Writes ``OUT/best.pt`` (lowest validation WER; weights only, what ``demo.export`` reads),
``OUT/resume.pt`` and ``OUT/train_log.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F

from demo.export import edit_distance, greedy_decode
from demo.model import (
    FRAME_SAMPLES,
    DemoConformer,
    ModelConfig,
    count_parameters,
    save_checkpoint,
)
from sweep.data.features import INT16_SCALE, SAMPLE_RATE
from sweep.data.text import BLANK_ID, encode, normalize

FIXED_CHUNK_FRAMES = 20  # 400 ms: the chunk the shipped exports use


@dataclass
class Utterance:
    audio: np.ndarray  # int16
    text: str
    labels: list[int]


def load_dataset(folder: Path, limit: int | None = None, workers: int = 8) -> list[Utterance]:
    lines = (folder / "tarred_audio_manifest.json").read_text(encoding="utf-8").splitlines()
    entries = [json.loads(line) for line in lines if line.strip()][:limit]

    def read(entry: dict[str, object]) -> Utterance:
        path = folder / Path(str(entry["audio_filepath"])).name
        audio, sr = sf.read(str(path), dtype="int16")
        if sr != SAMPLE_RATE:
            raise ValueError(f"{path}: expected {SAMPLE_RATE} Hz, got {sr}")
        # Targets keep ё (espeak pronounces it); scoring folds ё into е as T-one's does.
        text = normalize(str(entry["text"]), yo_to_ye=False)
        return Utterance(audio if audio.ndim == 1 else audio[:, 0], text, encode(text))

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(read, entries))


# --------------------------------------------------------------------------------------
# Augmentation
# --------------------------------------------------------------------------------------


def augment_waveform(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """int16 audio -> float32 in [-1, 1], sped up or slowed, re-levelled, padded, noisy."""
    x = audio.astype(np.float32) / INT16_SCALE
    # The synthesised channel (demo/channel.py) already varies speed, noise and level;
    # this adds a second, milder draw per epoch so no two epochs hear the same waveform.
    speed = rng.uniform(0.92, 1.08)
    if abs(speed - 1.0) > 0.01:
        n_out = int(len(x) / speed)
        x = np.interp(np.arange(n_out) * speed, np.arange(len(x)), x).astype(np.float32)
    # Gain around the synthesised level; a little clipping is realistic telephony.
    x = np.clip(x * 10 ** (rng.uniform(-8.0, 6.0) / 20), -1.0, 1.0)
    # Streaming always starts and ends in silence (T-one pads 300 ms); vary how much.
    lead = int(rng.uniform(0.0, 0.4) * SAMPLE_RATE)
    tail = int(rng.uniform(0.0, 0.4) * SAMPLE_RATE)
    x = np.concatenate([np.zeros(lead, np.float32), x, np.zeros(tail, np.float32)])
    if rng.random() < 0.3:
        rms = float(np.sqrt(np.mean(x**2))) + 1e-9
        snr_db = rng.uniform(5.0, 40.0)
        noise = rng.standard_normal(len(x)).astype(np.float32)
        if rng.random() < 0.5:
            # Brown-ish noise: integrate and remove drift, a crude hum/rumble stand-in.
            noise = np.cumsum(noise)
            noise -= np.convolve(noise, np.ones(401) / 401, mode="same")
        noise *= rms / (float(np.sqrt(np.mean(noise**2))) + 1e-9) * 10 ** (-snr_db / 20)
        x = x + noise
    # The deployed model sees int16 samples: quantise like the wire does.
    return np.clip(np.round(x * INT16_SCALE), -32768, 32767).astype(np.float32) / INT16_SCALE


def spec_augment(feats: torch.Tensor, lengths: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Two frequency masks (<= 8 bands) and about one time mask (<= 8 frames) per second."""
    b, n_mels, t = feats.shape
    out = feats.clone()
    fill = feats.mean(dim=(1, 2), keepdim=True)
    dev = feats.device
    mels = torch.arange(n_mels, device=dev)[None, :, None]
    frames = torch.arange(t, device=dev)[None, None, :]
    for _ in range(2):
        width = torch.randint(0, 9, (b, 1, 1), generator=gen).to(dev)
        start = (torch.rand(b, 1, 1, generator=gen).to(dev) * (n_mels - width)).long()
        mask = (mels >= start) & (mels < start + width)
        out = torch.where(mask, fill, out)
    for _ in range(max(1, t // 100)):
        width = torch.randint(0, 9, (b, 1, 1), generator=gen).to(dev)
        start = (torch.rand(b, 1, 1, generator=gen).to(dev)
                 * (lengths.to(dev)[:, None, None] - width).clamp(min=1)).long()
        mask = (frames >= start) & (frames < start + width)
        out = torch.where(mask, fill, out)
    return out


# --------------------------------------------------------------------------------------
# Batching
# --------------------------------------------------------------------------------------


class BatchDataset(torch.utils.data.Dataset):
    """Item i is a whole batch (list of utterance indices), augmented in a worker."""

    def __init__(self, utts: list[Utterance], batches: list[list[int]], seed: int,
                 augment: bool) -> None:
        self.utts = utts
        self.batches = batches
        self.seed = seed
        self.augment = augment

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                           torch.Tensor]:
        rng = np.random.default_rng([self.seed, i])
        waves = []
        for j in self.batches[i]:
            a = self.utts[j].audio
            waves.append(augment_waveform(a, rng) if self.augment
                         else a.astype(np.float32) / INT16_SCALE)
        # Whole 20 ms frames, padded with silence (the stream's last chunk is zero-padded
        # too, so the model meets padding the way it will in deployment).
        n = max(len(w) for w in waves)
        n = -(-n // FRAME_SAMPLES) * FRAME_SAMPLES
        audio = np.zeros((len(waves), n), np.float32)
        for k, w in enumerate(waves):
            audio[k, : len(w)] = w
        lengths = torch.tensor([-(-len(w) // FRAME_SAMPLES) for w in waves])  # output frames
        labels = [self.utts[j].labels for j in self.batches[i]]
        target_lengths = torch.tensor([len(x) for x in labels])
        targets = torch.tensor([c for x in labels for c in x], dtype=torch.long)
        return torch.from_numpy(audio), lengths, targets, target_lengths


def make_batches(utts: list[Utterance], idx: list[int], batch_seconds: float,
                 rng: random.Random) -> list[list[int]]:
    """Shuffle, then sort within pools of ~50 batches so padding stays small."""
    idx = idx[:]
    rng.shuffle(idx)
    batches: list[list[int]] = []
    pool_size = max(1, int(50 * batch_seconds / 4.0))
    for p in range(0, len(idx), pool_size):
        pool = sorted(idx[p : p + pool_size], key=lambda j: len(utts[j].audio))
        cur: list[int] = []
        longest = 0
        for j in pool:
            longest = max(longest, len(utts[j].audio))
            if cur and longest * (len(cur) + 1) / SAMPLE_RATE > batch_seconds:
                batches.append(cur)
                cur, longest = [], len(utts[j].audio)
            cur.append(j)
        if cur:
            batches.append(cur)
    rng.shuffle(batches)
    return batches


# --------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (0.03 + 0.97 * 0.5 * (1 + math.cos(math.pi * progress)))


@torch.no_grad()
def evaluate(model: DemoConformer, utts: list[Utterance], device: torch.device,
             chunk_frames: int = FIXED_CHUNK_FRAMES, batch_seconds: float = 300.0
             ) -> tuple[float, float, list[tuple[str, str]]]:
    """Greedy WER and CER (ё folded into е) with the offline chunk-masked forward."""
    model.eval()
    order = sorted(range(len(utts)), key=lambda j: len(utts[j].audio))
    batches = make_batches(utts, order, batch_seconds, random.Random(0))
    data = BatchDataset(utts, batches, seed=0, augment=False)
    we = wn = ce = cn = 0
    pairs = []
    for i, batch in enumerate(batches):
        audio, lengths, _, _ = data[i]
        audio = audio.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logprobs = model(model.features(audio), chunk_frames)
        logprobs = logprobs.float().cpu().numpy()
        for k, j in enumerate(batch):
            hyp = normalize(greedy_decode(logprobs[k, : int(lengths[k])]))
            ref = normalize(utts[j].text)
            we += edit_distance(ref.split(), hyp.split())
            wn += len(ref.split())
            ce += edit_distance(ref, hyp)
            cn += len(ref)
            pairs.append((ref, hyp))
    model.train()
    return we / max(wn, 1), ce / max(cn, 1), pairs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, nargs="+", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-fraction", type=float, default=0.02)
    p.add_argument("--val-max", type=int, default=400)
    p.add_argument("--test", type=Path, help="dataset scored with the best weights at the end")
    p.add_argument("--limit", type=int, help="use only the first N utterances of each dataset")
    p.add_argument("--steps", type=int, help="schedule length; default: from --max-minutes")
    p.add_argument("--max-minutes", type=float, default=7.0, help="this call's time")
    p.add_argument("--schedule-minutes", type=float,
                   help="time the whole schedule spans, over all calls (default: --max-minutes)")
    p.add_argument("--resume", type=Path, help="resume.pt of an earlier call of this run")
    p.add_argument("--batch-seconds", type=float, default=900.0, help="audio per batch")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=1e-2)
    p.add_argument("--warmup", type=int, default=400)
    p.add_argument("--chunks", type=int, nargs="+", default=[5, 10, 15, 20, 25, 30, 40],
                   help="random attention chunks, in 20 ms output frames")
    p.add_argument("--fixed-chunk-prob", type=float, default=0.5)
    p.add_argument("--workers", type=int, default=6)
    p.add_argument("--sortagrad", action=argparse.BooleanOptionalAction, default=True,
                   help="first epoch in order of duration")
    p.add_argument("--eval-every", type=int, default=0, help="also validate every N steps")
    p.add_argument("--d-model", type=int, default=ModelConfig.d_model)
    p.add_argument("--layers", type=int, default=ModelConfig.n_layers)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    args.out.mkdir(parents=True, exist_ok=True)
    log = (args.out / "train_log.jsonl").open("a", encoding="utf-8")

    def emit(record: dict[str, object]) -> None:
        print(json.dumps(record, ensure_ascii=False), flush=True)
        log.write(json.dumps(record, ensure_ascii=False) + "\n")
        log.flush()

    t_load = time.perf_counter()
    utts: list[Utterance] = []
    for folder in args.data:
        utts += load_dataset(folder, args.limit)
    split_rng = random.Random(args.seed)
    order = list(range(len(utts)))
    split_rng.shuffle(order)
    n_val = min(args.val_max, max(1, int(len(utts) * args.val_fraction)))
    val = [utts[j] for j in order[:n_val]]
    train_idx = order[n_val:]
    hours = sum(len(utts[j].audio) for j in train_idx) / SAMPLE_RATE / 3600
    emit({"event": "data", "train_utterances": len(train_idx), "train_hours": round(hours, 2),
          "val_utterances": n_val, "load_s": round(time.perf_counter() - t_load, 1)})

    cfg = ModelConfig(d_model=args.d_model, n_layers=args.layers)
    model = DemoConformer(cfg).to(device)
    decay = [p_ for n_, p_ in model.named_parameters() if p_.ndim >= 2 and "rel_bias" not in n_]
    no_decay = [p_ for n_, p_ in model.named_parameters()
                if not (p_.ndim >= 2 and "rel_bias" not in n_)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr, betas=(0.9, 0.98), eps=1e-9,
    )
    emit({"event": "model", "parameters": count_parameters(model), "config": cfg.to_dict(),
          "device": str(device),
          "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None})

    gen = torch.Generator().manual_seed(args.seed)
    chunk_rng = random.Random(args.seed + 1)
    batch_rng = random.Random(args.seed + 2)
    total_steps = args.steps
    step = 0
    epoch = 0
    skip = 0  # batches of the first epoch already trained by an earlier call
    best_wer = float("inf")
    earlier_seconds = 0.0
    if args.resume:
        saved = torch.load(args.resume, map_location=device, weights_only=False)
        if saved["config"] != cfg.to_dict():
            raise SystemExit(f"{args.resume} holds a {saved['config']} model, not {cfg}")
        model.load_state_dict(saved["state_dict"])
        opt.load_state_dict(saved["optimizer"])
        step, epoch, skip = saved["step"], saved["epoch"], saved["position"]
        total_steps, best_wer = saved["schedule_steps"], saved["best_val_wer"]
        earlier_seconds = saved["train_seconds"]
        batch_rng.setstate(saved["batch_rng"])
        chunk_rng.setstate(saved["chunk_rng"])
        gen.set_state(saved["gen"].cpu())
        # Dropout draws from torch's own generators: restored too, so a resumed CPU run
        # ends with the weights an uninterrupted one would have.
        torch.set_rng_state(saved["torch_rng"].cpu())
        if device.type == "cuda" and saved.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(saved["cuda_rng"].cpu(), device)
        emit({"event": "resume", "from": str(args.resume), "step": step, "epoch": epoch + 1,
              "position": skip, "schedule_steps": total_steps})
    t_rate = 0.0
    start = time.perf_counter()
    deadline = start + args.max_minutes * 60
    schedule_end = start + (args.schedule_minutes or args.max_minutes) * 60
    first_step = step
    done = False
    while not done:
        epoch += 1
        epoch_rng = batch_rng.getstate()
        batches = make_batches(utts, train_idx, args.batch_seconds, batch_rng)
        if epoch == 1 and args.sortagrad:
            # SortaGrad (Deep Speech 2): short utterances first in the first epoch, which
            # gets CTC off its all-blank plateau on open-vocabulary text.
            batches.sort(key=lambda b: max(len(utts[j].audio) for j in b))
        # Item i is always batch i of the epoch (its augmentation is seeded by i), so a
        # resumed epoch skips what was trained and hears the rest as it would have.
        position = skip
        epoch_data = BatchDataset(utts, batches, seed=args.seed * 100_003 + epoch, augment=True)
        loader = torch.utils.data.DataLoader(
            torch.utils.data.Subset(epoch_data, range(skip, len(batches))),
            batch_size=None, shuffle=False, num_workers=args.workers,
            persistent_workers=False, prefetch_factor=4 if args.workers else None,
            pin_memory=device.type == "cuda",  # so the copy below overlaps the GPU's work
            # Its own generator: the loader's base seed would otherwise be drawn from torch's
            # global one, which dropout uses, and a resumed epoch would drop out differently.
            generator=torch.Generator().manual_seed(args.seed * 100_003 + epoch),
        )
        skip = 0
        losses = []
        for audio, lengths, targets, target_lengths in loader:
            if total_steps is None and step == first_step + 10:
                t_rate = time.perf_counter()
            if total_steps is None and step == first_step + 60:
                # Schedule length from the speed of steps 10..60 (the first ones include
                # CUDA start-up); 5% is left for the per-epoch validations.
                now = time.perf_counter()
                rate = 50 / (now - t_rate)
                total_steps = max(100, step + int(0.95 * rate * (schedule_end - now)))
                emit({"event": "schedule", "steps": total_steps,
                      "steps_per_s": round(rate, 2)})
            lr = lr_at(step, total_steps or 10**9, args.lr, args.warmup)
            for group in opt.param_groups:
                group["lr"] = lr
            audio = audio.to(device, non_blocking=True)
            with torch.no_grad():
                feats = model.features(audio)
                feats = spec_augment(feats, lengths * 2, gen)
            chunk = (FIXED_CHUNK_FRAMES if chunk_rng.random() < args.fixed_chunk_prob
                     else chunk_rng.choice(args.chunks))
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                logprobs = model(feats, chunk)
            loss = F.ctc_loss(
                logprobs.float().transpose(0, 1), targets.to(device),
                lengths.clamp(max=logprobs.shape[1]).to(device), target_lengths.to(device),
                blank=BLANK_ID, reduction="mean", zero_infinity=True,
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            losses.append(loss.item())
            step += 1
            position += 1
            if step % 50 == 0:
                emit({"event": "step", "step": step, "epoch": epoch, "lr": round(lr, 6),
                      "loss": round(float(np.mean(losses[-50:])), 4),
                      "grad_norm": round(float(grad_norm), 3),
                      "elapsed_s": round(earlier_seconds + time.perf_counter() - start, 1)})
            if args.eval_every and step % args.eval_every == 0:
                wer, cer, _ = evaluate(model, val, device)
                emit({"event": "val", "step": step, "wer": round(wer, 4), "cer": round(cer, 4)})
            if (total_steps is not None and step >= total_steps) or time.perf_counter() > deadline:
                done = True
                break
        wer, cer, pairs = evaluate(model, val, device)
        trained_s = round(earlier_seconds + time.perf_counter() - start, 1)
        emit({"event": "epoch", "epoch": epoch, "step": step,
              "train_loss": round(float(np.mean(losses)), 4) if losses else None,
              "val_wer": round(wer, 4), "val_cer": round(cer, 4), "elapsed_s": trained_s,
              "example": {"ref": pairs[0][0], "hyp": pairs[0][1]}})
        extra = {"epoch": epoch, "step": step, "val_wer": wer, "val_cer": cer,
                 "schedule_steps": total_steps, "args": {k: str(v) for k, v in vars(args).items()},
                 "train_seconds": trained_s,
                 "device": torch.cuda.get_device_name(device) if device.type == "cuda"
                 else "cpu"}
        if wer <= best_wer:
            best_wer = wer
            save_checkpoint(str(args.out / "best.pt"), model, extra)
        finished = position == len(batches)
        torch.save({
            "config": cfg.to_dict(), "state_dict": model.state_dict(),
            "optimizer": opt.state_dict(), "step": step, "schedule_steps": total_steps,
            "best_val_wer": best_wer, "train_seconds": trained_s,
            # An unfinished epoch is redone from its own shuffle, skipping what was trained.
            "epoch": epoch if finished else epoch - 1,
            "position": 0 if finished else position,
            "batch_rng": batch_rng.getstate() if finished else epoch_rng,
            "chunk_rng": chunk_rng.getstate(), "gen": gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        }, args.out / "resume.pt")
    complete = total_steps is not None and step >= total_steps
    emit({"event": "done" if complete else "paused", "steps": step, "epochs": epoch,
          "schedule_steps": total_steps, "best_val_wer": best_wer,
          "train_seconds": round(earlier_seconds + time.perf_counter() - start, 1)})
    if args.test and complete:
        ckpt = torch.load(args.out / "best.pt", map_location=device, weights_only=False)
        model.load_state_dict(ckpt["state_dict"])
        test = load_dataset(args.test)
        wer, cer, pairs = evaluate(model, test, device)
        emit({"event": "test", "dataset": str(args.test), "utterances": len(test),
              "wer": round(wer, 4), "cer": round(cer, 4),
              "examples": [{"ref": r, "hyp": h} for r, h in pairs[:5]]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
