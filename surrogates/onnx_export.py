"""ONNX export of the neural surrogates (surrogates.nn: the MLP (mu, t) -> nodal field and its Scaling).

    from surrogates.onnx_export import export_onnx
    export_onnx("results/heat/surrogate/online_fifo.pt", "heat.onnx")

    import onnxruntime, numpy as np
    session = onnxruntime.InferenceSession("heat.onnx")
    u = session.run(None, {"mu_t": np.array([[0.5, 0.2, 0.3, 0.9, 0.1, 0.25]])})[0]   # (1, n_nodes)

The exported graph maps raw inputs to raw outputs, with a dynamic batch axis:

  mu_t  (batch, d + 1) float64: the parameters in the order of the study's parameters, then the time t
  u     (batch, n_nodes) float32: the nodal field at (mu, t), boundary values included (the training
        targets are the raw fields: the surrogate applies no output normalisation)

Inside, the surrogate's input scaling as surrogates.nn.Scaling.inputs computes it (float64: mu to the
unit box by the trained bounds, t by the final time, then rounded to float32), so the network sees the
same float32 inputs as in PyTorch, then the MLP in float32. The exporter is torch.onnx's TorchScript-based
one (dynamo=False): the dynamo exporter needs onnxscript, which romflow does not depend on.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

__all__ = ["RawSurrogate", "export_onnx"]

INPUT, OUTPUT = "mu_t", "u"


class RawSurrogate(nn.Module):
    """The surrogate on raw inputs: x (batch, d + 1) float64 = (mu, t) -> nodal field (batch, n_out) float32.
    Bit for bit the network input of Scaling.inputs: (mu - lo) / (hi - lo) and t / t_end in float64,
    each rounded once to float32 (t - 0 is exact)."""

    def __init__(self, net: nn.Module, scaling):
        super().__init__()
        self.net = net
        lo, hi = np.asarray(scaling.lo, dtype=float), np.asarray(scaling.hi, dtype=float)
        self.register_buffer("shift", torch.tensor(np.append(lo, 0.0), dtype=torch.float64))
        self.register_buffer("scale", torch.tensor(np.append(hi - lo, scaling.t_end), dtype=torch.float64))

    def forward(self, x):
        return self.net(((x - self.shift) / self.scale).to(torch.float32))


def _surrogate(model, scaling) -> tuple[RawSurrogate, dict]:
    from surrogates.nn import load_model

    meta = {}
    if isinstance(model, (str, Path)):
        model, scaling, meta = load_model(model)
    elif isinstance(model, tuple):
        model, scaling = model[:2]
    if isinstance(model, RawSurrogate):
        return model, meta
    if not isinstance(model, nn.Module):
        raise TypeError(f"export_onnx: model of type {type(model).__name__}; expected a surrogate artefact path (.pt), "
                        "a surrogates.nn.MLP with its Scaling, or a RawSurrogate")
    if scaling is None:
        raise ValueError("export_onnx: a network without its Scaling; expected export_onnx((mlp, scaling), path) or "
                         "export_onnx(mlp, path, scaling=...) (the graph maps raw parameters)")
    return RawSurrogate(model, scaling), meta


def export_onnx(model, path, scaling=None, opset: int = 17) -> Path:
    """Write the surrogate as an ONNX model at `path` and return the path.

    model: a surrogate artefact (the .pt of train-online/train-offline, read by surrogates.nn.load_model),
    a (MLP, Scaling) pair, an MLP with scaling=..., or a RawSurrogate. Input `mu_t` (batch, d + 1) float64,
    output `u` (batch, n_out) float32, batch dynamic (module docstring). The file is checked by
    onnx.checker; the model's metadata record the input layout and, for an artefact, its meta (policy, mode)."""
    import onnx

    raw, meta = _surrogate(model, scaling)
    raw = raw.to("cpu").eval()
    n_in = int(raw.shift.shape[0])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(2, n_in, dtype=torch.float64)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter, chosen on purpose (docstring)
        torch.onnx.export(raw, (example,), str(path), input_names=[INPUT], output_names=[OUTPUT],
                          dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}}, opset_version=opset,
                          dynamo=False)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    props = {"romflow_input": f"{INPUT}: (batch, {n_in}) float64, the parameters then the time t (raw units)",
             "romflow_output": f"{OUTPUT}: (batch, n_nodes) float32 nodal field (raw units)",
             **{f"romflow_{k}": str(v) for k, v in meta.items()}}
    onnx.helper.set_model_props(proto, props)
    onnx.save(proto, str(path))
    return path
