"""Thin stacks and the per-environment stages that compose them; all logic lives in ``cdk_constructs``."""
