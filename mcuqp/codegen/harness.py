"""The firmware API (NAME_input / NAME_output / NAME_invoke, NAME_INPUT_SIZE...) around a
hand-written layer sequence, so that kernel tests and benchmarks that lay out their own
buffers run in the verification firmware like a generated model does.

The layer sequence is a C function `static int LAYERS(const int8_t *input, int8_t *output)`
that returns 0 or 1 + the failing layer; here it gets an input and an output buffer of its
own (a generated model has none: its tensors live in the arena).
"""
from __future__ import annotations

LAYERS = "run_layers"


def api_header(input_size: int, output_size: int, name: str = "model") -> str:
    """NAME.h declaring the generated API for these sizes."""
    up = name.upper()
    return (f"#ifndef {up}_H\n#define {up}_H\n#include <stdint.h>\n"
            f"#define {up}_INPUT_SIZE {input_size}\n#define {up}_OUTPUT_SIZE {output_size}\n"
            f"int8_t *{name}_input(void);\nconst int8_t *{name}_output(void);\nint {name}_invoke(void);\n#endif\n")


def api_source(input_size: int, output_size: int, name: str = "model") -> str:
    """The definitions of the API (to append after the `LAYERS` function)."""
    return (f"\nstatic int8_t {name}_in[{max(input_size, 1)}] __attribute__((aligned(16)));\n"
            f"static int8_t {name}_out[{max(output_size, 1)}] __attribute__((aligned(16)));\n\n"
            f"int8_t *{name}_input(void)\n{{\n    return {name}_in;\n}}\n\n"
            f"const int8_t *{name}_output(void)\n{{\n    return {name}_out;\n}}\n\n"
            f"int {name}_invoke(void)\n{{\n    return {LAYERS}({name}_in, {name}_out);\n}}\n")
