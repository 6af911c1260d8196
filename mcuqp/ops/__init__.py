"""Every integer op in one module each (`mcuqp/ops/<op>.py`), found by the registry.

`from mcuqp.ops import registry; registry.get(op.kind)` gives an op's `OpDef`."""
