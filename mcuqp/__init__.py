"""mcuqp: compress small neural networks and generate bit-exact int8 C for Arm Cortex-M.

The Python API (see mcuqp/api.py) is reachable from the package:

    import mcuqp
    model = mcuqp.load("net.pt", calib="digits")
    mcuqp.compile(model, "out/", board="mps2-an386")
    print(mcuqp.verify(model, n_inputs=20).to_dict())

It is imported on first use, so `import mcuqp` alone stays cheap.
"""
__version__ = "0.1.0"

_API = ("load", "compile", "verify", "plan", "compress", "report", "boards", "LoadedModel", "CompileResult",
        "VerifyResult", "PlanResult", "CompressResult", "ReportResult")
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        from mcuqp import api

        return getattr(api, name)
    raise AttributeError(f"module 'mcuqp' has no attribute {name!r}")
