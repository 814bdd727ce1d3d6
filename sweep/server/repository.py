"""Render triton_templates/ into a self-contained Triton model repository.

Everything a server needs lies inside the repository (configs, model.py files, the engine
itself), so the same folder serves from a local process or mounted read-only into a
container; only ``site_packages`` (where numpy/onnxruntime live, as that server sees the
filesystem) differs between the two.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from sweep.engine import Engine, EngineFormat
from sweep.errors import ConfigError
from sweep.infra.files import PROJECT_ROOT
from sweep.model import Contract, ModelInterface, TensorSpec
from sweep.server.base import InstanceKind, ModelRepository, ServingOptions

TEMPLATES = PROJECT_ROOT / "triton_templates"
FEATURES_PY = PROJECT_ROOT / "sweep" / "data" / "features.py"


@dataclass(frozen=True)
class _Tensor:
    name: str
    triton_type: str
    dims: tuple[int, ...]
    reshape: bool


def _tensor(spec: TensorSpec, reshape_rank1: bool) -> _Tensor:
    # A batch-only ONNX tensor (B,) has no dims left once Triton strips the batch axis;
    # Triton needs dims [1] and, for backends that see shapes (TensorRT), a reshape to [].
    if not spec.dims:
        return _Tensor(spec.name, spec.triton_type, (1,), reshape_rank1)
    return _Tensor(spec.name, spec.triton_type, spec.dims, False)


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _place(src: Path, dst: Path, *, link: bool) -> None:
    """Hard-link the engine when possible: engines can be large and the cache holds the
    original. Python sources are copied: a person who edits a rendered model.py while
    debugging must not edit the package's template, and every later sweep with it."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if link:
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    shutil.copy2(src, dst)


STATES = ("client", "server")


def _sequence(model: ModelInterface, inputs: dict[str, TensorSpec], options: ServingOptions,
              *, plan: bool) -> dict[str, Any] | None:
    """The sequence batcher's settings for server.state=server, else None."""
    if options.state not in STATES:
        raise ConfigError(f"server.state={options.state!r}; expected one of "
                          f"{', '.join(STATES)}.")
    if options.state == "client":
        return None
    if model.contract is not Contract.MONOLITHIC:
        raise ConfigError(
            f"server.state=server serves the monolithic contract only; {model.name!r} is "
            f"{model.contract.value} (its state passes through the ensemble). Use "
            "server.state=client for it.")
    if options.max_candidate_sequences < 1 or options.sequence_idle_us < 1 \
            or options.sequence_queue_delay_us < 0:
        raise ConfigError(
            f"server.max_candidate_sequences={options.max_candidate_sequences}, "
            f"server.sequence_idle_us={options.sequence_idle_us}, "
            f"server.sequence_queue_delay_us={options.sequence_queue_delay_us}; expected at "
            "least one candidate, a positive idle timeout and a queue delay of 0 or more.")
    states = [_tensor(inputs[p.input], False) for p in model.states]
    return {
        "idle_us": options.sequence_idle_us,
        "candidates": options.max_candidate_sequences,
        "queue_delay_us": options.sequence_queue_delay_us,
        # TensorRT: implicit state, the backend carries it. Python backend: control inputs,
        # the model carries it (the embedded python backend keeps no implicit state).
        "control": not plan,
        "states": [{"input": p.input, "output": p.output, "triton_type": t.triton_type,
                    "dims": t.dims} for p, t in zip(model.states, states, strict=True)]
        if plan else [],
        "tensors": {p.input: {"output": p.output, "dtype": inputs[p.input].dtype,
                              "dims": list(inputs[p.input].dims)} for p in model.states},
    }


def _state_tensors(tensors: dict[str, dict[str, Any]]) -> str:
    """``input:output:dtype:d1xd2;...``: a parameter value without quotes (config.pbtxt
    strings would need escaping), read back by triton_templates/model/stateful_model.py."""
    return ";".join(f"{name}:{t['output']}:{t['dtype']}:{'x'.join(map(str, t['dims']))}"
                    for name, t in tensors.items())


def warmup_batches(plan: bool, server_state: bool, max_batch_size: int) -> list[int]:
    """Batch sizes a plan is warmed up at when it loads: 1 and the largest, as T-one's own
    TensorRT config does. Not for the python backend (the emulation's sessions are made in
    initialize) nor under the sequence batcher, whose warm-up requests would carry no
    sequence (correlation id, start flag) for the implicit state."""
    if not plan or server_state or max_batch_size < 1:
        return []
    return sorted({1, max_batch_size})


def render(model: ModelInterface, engine: Engine, dest: Path, *, site_packages: str,
           options: ServingOptions) -> ModelRepository:
    """Write the repository for ``model`` served with ``engine`` into ``dest``."""
    plan = engine.format is EngineFormat.TENSORRT_PLAN
    if plan and options.max_batch_size > engine.flags.max_batch:
        raise ConfigError(
            f"server.max_batch_size={options.max_batch_size} is larger than the plan's "
            f"max batch {engine.flags.max_batch} (trt.max_batch); lower one or raise the other."
        )
    if dest.exists():
        shutil.rmtree(dest)
    env = _environment()
    inputs, outputs = model.tensors()
    params = {
        "site_packages": site_packages,
        "graph_optimization_level": str(engine.runtime.get("graph_optimization_level",
                                                           "ORT_ENABLE_ALL")),
        "intra_op_num_threads": str(options.intra_op_threads),
    }
    common = {
        "max_batch_size": options.max_batch_size,
        "queue_delay_us": options.queue_delay_us,
        "instances": options.instances,
    }
    configs: list[Path] = []

    def write(name: str, text: str, files: dict[str, Path]) -> None:
        folder = dest / name
        (folder / "1").mkdir(parents=True, exist_ok=True)
        (folder / "config.pbtxt").write_text(text)
        configs.append(folder / "config.pbtxt")
        for target, src in files.items():
            _place(src, folder / "1" / target, link=src == engine.path)

    sequence = _sequence(model, inputs, options, plan=plan)
    if sequence is not None:
        # The state tensors are the server's: not in the request nor the response.
        hidden = {p.input for p in model.states} | {p.output for p in model.states}
        inputs = {k: v for k, v in inputs.items() if k not in hidden}
        outputs = {k: v for k, v in outputs.items() if k not in hidden}
        params |= {"state_tensors": _state_tensors(sequence["tensors"]),
                   "sequence_idle_us": str(options.sequence_idle_us)}
    model_files = {("model.plan" if plan else "model.onnx"): engine.path}
    if not plan:
        model_py = "stateful_model.py" if sequence is not None else "model.py"
        model_files |= {"model.py": TEMPLATES / "model" / model_py,
                        "batched.py": TEMPLATES / "common" / "batched.py"}
    if sequence is not None:
        sequence["plan"] = plan
    write("model", env.get_template("model/config.pbtxt.j2").render(
        inputs=[_tensor(t, plan) for t in inputs.values()],
        warmup=warmup_batches(plan, sequence is not None, options.max_batch_size),
        outputs=[_tensor(t, plan) for t in outputs.values()],
        engine_format=engine.format,
        kind=InstanceKind.for_engine(engine.format),
        sequence=sequence,
        parameters={} if plan else params,
        flags_label=engine.flags.label, flags_digest=engine.flags.digest,
        **common), model_files)
    models = ["model"]

    if model.contract is Contract.SKIP_PREPROCESSOR:
        audio = inputs[model.audio_input]
        n_mels, frames = audio.dims
        context = model.chunk_samples + model.left_context_samples
        write("preprocessing", env.get_template("preprocessing/config.pbtxt.j2").render(
            chunk_with_context=context, n_mels=n_mels, frames=frames,
            left_context=model.left_context_samples,
            parameters={"site_packages": site_packages,
                        "fp16_round_trip": str(options.fp16_features).lower()},
            **common),
            {"model.py": TEMPLATES / "preprocessing" / "model.py",
             "batched.py": TEMPLATES / "common" / "batched.py",
             "features.py": FEATURES_PY})
        state_names = {s.input for s in model.states}
        write("ensemble", env.get_template("ensemble/config.pbtxt.j2").render(
            chunk_with_context=context,
            states_in=[_tensor(inputs[n], False) for n in inputs if n in state_names],
            outputs=[_tensor(t, False) for t in outputs.values()],
            audio_input=model.audio_input, length_input=model.length_input,
            **common), {})
        models = ["preprocessing", "model", "ensemble"]
    return ModelRepository(path=dest, entry_model=model.entry_model, models=tuple(models),
                           configs=tuple(configs))


_SITE_PACKAGES = re.compile(r'(key: "site_packages"\s*value: \{ string_value: ")[^"]*(")')


def reassemble(configs: dict[str, Path], engine_path: Path, dest: Path, *,
               site_packages: str) -> ModelRepository:
    """A servable repository from the config.pbtxt files a run logged and its engine: the
    configs are what that run served (scheduling, state mode, tensors), so they are used
    as they are; only the python-backend sources (not logged; this checkout's) and
    ``site_packages`` (where this server finds numpy/onnxruntime) are today's."""
    if "model" not in configs:
        raise ConfigError(f"the run logged no config for the model folder 'model' (it has "
                          f"{sorted(configs) or 'none'}); it is not a served job's run.")
    if dest.exists():
        shutil.rmtree(dest)
    plan = engine_path.suffix == ".plan"
    written: list[Path] = []
    order = [m for m in ("preprocessing", "model", "ensemble") if m in configs]
    for name in order:
        text = configs[name].read_text()
        text = _SITE_PACKAGES.sub(lambda m: m.group(1) + site_packages + m.group(2), text)
        folder = dest / name
        (folder / "1").mkdir(parents=True, exist_ok=True)
        (folder / "config.pbtxt").write_text(text)
        written.append(folder / "config.pbtxt")
        files: dict[str, Path] = {}
        if name == "model":
            files["model.plan" if plan else "model.onnx"] = engine_path
            if not plan:
                stateful = "sequence_batching" in text
                files["model.py"] = TEMPLATES / "model" / ("stateful_model.py" if stateful
                                                           else "model.py")
                files["batched.py"] = TEMPLATES / "common" / "batched.py"
        elif name == "preprocessing":
            files = {"model.py": TEMPLATES / "preprocessing" / "model.py",
                     "batched.py": TEMPLATES / "common" / "batched.py",
                     "features.py": FEATURES_PY}
        for target, src in files.items():
            _place(src, folder / "1" / target, link=src == engine_path)
    entry = "ensemble" if "ensemble" in configs else "model"
    return ModelRepository(path=dest, entry_model=entry, models=tuple(order),
                           configs=tuple(written))
