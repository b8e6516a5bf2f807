"""Triton Python-backend model: runs the exported ONNX graph on the CPU with the runtime its config names.

Copied by ``marblekit export`` into ``<repo>/<model>/1/model.py``, with ``marblekit.core.runtimes`` beside it
as ``marblekit_runtimes.py``. It runs inside Triton's backend stub, in the serving environment (numpy,
onnxruntime, openvino), so it imports nothing from marblekit.

The Python backend hands ``execute`` a list of requests and does not merge them: requests with equal
lengths are concatenated into runtime calls of at most ``max_call_windows`` windows (never padded: padding
changes group-norm outputs) and the results are split back per request. A bad request gets its own INVALID_ARG
error response and the rest are served; a runtime failure fails only the requests of its call.
"""

import json
import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from marblekit_runtimes import open_session  # noqa: E402 (copied beside this file by marblekit export)

INPUT_NAME = "waveform"


def _error(message, code):
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, code))


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        path = os.path.join(args["model_repository"], args["model_version"], params.get("onnx_file", "model.onnx"))
        self.session = open_session(path, params.get("runtime", "onnxruntime"),
                                    int(params.get("intra_op_threads", "0")),
                                    params.get("inference_precision", "f32"))
        self.output_names = self.session.output_names
        self.max_call_windows = int(params.get("max_call_windows", "8"))
        self.min_samples = int(params["min_samples"])
        self.max_samples = int(params["max_samples"])

    def _problem(self, waveform):
        """Why a request's waveform cannot be served, or None."""
        if waveform.ndim != 2:
            return f"'{INPUT_NAME}' must be [batch, samples], got shape {list(waveform.shape)}"
        samples = waveform.shape[1]
        if not self.min_samples <= samples <= self.max_samples:
            return (f"'{INPUT_NAME}' has {samples} samples; this model accepts {self.min_samples} to "
                    f"{self.max_samples} per window")
        if not np.isfinite(waveform).all():
            return f"'{INPUT_NAME}' contains NaN or infinite samples"
        return None

    def execute(self, requests):
        responses = [None] * len(requests)
        by_length = {}
        for index, request in enumerate(requests):
            waveform = pb_utils.get_input_tensor_by_name(request, INPUT_NAME).as_numpy()
            problem = self._problem(waveform)
            if problem:
                responses[index] = _error(problem, pb_utils.TritonError.INVALID_ARG)
                continue
            wanted = list(request.requested_output_names()) or self.output_names
            by_length.setdefault(waveform.shape[1], []).append((index, waveform, wanted))
        for call in (call for group in by_length.values() for call in _calls(group, self.max_call_windows)):
            names = [name for name in self.output_names if any(name in wanted for _, _, wanted in call)]
            batch = np.concatenate([waveform for _, waveform, _ in call]).astype(np.float32, copy=False)
            try:
                results = dict(zip(names, self.session.run(names, batch)))
            except Exception as err:  # the runtimes raise several unrelated types; report, keep serving
                for index, _, _ in call:
                    responses[index] = _error(f"the runtime failed on a batch of {len(batch)}: {err}",
                                              pb_utils.TritonError.INTERNAL)
                continue
            start = 0
            for index, waveform, wanted in call:
                stop = start + waveform.shape[0]
                tensors = [pb_utils.Tensor(name, results[name][start:stop]) for name in wanted]
                responses[index] = pb_utils.InferenceResponse(output_tensors=tensors)
                start = stop
        return responses


def _calls(group, cap):
    """Requests of one length packed, in order, into runtime calls of at most ``cap`` windows (on a CPU a
    bigger call runs slower per window: its activations leave the caches); a larger request runs alone."""
    call, windows = [], 0
    for request in group:
        if call and windows + request[1].shape[0] > cap:
            yield call
            call, windows = [], 0
        call.append(request)
        windows += request[1].shape[0]
    if call:
        yield call
