"""A stand-in for NVIDIA's tritonserver with the TensorRT backend, for the rehearsal image.

TensorRT and GPUs cannot run where this project is tested, so the rehearsal image pairs the
stand-in trtexec (tests/standins/trtexec.py, whose "plan" carries the ONNX it was built
from) with this server. It takes tritonserver's own command line and, before anything is
served, holds the model repository to Triton's rules (tests/standins/triton_rules.py:
config.pbtxt parsed with Triton's protobuf; a tensorrt_plan needs KIND_GPU instances and
its model.plan; ensemble wiring; batch dims) and the plan to TensorRT's: a plan runs only
on the TensorRT version that built it. The first violation ends it the way Triton ends
with --exit-on-error: its error lines, exit 1.

Then it serves the repository for real: each plan becomes a python-backend model that runs
the plan's ONNX with ONNX Runtime on the CPU (the image's "GPU"), everything else is
served as written, by the real tritonserver of the image (``tritonserver-real``).

Explicit model control (a server kept across a sweep's jobs) is refused: the translation
happens once, at start-up.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from triton_rules import Model, check_repository, load_repository

REAL = os.environ.get("TRITONSERVER_REAL", "/usr/local/bin/tritonserver-real")
TEMPLATES = Path(os.environ.get("STANDIN_TEMPLATES", "/opt/standins/templates"))
SITE_PACKAGES = os.environ.get("STANDIN_SITE_PACKAGES",
                               "/opt/venv/lib/python3.11/site-packages")
MAGIC = b"TRT-SWEEP-STANDIN-PLAN\n"


def log(level: str, text: str) -> None:
    # glog's layout, as Triton writes it: the sweep quotes lines that start with "E".
    stamp = time.strftime("%m%d %H:%M:%S")
    print(f"{level}{stamp}.000000 {os.getpid()} standin_tritonserver.py:0] {text}",
          flush=True)


def fail(errors: list[str]) -> None:
    for error in errors:
        log("E", error)
    log("E", "standin: exiting: the model repository does not load (--exit-on-error)")
    print("error: creating server: Internal - failed to load all models", flush=True)
    sys.exit(1)


def read_plan(path: Path) -> tuple[dict[str, object], bytes]:
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        raise ValueError(f"{path}: Error Code 1: Serialization (the plan's magic tag does "
                         "not match: not a TensorRT engine built by trtexec)")
    header, _, onnx = data[len(MAGIC):].partition(b"\n")
    return json.loads(header), onnx


def translate(model: Model, dest: Path, trt_version: str) -> list[str]:
    """The plan model as a python-backend model of the same interface."""
    c = model.config
    plan = model.folder / "1" / (c.default_model_filename or "model.plan")
    try:
        meta, onnx = read_plan(plan)
    except (OSError, ValueError) as exc:
        return [f"failed to load '{model.name}' version 1: Internal: {exc}"]
    built = str(meta.get("version", ""))
    if built != trt_version:
        return [f"failed to load '{model.name}' version 1: Internal: Error Code 6: API Usage "
                f"Error (The engine plan file is not compatible with this version of "
                f"TensorRT, expecting library version {trt_version} got {built}, please "
                "rebuild.)"]
    folder = dest / model.name
    (folder / "1").mkdir(parents=True)
    (folder / "1" / "model.onnx").write_bytes(onnx)
    for name in ("model.py", "batched.py"):
        shutil.copy2(TEMPLATES / name, folder / "1" / name)
    c.platform = ""
    c.backend = "python"
    c.ClearField("default_model_filename")
    for group in c.instance_group:
        group.kind = group.KIND_CPU
        del group.gpus[:]
    for tensor in (*c.input, *c.output):
        # The python model reshapes rank-1 tensors itself (triton_templates/model/model.py).
        tensor.ClearField("reshape")
    c.parameters["site_packages"].string_value = SITE_PACKAGES
    from google.protobuf import text_format

    (folder / "config.pbtxt").write_text(text_format.MessageToString(c))
    log("I", f"standin: serving TensorRT {built} plan '{model.name}' on the CPU "
        f"({len(onnx)} bytes of ONNX)")
    return []


def main(argv: list[str]) -> None:
    options = dict(a[2:].partition("=")[::2] for a in argv if a.startswith("--"))
    if options.get("model-control-mode") == "explicit":
        fail(["standin: --model-control-mode=explicit is not supported (the plans are "
              "translated at start-up); use server.keep_running=false"])
    source = Path(options.get("model-repository", "/models"))
    errors = check_repository(source, gpus=True)
    if errors:
        fail(errors)
    trt_version = os.environ.get("FAKE_TRT_VERSION", "")
    served = Path(tempfile.mkdtemp(prefix="standin-models-"))
    models, _ = load_repository(source)
    for model in models.values():
        if model.is_plan:
            errors += translate(model, served, trt_version)
        else:
            shutil.copytree(model.folder, served / model.name)
    if errors:
        fail(errors)
    args = [a for a in argv if not a.startswith("--model-repository=")]
    os.execv(REAL, [REAL, f"--model-repository={served}", *args])


if __name__ == "__main__":
    main(sys.argv[1:])
