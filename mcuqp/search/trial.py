"""One trial: shrink the network as a Config says, fine-tune it briefly, and measure it.

Accuracy is the int8 graph on the numpy reference (bit-exact with the firmware) over the
validation split; flash, RAM and instructions are what `mcuqp verify` measures on the board's
QEMU stand-in after linking, with each layer trained in a low-bit format stored packed in it
(so int4 halves its weight bytes, ternary and binary take 2 and 1 bits a weight) and the
code generator free to store pruned int8 layers sparse to meet the flash budget. A model too large for the board's memories is not linked: its
footprint is the prediction `compile` makes before building.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mcuqp import api
from mcuqp.compress import magnitude, structured
from mcuqp.compress.pipeline import RANGES_ATTR, compress
from mcuqp.datasets import Dataset
from mcuqp.errors import BudgetError
from mcuqp.ir import Graph
from mcuqp.plan import formats
from mcuqp.quant.ptq import quantize_input
from mcuqp.reference.interpreter import run as reference_run
from mcuqp.search.space import Config

VERIFY_INPUTS = 2  # inputs run on QEMU per trial: enough for the instruction count
LOWBIT = ("binary", "ternary", "int4")  # packed low-bit formats, smallest first


@dataclass
class Budget:
    flash_bytes: int
    ram_bytes: int
    instructions: int | None = None

    def violations(self, flash: int, ram: int, instructions: int | None) -> dict[str, float]:
        """Bytes (instructions) over each budget: Optuna constraint values, <= 0 is within."""
        out = {"flash": float(flash - self.flash_bytes), "ram": float(ram - self.ram_bytes)}
        if self.instructions is not None:
            # A model too large for the board was not run: it is over this budget too.
            out["instructions"] = float(self.instructions if instructions is None else instructions - self.instructions)
        return out


@dataclass
class Measurement:
    accuracy: float  # int8 reference, validation split
    flash_bytes: int
    ram_bytes: int
    instructions_per_inference: int | None  # None when the model did not fit the board at all
    measured: bool  # True: linked and run on QEMU; False: predicted (larger than the board)
    bit_exact: bool | None


def shrink(model: nn.Module, config: Config, example: torch.Tensor) -> nn.Module:
    """Remove channels (L1-norm filter ranking) and prune weights by magnitude, per layer."""
    model = copy.deepcopy(model).eval()
    ratios = {k: round(1.0 - w, 6) for k, w in config.width.items() if w < 1.0}
    if ratios:
        model, _ = structured.prune_filters(model, example, ratios)
    sparsity = {n: s for n, s in config.sparsity.items() if s > 0}
    if sparsity:
        magnitude.prune_magnitude(model, sparsity)
    return model


def train(model: nn.Module, config: Config, data: Dataset, *, epochs: int, seed: int) -> nn.Module:
    """Fine-tune with the per-layer weight formats (quantization-aware, int8 activations);
    the returned module carries its activation ranges for `compile` / `verify`."""
    example = torch.as_tensor(data.x_train[:1], dtype=torch.float32)
    small = shrink(model, config, example)
    result = compress(small, data, prune=None, quant="int8", per_layer=dict(config.formats),
                      finetune_epochs=epochs, seed=seed)
    module = result.model
    setattr(module, RANGES_ATTR, dict(result.ranges) if result.ranges else None)
    return module


def int8_accuracy(loaded: api.LoadedModel, x: np.ndarray, y: np.ndarray) -> float:
    logits = reference_run(loaded.graph, quantize_input(loaded.graph, x))
    return float((logits.reshape(len(x), -1).argmax(1) == y).mean())


def lowbit_formats(graph: Graph) -> dict[str, str]:
    """Layer name -> the smallest packed low-bit format (int4, ternary, binary) its effective
    int8 weights allow: how a layer trained in a low-bit format is stored. A layer trained
    int8 allows none of them and is left to the code generator (dense, or sparse where its
    pruned weights make that faster or are needed to fit the flash budget)."""
    out = {}
    for i, op in enumerate(graph.ops):
        low = [f for f in formats.allowed(graph, op) if f in LOWBIT]
        if low:
            out[op.name] = min(low, key=lambda f: (formats.layer_format(graph, op, f).flash_bytes, LOWBIT.index(f)))
    return out


# A format's weight levels: how an untrained layer's int8 weights are brought into it, to
# measure the footprint of a configuration before training it (sizes do not depend on values).
_LEVELS = {"int4": lambda w: np.clip(w, -8, 7), "ternary": np.sign,
           "binary": lambda w: np.where(w >= 0, 1, -1)}


def predicted_footprint(module: nn.Module, config: Config, calib: str, board: str, layers: list[str]):
    """The predicted footprint of `config` applied to the untrained `module` (already
    shrunk), each low-bit layer stored in its format. `layers`: the space's layers, in the
    order of the graph's layers with weights."""
    loaded = api.load(module, calib=calib)
    graph = loaded.graph
    names = list(formats.layer_names(graph))
    if len(names) != len(layers):
        raise ValueError(f"{len(names)} layers with weights in the graph, {len(layers)} in the space")
    fmts = {op: config.formats.get(n, "int8") for op, n in zip(names, layers) if config.formats.get(n, "int8") in _LEVELS}
    tensors = dict(graph.tensors)
    for op_name, fmt in fmts.items():
        op = graph.ops[formats.layer_names(graph)[op_name]]
        t = tensors[op.inputs[1]]
        tensors[op.inputs[1]] = dataclasses.replace(t, data=_LEVELS[fmt](t.data).astype(np.int8))
    graph = dataclasses.replace(graph, tensors=tensors)
    return api.footprint(graph, board=board, plan=config.plan, formats=fmts or None)


def measure(module: nn.Module, config: Config, data: Dataset, calib: str, board: str,
            flash_bytes: int | None = None) -> Measurement:
    """`flash_bytes`: the flash budget the code generator chooses weight formats for (and the
    linker script's flash length); None: the board's flash. A model over that budget is still
    linked and run with the board's flash (measured, never clipped) when it fits the board."""
    loaded = api.load(module, calib=calib)
    acc = int8_accuracy(loaded, data.x_test, data.y_test)
    fmts = lowbit_formats(loaded.graph) or None
    try:
        try:
            res = api.verify(loaded, board=board, n_inputs=VERIFY_INPUTS, plan=config.plan, formats=fmts,
                             flash_bytes=flash_bytes)
        except BudgetError:
            if flash_bytes is None:
                raise
            res = api.verify(loaded, board=board, n_inputs=VERIFY_INPUTS, plan=config.plan, formats=fmts)
    except BudgetError:
        fp = api.footprint(loaded, board=board, plan=config.plan, formats=fmts)
        return Measurement(acc, fp.flash_bytes, fp.ram_bytes, None, measured=False, bit_exact=None)
    return Measurement(acc, res.flash_bytes, res.ram_bytes, res.instructions_per_inference,
                       measured=True, bit_exact=res.bit_exact)
