"""One root exception for the library; every message says what to do next."""


class ModelwerkError(Exception):
    """Root of every error the library raises on purpose."""


class ConfigurationError(ModelwerkError):
    """The platform configuration (cdk.json, SSM, environment variables) is missing or inconsistent."""


class ValidationError(ModelwerkError):
    """An argument or an input file is not what the call expects."""


class NotFoundError(ModelwerkError):
    """A named resource (use case, snapshot, table, endpoint) does not exist."""


class ExecutionFailedError(ModelwerkError):
    """A job, pipeline or process the library started ended in failure."""


class TimeoutError(ModelwerkError):  # noqa: A001 - library-scoped name, exported as modelwerk.TimeoutError
    """A wait ran past its deadline."""


class LocalModeError(ModelwerkError):
    """Local mode is not running, or could not start."""
