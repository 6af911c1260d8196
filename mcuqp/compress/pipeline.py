"""`compress`: prune, fine-tune, quantization-aware train, and hand back a float module ready
for int8 export plus the learnt activation ranges — what `mcuqp compress` runs.

Prune specs ("method:value"):
  magnitude:S   per-layer magnitude pruning to sparsity S      global:S  one global threshold
  gradual:S     Zhu & Gupta gradual magnitude pruning          l1:LAMBDA L1-regularised training, then threshold
  taylor:S      first-order Taylor |g*w| weight pruning        obd:S     Optimal Brain Damage (empirical Fisher)
                (taylor and obd: iterative, global ranking, as in their papers)
  filter:R      L1-norm filter pruning (structured)            lasso:R   LASSO channel selection + LS refit
  correlation:R merge correlated channels                      taylor-filter:R / obd-filter:R  channel variants
S is the fraction of weights removed, R the fraction of channels removed (structured methods
produce a smaller dense network). Quantization: "int8" (QAT), "int4", "int2", "ternary",
"binary" (low-bit weights inside int8 QAT) or None (no QAT; plain PTQ at export).

`per_layer` maps a layer name to overrides: a weight kind ("int8", "ternary", ..., or None for
float before PTQ), or a dict with any of "quant", "sparsity" (unstructured methods), "ratio"
(structured methods, keyed by the channel space's first producer) and "binary_act" (True: the
layer's input is binarized; such a model trains but does not compile). For binary, ternary and
int2 the first and last layers stay int8 unless `per_layer` says otherwise, as in the
BinaryConnect, XNOR-Net and TWN papers.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mcuqp.compress import gradual, l1, magnitude, masks, obd, qat, structured, taylor
from mcuqp.compress.correlation import prune_correlation
from mcuqp.compress.lasso import prune_lasso
from mcuqp.compress.lowbit import BITS, KINDS
from mcuqp.compress.train import FitConfig, evaluate, fit
from mcuqp.errors import McuqpError
from mcuqp.quant.ptq import RANGES_ATTR

UNSTRUCTURED = ("magnitude", "global", "gradual", "taylor", "obd")
STRUCTURED = ("filter", "lasso", "correlation", "taylor-filter", "obd-filter")
METHODS = (*UNSTRUCTURED, "l1", *STRUCTURED)
LOW_BIT_KEEP_ENDS = ("binary", "ternary", "int2")


@dataclass(frozen=True)
class PruneSpec:
    method: str
    value: float

    @classmethod
    def parse(cls, spec: str) -> PruneSpec:
        method, sep, value = spec.partition(":")
        method = method.strip().lower()
        if method not in METHODS or not sep:
            raise McuqpError(f"bad prune spec {spec!r}: use METHOD:VALUE with METHOD one of {', '.join(METHODS)}")
        try:
            v = float(value)
        except ValueError:
            raise McuqpError(f"bad prune spec {spec!r}: {value!r} is not a number") from None
        if method == "l1":
            if not v > 0:
                raise McuqpError(f"bad prune spec {spec!r}: the L1 coefficient must be > 0")
        elif not 0.0 < v < 1.0:
            raise McuqpError(f"bad prune spec {spec!r}: the fraction to remove must be in (0, 1)")
        return cls(method, v)

    @property
    def structured(self) -> bool:
        return self.method in STRUCTURED


@dataclass
class LayerSummary:
    name: str
    kind: str  # conv, depthwise or linear
    params: int  # weights + biases
    nonzeros: int  # non-zero weights
    bits: int  # bits per weight
    bytes: int  # weights packed at `bits` + int32 biases
    biases: int = 0

    @property
    def sparsity(self) -> float:
        weights = self.params - self.biases
        return 1.0 - self.nonzeros / weights if weights else 0.0


@dataclass
class CompressResult:
    model: nn.Module  # plain float module: BN folded, quantized weights, pruned weights 0.0
    ranges: dict[str, tuple[float, float]] | None  # for ptq.quantize(..., ranges_override=)
    layers: list[LayerSummary]
    accuracy_before: float  # the float input model
    accuracy_after: float  # the final model, int8 activations simulated when quantized
    params_before: int
    prune: str | None = None
    quant: str | None = None
    stages: list[tuple[str, float]] = field(default_factory=list)  # (stage, test accuracy)

    @property
    def params_after(self) -> int:
        return sum(r.params for r in self.layers)

    @property
    def bytes(self) -> int:
        return sum(r.bytes for r in self.layers)


def _per_layer(per_layer: dict | None) -> dict[str, dict]:
    out = {}
    for name, v in (per_layer or {}).items():
        if v is None or isinstance(v, str):
            out[name] = {"quant": v}
        elif isinstance(v, dict):
            bad = set(v) - {"quant", "sparsity", "ratio", "binary_act"}
            if bad:
                raise McuqpError(f"per_layer[{name!r}]: unknown key {sorted(bad)[0]!r} (quant, sparsity, ratio, binary_act)")
            out[name] = dict(v)
        else:
            raise McuqpError(f"per_layer[{name!r}] must be a weight kind or a dict, got {type(v).__name__}")
    return out


def _resolve_amount(spec: PruneSpec, overrides: dict[str, dict], key: str, names: list[str]) -> float | dict[str, float]:
    given = {n: float(o[key]) for n, o in overrides.items() if key in o and o[key] is not None}
    if not given:
        return spec.value
    return {n: given.get(n, spec.value) for n in names}


def _prune(
    model: nn.Module, spec: PruneSpec, data, overrides: dict[str, dict], config: FitConfig
) -> nn.Module:
    """Apply the pruning method, including the training it needs, and fine-tune; returns the model."""
    x, y = data.x_train, data.y_train
    layers = list(masks.prunable_layers(model))
    example = torch.as_tensor(x[:1], dtype=torch.float32)
    m = spec.method
    if spec.structured:
        ratio = _resolve_amount(spec, overrides, "ratio", _space_keys(model, example))
        if m == "filter":
            model, _ = structured.prune_filters(model, example, ratio)
        elif m == "lasso":
            model, _ = prune_lasso(model, x, ratio, seed=config.seed)
        elif m == "correlation":
            model, _ = prune_correlation(model, x, ratio, seed=config.seed)
        elif m == "taylor-filter":
            model, _ = taylor.prune_taylor_channels(model, x, y, ratio)
        else:
            model, _ = obd.prune_obd_channels(model, x, y, ratio)
        return fit(model, x, y, config, description="fine-tune") if config.epochs else model
    sparsity = _resolve_amount(spec, overrides, "sparsity", layers)
    if m == "gradual":
        if config.epochs == 0:
            raise McuqpError("gradual pruning prunes while it trains: give at least one fine-tuning epoch")
        if isinstance(sparsity, dict):
            _gradual_per_layer(model, x, y, sparsity, config)
        else:
            gradual.prune_gradual(model, x, y, sparsity, config)
        return model
    if m == "l1":
        l1.prune_l1(model, x, y, spec.value, config)
    elif m == "magnitude":
        magnitude.prune_magnitude(model, sparsity)
    elif m == "global":
        if isinstance(sparsity, dict):
            raise McuqpError("global pruning takes one sparsity: per-layer sparsities need magnitude:S")
        magnitude.prune_magnitude(model, sparsity, scope="global")
    elif m in ("taylor", "obd"):
        return _prune_iterative(model, m, x, y, sparsity, config)
    return masks.finetune(model, x, y, config) if config.epochs else model


ITERATIVE_ROUNDS = 5
SCORE_SAMPLES = 2048  # training samples the Taylor / OBD scores are estimated on, each round


def _prune_iterative(model: nn.Module, method: str, x, y, sparsity: float | dict[str, float], config: FitConfig) -> nn.Module:
    """Taylor and OBD as their papers run them: score every weight, remove the lowest-scoring
    ones network-wide (the scores estimate the loss increase, so they compare across layers),
    retrain, and repeat with fresh scores — sparsity rising linearly over up to
    `ITERATIVE_ROUNDS` rounds that share the fine-tuning epochs. Per-layer sparsities (a dict)
    prune each layer to its own target instead of one global ranking. Scores are estimated on
    the first `SCORE_SAMPLES` training samples (the split is already shuffled)."""
    score_fn = taylor.taylor_scores if method == "taylor" else obd.obd_scores
    scope = "layer" if isinstance(sparsity, dict) else "global"
    rounds = min(ITERATIVE_ROUNDS, max(1, config.epochs))
    layers = masks.prunable_layers(model)
    for k in range(1, rounds + 1):
        target = ({n: s * k / rounds for n, s in sparsity.items()} if isinstance(sparsity, dict)
                  else sparsity * k / rounds)
        scores = score_fn(model, x[:SCORE_SAMPLES], y[:SCORE_SAMPLES])
        for name, sc in scores.items():  # weights pruned in earlier rounds stay pruned, first in line
            mask = masks.get_mask(layers[name])
            if mask is not None:
                sc[~mask] = -1.0
        masks.apply_masks(model, masks.masks_from_scores(scores, target, scope=scope))
        epochs = config.epochs * k // rounds - config.epochs * (k - 1) // rounds
        if epochs:
            round_config = dataclasses.replace(config, epochs=epochs, seed=config.seed + k - 1)
            masks.finetune(model, x, y, round_config, description=f"{method} round {k}/{rounds}")
    return model


def _gradual_per_layer(model, x, y, sparsity: dict[str, float], config: FitConfig) -> None:
    """Gradual pruning with a different final sparsity per layer: one schedule per layer."""
    steps = config.epochs * math.ceil(len(x) / config.batch_size)
    schedules = {n: gradual.schedule_for(s, steps) for n, s in sparsity.items() if s > 0}
    hooks = [sch.hook([n]) for n, sch in schedules.items()]
    masks.finetune(model, x, y, config, after_step=masks.chain(*hooks), description="gradual prune")


def _space_keys(model: nn.Module, example: torch.Tensor) -> list[str]:
    from mcuqp.compress.channels import analyze

    return [s.key for s in analyze(model, example).prunable()]


def _quant_kinds(model: nn.Module, quant: str, overrides: dict[str, dict]) -> dict[str, str | None]:
    """Per-layer weight kinds: `quant` everywhere, first/last layers int8 for the very low-bit
    kinds, then the user's overrides."""
    names = list(masks.prunable_layers(model))
    kinds: dict[str, str | None] = {}
    if quant in LOW_BIT_KEEP_ENDS and len(names) > 2:
        kinds[names[0]] = "int8"
        kinds[names[-1]] = "int8"
    for n, o in overrides.items():
        if "quant" in o:
            kinds[n] = o["quant"]
    return kinds


def _layer_rows(model: nn.Module, kinds: dict[str, str | None], default: str | None) -> list[LayerSummary]:
    rows = []
    for name, m in masks.prunable_layers(model).items():
        kind = "linear" if isinstance(m, nn.Linear) else ("depthwise" if m.groups > 1 else "conv")
        w = m.weight.detach()
        nb = w.shape[0]  # the int8 graph has a bias per output channel (batch norm folds into it)
        k = kinds.get(name, default)
        bits = BITS[k] if k is not None else 8
        rows.append(LayerSummary(name, kind, w.numel() + nb, int((w != 0).sum()), bits,
                                 math.ceil(w.numel() * bits / 8) + 4 * nb, nb))
    return rows


def _params(model: nn.Module) -> int:
    """Weights and per-channel biases of the int8 graph (batch norm folded)."""
    return sum(m.weight.numel() + m.weight.shape[0] for m in masks.prunable_layers(model).values())


def compress(
    model: nn.Module,
    dataset,
    *,
    prune: str | None = None,
    quant: str | None = "int8",
    per_layer: dict | None = None,
    finetune_epochs: int = 5,
    progress: bool = False,
    lr: float = 3e-3,
    batch_size: int = 64,
    seed: int = 0,
) -> CompressResult:
    """Compress a trained float `model` on `dataset` (a name for `load_dataset` or a Dataset).

    Each stage (pruning, quantization-aware training) fine-tunes `finetune_epochs` epochs with
    Adam at `lr`. Accuracies are top-1 on the dataset's test split."""
    from mcuqp.datasets import Dataset, load_dataset

    data = dataset if isinstance(dataset, Dataset) else load_dataset(str(dataset), seed=0)
    if finetune_epochs < 0:
        raise McuqpError(f"finetune_epochs must be >= 0, got {finetune_epochs}")
    if quant is not None and quant not in KINDS:
        raise McuqpError(f"unknown quantization {quant!r}: choose one of {', '.join(KINDS)}")
    spec = PruneSpec.parse(prune) if prune else None
    overrides = _per_layer(per_layer)
    layer_names = set(masks.prunable_layers(model))
    for name, o in overrides.items():
        if name not in layer_names and not ("ratio" in o and set(o) == {"ratio"}):
            raise McuqpError(f"per_layer: no Conv2d/Linear layer named {name!r}; layers are: {', '.join(sorted(layer_names))}")
    config = FitConfig(epochs=finetune_epochs, lr=lr, batch_size=batch_size, seed=seed, progress=progress)
    model = copy.deepcopy(model).eval()
    params_before = _params(model)
    acc_before = evaluate(model, data.x_test, data.y_test)
    stages: list[tuple[str, float]] = [("float", acc_before)]
    if spec is not None:
        model = _prune(model, spec, data, overrides, config)
        stages.append((f"pruned ({prune})", evaluate(model, data.x_test, data.y_test)))
    ranges = None
    kinds: dict[str, str | None] = {}
    if quant is not None:
        kinds = _quant_kinds(model, quant, overrides)
        binary_act = [n for n, o in overrides.items() if o.get("binary_act")]
        qm = qat.prepare_qat(model, data.x_train[:1], weight=quant, per_layer=kinds, binary_act=binary_act)
        if finetune_epochs:
            qat.train_qat(qm, data.x_train, data.y_train, config)
        else:
            _calibrate(qm, data.x_train)
        acc = evaluate(qm, data.x_test, data.y_test)
        stages.append((f"{quant} QAT (int8 activations simulated)", acc))
        ranges = qat.qat_ranges(qm)
        model = qat.strip_qat(qm)
    model.eval()
    acc_after = stages[-1][1]
    rows = _layer_rows(model, kinds, quant)
    return CompressResult(model, ranges, rows, acc_before, acc_after, params_before, prune, quant, stages)


@torch.no_grad()
def _calibrate(qm: nn.Module, x: np.ndarray, batch_size: int = 64, batches: int = 8) -> None:
    """Without fine-tuning, still learn the activation ranges (batch norm frozen)."""
    qat.freeze_bn(qm)
    qm.train()
    xt = torch.as_tensor(x, dtype=torch.float32)
    for i in range(min(batches, math.ceil(len(xt) / batch_size))):
        qm(xt[i * batch_size : (i + 1) * batch_size])
    qm.eval()


def format_summary(result: CompressResult) -> str:
    """The per-layer table and the accuracy of each stage, as printable text."""
    head = ("layer", "kind", "params", "nonzero", "sparsity", "bits", "bytes")
    rows = [head]
    for r in result.layers:
        rows.append((r.name, r.kind, f"{r.params:,}", f"{r.nonzeros:,}", f"{r.sparsity * 100:.1f} %", str(r.bits), f"{r.bytes:,}"))
    nz = sum(r.nonzeros for r in result.layers)
    weights = sum(r.params - r.biases for r in result.layers)
    rows.append(("total", "", f"{result.params_after:,}", f"{nz:,}", f"{(1 - nz / max(weights, 1)) * 100:.1f} %", "",
                 f"{result.bytes:,}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.insert(len(lines) - 1, "  ".join("-" * w for w in widths))
    lines.append("")
    lines.append(f"parameters {result.params_before:,} -> {result.params_after:,} "
                 "(bytes: weights packed at their bit width + int32 biases; the int8 C stores 1 byte per weight)")
    for stage, acc in result.stages:
        lines.append(f"accuracy {stage}: {acc * 100:.2f} %")
    return "\n".join(lines)


def save_compressed(result: CompressResult, path: str | Path) -> Path:
    """torch.save the compressed module, with its learnt activation ranges attached so
    that `mcuqp compile/verify` quantize with them instead of recalibrating. Written to a
    temporary file and renamed into place."""
    return save_module(result.model, result.ranges, path)


def save_module(module: nn.Module, ranges: dict | None, path: str | Path) -> Path:
    """torch.save `module` with `ranges` attached (see `save_compressed`), atomically."""
    if isinstance(module, torch.fx.GraphModule):
        # Postponed annotations become string globals that GraphModule cannot pickle.
        for node in module.graph.nodes:
            node.type = None
        module.recompile()
    setattr(module, RANGES_ATTR, dict(ranges) if ranges else None)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        torch.save(module, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
