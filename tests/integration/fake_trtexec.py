#!/opt/venv/bin/python
"""A stand-in for trtexec inside a test image (TensorRT cannot be installed here).

It behaves like trtexec where the sweep depends on it: the version banner first, the
engine written to --saveEngine, layer info and timing cache written where asked, a real
performance summary (the NVIDIA/TensorRT issue 4177 figures) and the PASSED line; a
nonzero exit when asked to fail; a long run when --duration is large (for timeouts).
It also records its argv, so the tests see exactly what docker-py passed.
"""

import json
import os
import pathlib
import sys
import time

version = os.environ.get("FAKE_TRT_VERSION", "100900")
argv = sys.argv[1:]
print(f"&&&& RUNNING TensorRT.trtexec [TensorRT v{version}] # trtexec {' '.join(argv)}",
      flush=True)
args = {a[2:].partition("=")[0]: a[2:].partition("=")[2] for a in argv}
if "help" in args:
    print("=== Model Options ===")
    sys.exit(0)
pathlib.Path("/work/argv.json").write_text(json.dumps(argv))
if "failWith" in args:
    print("[11/25/2026-10:00:00] [E] Error[4]: fake trtexec failing on purpose", flush=True)
    sys.exit(int(args["failWith"]))
onnx = pathlib.Path(args["onnx"])
onnx.read_bytes()
try:
    (onnx.parent / "written-by-trtexec").write_text("x")
    print("[11/25/2026-10:00:00] [W] the ONNX folder is writable", flush=True)
except OSError:
    print("[11/25/2026-10:00:00] [I] the ONNX folder is read-only", flush=True)
print("[11/25/2026-10:00:00] [I] Finished parsing network model. Parse time: 0.0123")
pathlib.Path(args["saveEngine"]).write_bytes(b"fake plan")
if "exportLayerInfo" in args:
    pathlib.Path(args["exportLayerInfo"]).write_text(json.dumps({"Layers": []}))
if "timingCacheFile" in args:
    pathlib.Path(args["timingCacheFile"]).write_bytes(b"fake cache")
print("[11/25/2026-10:00:01] [I] Engine built in 1.5 sec.")
print("[11/25/2026-10:00:01] [I] Created engine with size: 0.001 MiB", flush=True)
if "skipInference" not in args:
    duration = float(args.get("duration", "0"))
    if duration > 5:
        time.sleep(duration)
    prefix = "[11/25/2026-10:00:04] [I] "
    print(prefix + "=== Performance summary ===")
    print(prefix + "Throughput: 130.298 qps")
    print(prefix + "Latency: min = 5.38672 ms, max = 13.3664 ms, mean = 7.60628 ms, median = "
          "7.16092 ms, percentile(90%) = 10.2996 ms, percentile(95%) = 10.8698 ms, "
          "percentile(99%) = 12.9675 ms")
    print(prefix + "GPU Compute Time: min = 5.34595 ms, max = 13.3388 ms, mean = 7.58404 ms, "
          "median = 7.14139 ms, percentile(90%) = 10.2881 ms, percentile(95%) = 10.8175 ms, "
          "percentile(99%) = 12.9485 ms")
    print(prefix + "Total Host Walltime: 3.00082 s")
    print(prefix + "Total GPU Compute Time: 2.96536 s")
print(f"&&&& PASSED TensorRT.trtexec [TensorRT v{version}] # trtexec", flush=True)
