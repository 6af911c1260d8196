import pytest

import hostlib
import prereq


@pytest.fixture(scope="session")
def runtime():
    """The portable C runtime compiled for the host (-Wall -Wextra -Werror), via ctypes."""
    return hostlib.load_runtime()


@pytest.fixture(scope="session")
def runtime_single_rounding():
    return hostlib.load_runtime(("MCUQP_SINGLE_ROUNDING=1",))


def pytest_runtest_setup(item):
    """`qemu` tests need the arm toolchain and QEMU; `@pytest.mark.tools(...)` names other
    programs. Missing: skip with a reason locally, fail when CI is set (prereq.missing)."""
    if "qemu" in item.keywords:
        prereq.require_tools(*prereq.QEMU_TOOLS)
    for mark in item.iter_markers("tools"):
        prereq.require_tools(*mark.args)


def pytest_configure(config):
    # The tests train tiny models: torch's intra-op threads only contend with each other
    # (and with the other pytest work) on a 2-core machine.
    import torch

    torch.set_num_threads(1)
