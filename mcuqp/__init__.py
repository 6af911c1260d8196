"""mcuqp: compress small neural networks and generate bit-exact int8 C for Arm Cortex-M.

The Python API (mcuqp/api.py) is reachable from the package:

    import mcuqp
    model = mcuqp.load("net.pt", calib="digits")
    mcuqp.compile(model, "out/", board="mps2-an386")
    mcuqp.export(model, "model.tflite")                     # the same integers as a .tflite
    print(mcuqp.verify(model, n_inputs=20).to_dict())

The API module is imported on first use, so `import mcuqp` alone stays cheap.
"""
import importlib
import types

__version__ = "0.1.0"

_API = ("load", "compile", "verify", "plan", "compress", "report", "export", "boards", "LoadedModel", "CompileResult",
        "VerifyResult", "PlanResult", "CompressResult", "ReportResult", "ExportResult")
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        from mcuqp import api

        return getattr(api, name)
    raise AttributeError(f"module 'mcuqp' has no attribute {name!r}")


class _CallableSubpackage(types.ModuleType):
    """`mcuqp.plan`, `mcuqp.compress` and `mcuqp.export` are subpackages and API functions at once: once a
    subpackage is imported, the import system binds its name on this package, so the
    function cannot simply be an attribute. Calling the subpackage calls the function."""

    def __call__(self, *args, **kwargs):
        from mcuqp import api

        return getattr(api, self.__name__.rpartition(".")[2])(*args, **kwargs)


for _name in ("plan", "compress", "export"):  # the subpackages' __init__ are empty: importing them costs nothing
    importlib.import_module(f"{__name__}.{_name}").__class__ = _CallableSubpackage
