"""Packed weight formats against dense int8: flash bytes of the weights (and indices) in the
linked image and executed instructions per inference on QEMU, for three layers:

- FC 256 x 256 (one input row),
- conv 3x3, 32 -> 32 channels on a 16 x 16 input (SAME padding),
- depthwise 3x3 on 32 x 32 x 32 (SAME padding),

each as dense int8, sparse int8 at densities 100 / 50 / 25 / 10 / 5 % (random unstructured
pruning), int4, ternary (2/3 nonzero), binary and fully binary (binary weights after SIGN;
FC and conv). Every variant of a layer runs in one firmware per board on the same input
(random int8, or -1 / +1 for fully binary) with the board's kernel variants (DSP where
the board has it), and every output is checked bit for bit against its numpy twin.

Bytes are the sizes of the filter's const arrays (values = "weight", column / tap indices
and per-row counts = "index") read from the linked ELF's symbol table with pyelftools;
the per-channel requantization (multipliers + shifts) and bias are the same for every
format and reported once. Instructions are those of the layer's kernel call (the QEMU
counting plugin, between the layer hooks).

Writes benchmarks/results/packed.json and benchmarks/results/packed.md (the README table).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
BOARDS = ("mps2-an386", "mps3-an547")
DENSITIES = (1.0, 0.5, 0.25, 0.1, 0.05)
SEED = 0


def _layers(rng: np.random.Generator):
    """(name, op, x_shape, dense int8 weights, bias, attrs) of the three benchmark layers."""
    from mcuqp.ir import Padding
    from mcuqp.ops.conv2d import ConvAttrs
    from mcuqp.ops.fully_connected import FullyConnectedAttrs
    from mcuqp.ops.common import conv_requant

    def rq(cout: int, taps: int):
        w_scales = (0.004 * 2.0 ** rng.uniform(-1, 1, cout)).astype(np.float32)
        return conv_requant(0.05, w_scales, 0.05 * 0.004 * np.sqrt(taps) * 74 * 74 / 40, "double")

    fc = FullyConnectedAttrs(input_offset=3, output_offset=-5, requant=rq(256, 256))
    conv = ConvAttrs(stride=(1, 1), padding=Padding(1, 1, 1, 1), input_offset=3, output_offset=-5,
                     requant=rq(32, 288))
    dw = ConvAttrs(stride=(1, 1), padding=Padding(1, 1, 1, 1), input_offset=3, output_offset=-5,
                   requant=rq(32, 9))
    i8 = lambda shape: rng.integers(-127, 128, shape).astype(np.int8)  # noqa: E731
    b = lambda n: rng.integers(-20000, 20000, n).astype(np.int32)  # noqa: E731
    return [
        ("fc 256x256", "fc", (1, 256), i8((256, 256)), b(256), fc),
        ("conv 3x3 32->32 @16x16", "conv2d", (1, 16, 16, 32), i8((32, 3, 3, 32)), b(32), conv),
        ("depthwise 3x3 @32x32x32", "depthwise", (1, 32, 32, 32), i8((1, 3, 3, 32)), b(32), dw),
    ]


def _variants(rng: np.random.Generator, op: str, w: np.ndarray):
    """(format, label, density, effective weights) of every variant of a layer."""
    from mcuqp.codegen.packed import FORMATS

    out = [("dense", "int8 dense", 1.0, w)]
    flat = np.abs(w.astype(np.int32)).ravel() + rng.random(w.size)  # magnitude, ties broken at random
    order = np.argsort(-flat)
    for d in DENSITIES:
        keep = np.zeros(w.size, bool)
        keep[order[: int(round(d * w.size))]] = True
        out.append(("sparse", f"sparse {d:.0%}", d, np.where(keep.reshape(w.shape), w, 0).astype(np.int8)))
    out.append(("int4", "int4", 1.0, rng.integers(-8, 8, w.shape).astype(np.int8)))
    tern = rng.integers(-1, 2, w.shape).astype(np.int8)
    out.append(("ternary", "ternary", float(np.count_nonzero(tern)) / tern.size, tern))
    sign = np.where(rng.random(w.shape) < 0.5, -1, 1).astype(np.int8)
    out.append(("binary", "binary", 1.0, sign))
    if "xnor" in FORMATS[op]:
        out.append(("xnor", "fully binary", 1.0, sign))
    return out


def _symbol_sizes(elf: Path) -> dict[str, int]:
    from elftools.elf.elffile import ELFFile

    with open(elf, "rb") as f:
        symtab = ELFFile(f).get_section_by_name(".symtab")
        return {s.name: int(s["st_size"]) for s in symtab.iter_symbols() if s["st_info"]["type"] == "STT_OBJECT"}


def run(boards=BOARDS) -> list[dict]:
    from dataclasses import replace

    from mcuqp.codegen.packed import PackedLayer, kernel_sources, model_source, weight_symbols
    from mcuqp.target import build, qemu
    from mcuqp.target.boards import load_board

    rng = np.random.default_rng(SEED)
    records = []
    for name, op, x_shape, w, bias, attrs in _layers(rng):
        variants = _variants(rng, op, w)
        x = rng.integers(-128, 128, x_shape).astype(np.int8)
        xs = np.where(rng.random(x_shape) < 0.5, -1, 1).astype(np.int8)
        layers, inputs = [], []
        for fmt, _label, _d, wv in variants:
            a = replace(attrs, input_offset=0) if fmt == "xnor" else attrs
            layers.append(PackedLayer(op, fmt, x_shape, wv, bias, a))
        for board in boards:
            feats = load_board(board).features
            # fully binary layers need -1 / +1 inputs: they run in a firmware of their own
            groups = [[i for i, ly in enumerate(layers) if ly.fmt != "xnor"],
                      [i for i, ly in enumerate(layers) if ly.fmt == "xnor"]]
            for group in filter(None, groups):
                lys = [layers[i] for i in group]
                xin = xs if lys[0].fmt == "xnor" else x
                outs = [ly.reference(xin) for ly in lys]
                for ly, o in zip(lys, outs):  # the twins equal the dense reference
                    assert np.array_equal(o, ly.dense_reference(xin)), (name, ly.fmt)
                with tempfile.TemporaryDirectory(prefix="mcuqp-packed-") as tmp:
                    t = Path(tmp)
                    src, hdr = model_source(lys, [o.shape for o in outs], shared_input=True)
                    (t / "model.c").write_text(src)
                    (t / "model.h").write_text(hdr)
                    srcs = [t / "model.c", *kernel_sources(lys, build.RUNTIME_DIR / "src", "dsp" in feats),
                            *build.platform_sources(board)]
                    fw = build.build_firmware(srcs, [t, build.INCLUDE_DIR], board, t / "fw")
                    r = qemu.run_firmware(fw, board, xin.reshape(1, -1), sum(o.size for o in outs))
                    want = np.concatenate([o.ravel() for o in outs])
                    if not np.array_equal(r.outputs[0], want):
                        raise SystemExit(f"{name} on {board}: device output differs from the numpy twins")
                    sizes = _symbol_sizes(fw.elf)
                for k, (i, ly) in enumerate(zip(group, lys)):
                    fmt, label, density, _ = variants[i]
                    syms = weight_symbols(f"w{k}", ly)
                    records.append({
                        "layer": name, "format": fmt, "variant": label, "density": round(density, 4),
                        "board": board,
                        "weight_bytes": sum(sizes[s] for s, kind in syms.items() if kind == "weight"),
                        "index_bytes": sum(sizes[s] for s, kind in syms.items() if kind == "index"),
                        "scale_bytes": sizes[f"m{k}"] + sizes[f"s{k}"], "bias_bytes": sizes[f"b{k}"],
                        "scratch_bytes": ly.scratch_bytes(),
                        "instructions": int(r.layer_instructions[0][k]),
                        "macs": ly.macs(int(outs[k].size)), "bit_exact": True,
                    })
            print(f"{name} on {board}: done", file=sys.stderr)
    _ratios(records)
    return records


def _ratios(records: list[dict]) -> None:
    dense = {(r["layer"], r["board"]): r for r in records if r["format"] == "dense"}
    for r in records:
        d = dense[(r["layer"], r["board"])]
        r["bytes_vs_dense"] = round((r["weight_bytes"] + r["index_bytes"]) / d["weight_bytes"], 4)
        r["instructions_vs_dense"] = round(r["instructions"] / d["instructions"], 4)


CPU = {"mps2-an386": "M4", "mps3-an547": "M55", "mps2-an385": "M3", "mps2-an500": "M7"}


def markdown(records: list[dict]) -> str:
    boards = list(dict.fromkeys(r["board"] for r in records))
    head = "| layer | format | weight + index bytes | vs int8 |" + "".join(
        f" instr. {CPU.get(b, b)} | vs int8 |" for b in boards)
    rows = [head, "|" + "---|" * (4 + 2 * len(boards))]
    by = {(r["layer"], r["variant"], r["board"]): r for r in records}
    for layer, variant in dict.fromkeys((r["layer"], r["variant"]) for r in records):
        ref = next(by[(layer, variant, b)] for b in boards if (layer, variant, b) in by)
        cells = [layer, variant, f"{ref['weight_bytes']:,} + {ref['index_bytes']:,}", f"{ref['bytes_vs_dense']:.3f}"]
        for b in boards:
            r = by.get((layer, variant, b))
            cells += [f"{r['instructions']:,}", f"{r['instructions_vs_dense']:.3f}"] if r else ["-", "-"]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--boards", nargs="*", default=list(BOARDS))
    args = ap.parse_args(argv)
    t0 = time.time()
    records = run(tuple(args.boards))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "packed.json").write_text(json.dumps(records, indent=1) + "\n")
    md = markdown(records)
    (RESULTS / "packed.md").write_text(md)
    print(md)
    print(f"{len(records)} rows in {time.time() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
