"""The search space: what a trial may change in the network, and how Optuna samples it.

Per layer (every Conv2d / Linear): the weight format and the fraction of weights pruned
(unstructured); per channel space (structured pruning, `compress/channels.py`): the fraction
of channels kept; for the whole model: the memory plan (`--plan smallest`: depthwise and 1x1
convolutions in place where that lowers the arena, or `fastest`). Parameter names are stable strings ("format:<layer>", ...) so that a
study stored in a database can be resumed by another process or machine.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from mcuqp.compress import masks
from mcuqp.compress.channels import analyze

# Weight formats a layer may take: the name `compress` knows. Each is trained as such and
# stored packed in the same format by the generated C (mcuqp.search.trial.lowbit_formats), so
# the measured flash shrinks with it.
FORMATS: tuple[str, ...] = ("int8", "int4", "ternary", "binary")
# The first and last layers carry the input and the logits; like the low-bit papers, they
# keep a multi-bit format.
END_FORMATS: tuple[str, ...] = ("int8", "int4")
# Sparse storage is not a separate choice: the code generator stores a pruned int8 layer in the
# packed sparse format where that is faster or needed to fit the flash budget
# (mcuqp/plan/formats.py), so the per-layer sparsity dimension is the sparse density.
PACKED_SPARSE_FORMATS: tuple[str, ...] = ()

# The memory plans a trial may take (`--plan`; "auto" is one of the two, decided by the RAM budget).
PLANS: tuple[str, ...] = ("smallest", "fastest")

SPARSITY_STEP = 0.1
MAX_SPARSITY = 0.9
WIDTH_STEP = 0.05
MIN_WIDTH = 0.1


def plan_of(params: dict) -> str:
    """The plan of stored trial parameters (studies from before `--plan` stored "inplace")."""
    if "plan" in params:
        return str(params["plan"])
    return "smallest" if params.get("inplace", True) else "fastest"


@dataclass(frozen=True)
class Config:
    """One point of the space: everything a trial needs to build its model."""

    formats: dict[str, str]  # layer -> weight format
    sparsity: dict[str, float]  # layer -> fraction of weights removed
    width: dict[str, float]  # channel space key -> fraction of channels kept
    plan: str = "smallest"  # the memory plan (`--plan`): "smallest" (in place where it helps) or "fastest"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


@dataclass
class Space:
    layers: list[str]  # Conv2d / Linear layers, in definition order
    channel_spaces: list[str]  # prunable channel spaces (keys), in topological order
    channel_sizes: dict[str, int] = field(default_factory=dict)
    formats: tuple[str, ...] = FORMATS  # the weight formats offered (a subset of FORMATS)
    max_sparsity: float = MAX_SPARSITY  # 0: no unstructured pruning

    @classmethod
    def of(cls, model: nn.Module, example: torch.Tensor, *, formats: tuple[str, ...] = FORMATS,
           max_sparsity: float = MAX_SPARSITY) -> Space:
        layers = list(masks.prunable_layers(model))
        spaces = analyze(model, example).prunable()
        return cls(layers, [s.key for s in spaces], {s.key: s.size for s in spaces}, tuple(formats), max_sparsity)

    def formats_for(self, layer: str) -> tuple[str, ...]:
        ends = (self.layers[0], self.layers[-1])
        allowed = tuple(f for f in (END_FORMATS if layer in ends else FORMATS) if f in self.formats)
        return (allowed or ("int8",)) + PACKED_SPARSE_FORMATS

    def suggest(self, trial) -> Config:
        """Sample a Config with an optuna.Trial (a dimension with one choice is not sampled)."""
        formats = {n: self._choice(trial, f"format:{n}", self.formats_for(n)) for n in self.layers}
        sparsity = {n: (trial.suggest_float(f"sparsity:{n}", 0.0, self.max_sparsity, step=SPARSITY_STEP)
                        if self.max_sparsity > 0 else 0.0) for n in self.layers}
        width = {k: trial.suggest_float(f"width:{k}", MIN_WIDTH, 1.0, step=WIDTH_STEP) for k in self.channel_spaces}
        plan = trial.suggest_categorical("plan", PLANS)
        return Config(formats, sparsity, width, plan)

    def seeds(self) -> list[tuple[str, str | None]]:
        """(format, end format) of the uniform starting points the space offers: int8 (the
        baseline), int4 everywhere, ternary between int4 ends. Not int8 ends: a model mixing
        dense and packed layers links both kernel sets (on MNIST-5k at width 0.45,
        ternary/int8 ends takes 24.2 KB of flash, ternary/int4 ends 16.3 KB, int8 18.9 KB)."""
        out: list[tuple[str, str | None]] = [("int8", None)]
        if "int4" in self.formats:
            out.append(("int4", None))
            if "ternary" in self.formats:
                out.append(("ternary", "int4"))
        return out

    @staticmethod
    def _choice(trial, name: str, choices: tuple[str, ...]) -> str:
        return choices[0] if len(choices) == 1 else trial.suggest_categorical(name, choices)

    def uniform(self, width: float, *, plan: str = "smallest", fmt: str = "int8", ends: str | None = None) -> dict:
        """Optuna parameters of the network shrunk uniformly: dense, every channel space at
        `width`, every layer in `fmt` (the first and last in `ends`, default `fmt`) where the
        space offers it, int8 elsewhere (enqueued as the first trials of a new study)."""
        w = round(round(width / WIDTH_STEP) * WIDTH_STEP, 4)
        edge = (self.layers[0], self.layers[-1])
        want = {n: (ends or fmt) if n in edge else fmt for n in self.layers}
        params: dict = {f"format:{n}": want[n] if want[n] in self.formats_for(n) else "int8"
                        for n in self.layers if len(self.formats_for(n)) > 1}
        if self.max_sparsity > 0:
            params.update({f"sparsity:{n}": 0.0 for n in self.layers})
        params.update({f"width:{k}": min(1.0, max(MIN_WIDTH, w)) for k in self.channel_spaces})
        params["plan"] = plan
        return params

    @staticmethod
    def config_of(params: dict) -> Config:
        """The Config of a stored trial's parameters."""
        formats = {k.split(":", 1)[1]: v for k, v in params.items() if k.startswith("format:")}  # others int8
        sparsity = {k.split(":", 1)[1]: float(v) for k, v in params.items() if k.startswith("sparsity:")}
        width = {k.split(":", 1)[1]: float(v) for k, v in params.items() if k.startswith("width:")}
        return Config(formats, sparsity, width, plan_of(params))
