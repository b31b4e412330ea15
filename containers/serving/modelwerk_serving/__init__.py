"""Modelwerk's inference server: SageMaker's inference contract (single- and multi-model) for the platform's models.

``python -m modelwerk_serving`` (the image runs it with SageMaker's ``serve`` argument) starts uvicorn's
supervisor, which runs the workers and replaces one that dies. Settings come from environment variables
(:mod:`modelwerk_serving.settings`); the same code runs in the image on SageMaker and as a local process.
"""
