"""Shared by the python-backend models: run one function over all requests of a batch.

Triton's dynamic batcher hands the python backend a list of requests; the batching gain
only materialises when they are concatenated and run as one array, then split back. A
request that makes the run fail is answered with its own error; the others of its batch
are run again without it.
"""

from __future__ import annotations

import json
import site
from collections.abc import Callable, Sequence
from typing import Any


def setup_site_packages(args: dict[str, Any]) -> dict[str, str]:
    """Put the sweep's environment on sys.path and return the model's string parameters.

    The python backend stub embeds the system libpython and ignores PYTHONPATH, so numpy
    and onnxruntime are found only once their site-packages is added here. addsitedir
    (not sys.path.insert) so that .pth files, e.g. of editable installs, are honoured.
    """
    config = json.loads(args["model_config"])
    params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
    for path in filter(None, params.get("site_packages", "").split(":")):
        site.addsitedir(path)
    return params


def answer_each(pb_utils: Any, requests: Sequence[Any],
                run: Callable[[Sequence[Any]], list[Any]]) -> list[Any]:
    """``run(requests)`` for the whole batch; if it raises, each request alone, so only the
    request that fails gets an error and the others of its batch are answered.

    Every error response gets its own ``TritonError``: one object handed to several
    responses of a batch made tritonserver 2.51 die with SIGSEGV, every time
    (tests/integration/test_local_server.py)."""
    try:
        return run(requests)
    except Exception as exc:
        if len(requests) == 1:
            return [_error_response(pb_utils, exc)]
    responses = []
    for request in requests:
        try:
            responses.extend(run([request]))
        except Exception as exc:
            responses.append(_error_response(pb_utils, exc))
    return responses


def _error_response(pb_utils: Any, exc: Exception) -> Any:
    error = pb_utils.TritonError(f"{type(exc).__name__}: {exc}")
    return pb_utils.InferenceResponse(output_tensors=[], error=error)


def run_batched(pb_utils: Any, requests: Sequence[Any], input_names: Sequence[str],
                output_names: Sequence[str],
                fn: Callable[[dict[str, Any]], Sequence[Any]]) -> list[Any]:
    return answer_each(pb_utils, requests,
                       lambda batch: _run_together(pb_utils, batch, input_names,
                                                   output_names, fn))


def _run_together(pb_utils: Any, requests: Sequence[Any], input_names: Sequence[str],
                  output_names: Sequence[str],
                  fn: Callable[[dict[str, Any]], Sequence[Any]]) -> list[Any]:
    import numpy as np

    arrays = {name: [pb_utils.get_input_tensor_by_name(r, name).as_numpy()
                     for r in requests] for name in input_names}
    sizes = [a.shape[0] for a in arrays[input_names[0]]]
    feed = {name: (parts[0] if len(parts) == 1 else np.concatenate(parts))
            for name, parts in arrays.items()}
    results = fn(feed)
    responses, offset = [], 0
    for size in sizes:
        tensors = [pb_utils.Tensor(name, np.ascontiguousarray(result[offset:offset + size]))
                   for name, result in zip(output_names, results, strict=True)]
        responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        offset += size
    return responses
