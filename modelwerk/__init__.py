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

#: Loaded on first use (``modelwerk.models``, ``modelwerk.approve``), so ``import modelwerk`` stays light.
_LAZY = {
    "data": ("modelwerk.data", None),
    "models": ("modelwerk.models", None),
    "approve": ("modelwerk.models", "approve"),
    "reject": ("modelwerk.models", "reject"),
    "runs": ("modelwerk.pipelines", "runs"),
    "pipelines": ("modelwerk.pipelines", None),
    "endpoints": ("modelwerk.endpoints", None),
    "deploy": ("modelwerk.endpoints", "deploy"),
    "predict": ("modelwerk.endpoints", "predict"),
    "monitoring": ("modelwerk.monitoring", None),
    "drift_report": ("modelwerk.monitoring", "drift_report"),
    "feedback": ("modelwerk.monitoring", "feedback"),
    "promotion": ("modelwerk.promotion", None),
    "promote": ("modelwerk.promotion", "promote"),
    "report": ("modelwerk.report", None),
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'modelwerk' has no attribute {name!r}")
    import importlib

    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name)
    return module if attribute is None else getattr(module, attribute)

__all__ = [
    "ConfigurationError",
    "ExecutionFailedError",
    "LocalModeError",
    "ModelwerkError",
    "NotFoundError",
    "TimeoutError",
    "ValidationError",
    "__version__",
    "approve",
    "data",
    "deploy",
    "drift_report",
    "endpoints",
    "feedback",
    "models",
    "monitoring",
    "pipelines",
    "predict",
    "promote",
    "promotion",
    "reject",
    "report",
    "runs",
]
