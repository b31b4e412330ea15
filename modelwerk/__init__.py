"""Modelwerk: the data scientists' side of the platform.

Light on import (a notebook imports it in a second): sub-modules with heavy dependencies load when first used.
"""

from modelwerk.errors import (
    ConfigurationError,
    ExecutionFailedError,
    LocalModeError,
    ModelwerkError,
    NotFoundError,
    TimeoutError,
    ValidationError,
)

__version__ = "0.1.0"

__all__ = [
    "ConfigurationError",
    "ExecutionFailedError",
    "LocalModeError",
    "ModelwerkError",
    "NotFoundError",
    "TimeoutError",
    "ValidationError",
    "__version__",
]
