import os
import shutil

import pytest

import hostlib


@pytest.fixture(scope="session")
def runtime():
    """The portable C runtime compiled for the host (-Wall -Wextra -Werror), via ctypes."""
    return hostlib.load_runtime()


@pytest.fixture(scope="session")
def runtime_single_rounding():
    return hostlib.load_runtime(("MCUQP_SINGLE_ROUNDING=1",))


def pytest_collection_modifyitems(config, items):
    have_arm = shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")
    if have_arm or os.environ.get("CI"):
        return  # in CI a missing toolchain must fail, not skip
    skip = pytest.mark.skip(reason="arm-none-eabi-gcc / qemu-system-arm not installed (run `make test`)")
    for item in items:
        if "qemu" in item.keywords:
            item.add_marker(skip)


def pytest_configure(config):
    # The tests train tiny models: torch's intra-op threads only contend with each other
    # (and with the other pytest work) on a 2-core machine.
    import torch

    torch.set_num_threads(1)
