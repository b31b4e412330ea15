"""Construct ids derived from configuration names."""

from __future__ import annotations


def pascal(name: str) -> str:
    """``pump-health`` -> ``PumpHealth``, ``athena-results`` -> ``AthenaResults``."""
    return "".join(part[:1].upper() + part[1:] for part in name.replace("_", "-").split("-") if part)
