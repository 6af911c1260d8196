"""User-facing errors: the CLI prints their message as one line and exits non-zero."""


class McuqpError(Exception):
    """A user-facing error: one line naming the problem and what to do."""


class UnsupportedModelError(McuqpError):
    """The model uses a layer or op mcuqp cannot compile."""


class BudgetError(McuqpError):
    """The model cannot fit the flash or RAM budget."""


class ToolchainError(McuqpError):
    """A required external tool (compiler, emulator) is missing or failed."""
