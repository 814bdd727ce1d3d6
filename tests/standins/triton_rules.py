"""Triton's rules for a model repository, as strict as the real server where the sweep
depends on them: every config.pbtxt parsed with Triton's own model-config protobuf (a
misspelt field fails as it does in Triton), and the backend rules a TensorRT deployment
meets first.

Used on the host (tests that check what ``sweep.server.repository.render`` writes) and
inside the stand-in tritonserver of the rehearsal image (``tests/standins/tritonserver.py``),
which refuses to start on the first error, with Triton's wording where Triton has one:
the TensorRT backend's "unable to load model '<name>', TensorRT backend supports only GPU
device" (tensorrt_backend/src/instance_state.cc).

Only the Python standard library, protobuf and tritonclient (both in the test image).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

PLAN_PLATFORMS = ("tensorrt_plan",)


@dataclass(frozen=True)
class Model:
    name: str
    folder: Path
    config: Any  # model_config_pb2.ModelConfig

    @property
    def is_plan(self) -> bool:
        return self.config.platform in PLAN_PLATFORMS or self.config.backend == "tensorrt"

    @property
    def is_ensemble(self) -> bool:
        return self.config.platform == "ensemble"


def parse(config_path: Path) -> Any:
    """The config as Triton reads it: text protobuf, unknown fields are errors."""
    return text_format.Parse(config_path.read_text(), mc.ModelConfig())


def load_repository(root: Path) -> tuple[dict[str, Model], list[str]]:
    models: dict[str, Model] = {}
    errors: list[str] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        path = folder / "config.pbtxt"
        if not path.is_file():
            errors.append(f"failed to load '{folder.name}': no config.pbtxt in {folder}")
            continue
        try:
            config = parse(path)
        except text_format.ParseError as exc:
            errors.append(f"failed to load '{folder.name}': Invalid argument: failed to "
                          f"parse {path}: {exc}")
            continue
        if config.name and config.name != folder.name:
            errors.append(f"failed to load '{folder.name}': Invalid argument: unexpected "
                          f"model name '{config.name}' in {path} (the folder is "
                          f"'{folder.name}')")
        models[folder.name] = Model(folder.name, folder, config)
    return models, errors


def _kind(value: int) -> str:
    return str(mc.ModelInstanceGroup.Kind.Name(value))


def _tensors(config: Any, which: str) -> dict[str, Any]:
    return {t.name: t for t in getattr(config, which)}


def check_model(model: Model, models: dict[str, Model], *, gpus: bool) -> list[str]:
    c, name = model.config, model.name
    errors: list[str] = []
    version = model.folder / "1"
    if not version.is_dir():
        errors.append(f"failed to load '{name}': Not found: no version folder 1 in "
                      f"{model.folder}")
    if model.is_plan:
        for group in c.instance_group:
            if group.kind != mc.ModelInstanceGroup.KIND_GPU:
                errors.append(f"failed to load '{name}' version 1: Invalid argument: unable "
                              f"to load model '{name}', TensorRT backend supports only GPU "
                              f"device (instance group kind {_kind(group.kind)})")
        if not c.instance_group:
            errors.append(f"failed to load '{name}': Invalid argument: no instance_group: "
                          "the TensorRT backend needs KIND_GPU instances")
        if c.instance_group and not gpus:
            errors.append(f"failed to load '{name}': Invalid argument: instance group of "
                          f"model '{name}' has kind KIND_GPU but no GPU is available")
        filename = c.default_model_filename or "model.plan"
        if version.is_dir() and not (version / filename).is_file():
            errors.append(f"failed to load '{name}' version 1: Not found: unable to find "
                          f"'{version / filename}'")
    elif c.backend == "python":
        if version.is_dir() and not (version / "model.py").is_file():
            errors.append(f"failed to load '{name}' version 1: Not found: "
                          f"{version / 'model.py'} does not exist")
    elif not model.is_ensemble:
        errors.append(f"failed to load '{name}': Invalid argument: this repository only "
                      f"serves python, tensorrt_plan and ensemble models (platform "
                      f"'{c.platform}', backend '{c.backend}')")
    if c.max_batch_size == 0 and c.HasField("dynamic_batching"):
        errors.append(f"failed to load '{name}': Invalid argument: dynamic batching is "
                      "only allowed for models that support batching (max_batch_size > 0)")
    for which in ("input", "output"):
        for t in getattr(c, which):
            if not t.dims:
                errors.append(f"failed to load '{name}': Invalid argument: model {which} "
                              f"'{t.name}' must specify 'dims'")
            elif any(d == 0 or d < -1 for d in t.dims):
                errors.append(f"failed to load '{name}': Invalid argument: model {which} "
                              f"'{t.name}' has invalid dims {list(t.dims)}")
    errors += _check_warmup(model)
    if model.is_ensemble:
        errors += _check_ensemble(model, models)
    return errors


def _type(value: int) -> str:
    return str(mc.DataType.Name(value)).removeprefix("TYPE_")


def _check_warmup(model: Model) -> list[str]:
    """Warm-up requests are real requests: Triton normalises them like any other (the
    core's wording: "inference input '<x>' data-type is '<T>', but model '<m>' expects
    '<U>'"), and a failed warm-up fails the model's load. T-one's public TensorRT config
    warms its TYPE_INT16 ``signal`` with TYPE_INT32 zero data: refused here, as there."""
    c, name = model.config, model.name
    inputs = _tensors(c, "input")
    errors: list[str] = []
    prefix = f"failed to load '{name}' version 1: Invalid argument: model warm-up"
    for warmup in c.model_warmup:
        where = f"{prefix} '{warmup.name}'"
        if c.max_batch_size > 0 and not 1 <= warmup.batch_size <= c.max_batch_size:
            errors.append(f"{where}: batch size {warmup.batch_size} is outside [1, "
                          f"{c.max_batch_size}] (max_batch_size)")
        missing = sorted(set(inputs) - set(warmup.inputs))
        if missing:
            errors.append(f"{where}: expected {len(inputs)} inputs but got "
                          f"{len(warmup.inputs)}; missing {missing}")
        for key, data in warmup.inputs.items():
            declared = inputs.get(key)
            if declared is None:
                errors.append(f"{where}: unexpected inference input '{key}' for model "
                              f"'{name}'")
                continue
            if data.data_type != declared.data_type:
                errors.append(f"{where}: inference input '{key}' data-type is "
                              f"'{_type(data.data_type)}', but model '{name}' expects "
                              f"'{_type(declared.data_type)}'")
            if list(data.dims) != list(declared.dims):
                errors.append(f"{where}: input '{key}' dims {list(data.dims)} do not match "
                              f"the model's {list(declared.dims)}")
            if not (data.zero_data or data.random_data or data.input_data_file):
                errors.append(f"{where}: input '{key}' has no zero_data, random_data or "
                              "input_data_file")
    return errors


def _check_ensemble(model: Model, models: dict[str, Model]) -> list[str]:
    c, name = model.config, model.name
    errors: list[str] = []
    available = dict(_tensors(c, "input"))  # tensor name -> declaration (dtype, dims)
    produced: set[str] = set()
    if not c.ensemble_scheduling.step:
        return [f"failed to load '{name}': Invalid argument: ensemble has no steps"]
    for step in c.ensemble_scheduling.step:
        target = models.get(step.model_name)
        if target is None:
            errors.append(f"failed to load '{name}': Invalid argument: ensemble step model "
                          f"'{step.model_name}' is not in the repository")
            continue
        inputs, outputs = _tensors(target.config, "input"), _tensors(target.config, "output")
        if target.config.max_batch_size < c.max_batch_size:
            errors.append(f"failed to load '{name}': Invalid argument: ensemble max_batch_size "
                          f"{c.max_batch_size} exceeds the {target.config.max_batch_size} of "
                          f"step model '{step.model_name}'")
        for model_input, tensor in step.input_map.items():
            if model_input not in inputs:
                errors.append(f"failed to load '{name}': Invalid argument: in ensemble step "
                              f"'{step.model_name}', input '{model_input}' is not an input of "
                              "that model")
            if tensor not in available and tensor not in produced:
                errors.append(f"failed to load '{name}': Invalid argument: ensemble tensor "
                              f"'{tensor}' is used by step '{step.model_name}' before any "
                              "step or ensemble input provides it")
            declared = available.get(tensor)
            if declared is not None and model_input in inputs and \
                    declared.data_type != inputs[model_input].data_type:
                errors.append(f"failed to load '{name}': Invalid argument: ensemble tensor "
                              f"'{tensor}' has data type "
                              f"{mc.DataType.Name(declared.data_type)} but step "
                              f"'{step.model_name}' input '{model_input}' expects "
                              f"{mc.DataType.Name(inputs[model_input].data_type)}")
        for model_output, tensor in step.output_map.items():
            if model_output not in outputs:
                errors.append(f"failed to load '{name}': Invalid argument: in ensemble step "
                              f"'{step.model_name}', output '{model_output}' is not an output "
                              "of that model")
            else:
                available.setdefault(tensor, outputs[model_output])
            produced.add(tensor)
    for out in c.output:
        if out.name not in produced:
            errors.append(f"failed to load '{name}': Invalid argument: ensemble output "
                          f"'{out.name}' is produced by no step")
    return errors


def check_repository(root: Path, *, gpus: bool = True) -> list[str]:
    """Every error Triton would report for the repository at ``root`` ([] when it would
    load). ``gpus``: whether the server has GPUs for KIND_GPU instances."""
    models, errors = load_repository(root)
    for model in models.values():
        errors += check_model(model, models, gpus=gpus)
    return errors
