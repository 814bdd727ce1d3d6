"""Shared by the python-backend models: run one function over all requests of a batch.

Triton's dynamic batcher hands the python backend a list of requests; the batching gain
only materialises when they are concatenated and run as one array, then split back.
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


def run_batched(pb_utils: Any, requests: Sequence[Any], input_names: Sequence[str],
                output_names: Sequence[str],
                fn: Callable[[dict[str, Any]], Sequence[Any]]) -> list[Any]:
    import numpy as np

    try:
        arrays = {name: [pb_utils.get_input_tensor_by_name(r, name).as_numpy()
                         for r in requests] for name in input_names}
        sizes = [a.shape[0] for a in arrays[input_names[0]]]
        feed = {name: (parts[0] if len(parts) == 1 else np.concatenate(parts))
                for name, parts in arrays.items()}
        results = fn(feed)
    except Exception as exc:  # one failure answers every request of the batch with it
        error = pb_utils.TritonError(f"{type(exc).__name__}: {exc}")
        return [pb_utils.InferenceResponse(output_tensors=[], error=error) for _ in requests]
    responses, offset = [], 0
    for size in sizes:
        tensors = [pb_utils.Tensor(name, np.ascontiguousarray(result[offset:offset + size]))
                   for name, result in zip(output_names, results, strict=True)]
        responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        offset += size
    return responses
