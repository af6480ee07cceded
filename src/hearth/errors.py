"""Hearth's error types: each message says what went wrong, where, and how to fix it."""


class HearthError(Exception):
    """Base class; the CLI prints these as one clean line instead of a traceback."""


class ConfigError(HearthError):
    pass


class UnsupportedFileError(HearthError):
    """A file Hearth does not read (binary, unknown type). Skipped and reported."""


class LoadError(HearthError):
    """A file Hearth should read but cannot (corrupt PDF, malformed JSON...). Reported."""


class EmbedderMismatchError(HearthError):
    """The index was built with another embedder than the one asked for."""


class ModelNotFoundError(HearthError):
    pass


class ContextWindowError(HearthError):
    """A prompt does not fit the model's context window even after trimming."""


class MissingKeyError(HearthError):
    """A remote model needs an API key and the environment variable holding it is unset."""

    def __init__(self, message: str, *, env_var: str) -> None:
        super().__init__(message)
        self.env_var = env_var


class BackendError(HearthError):
    """A remote LLM server failed: it refused the request, kept failing after the retries,
    timed out or could not be reached. `status` is the HTTP status (None when no answer came
    back) and `url` the address that was called."""

    def __init__(self, message: str, *, status: int | None = None, url: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.url = url


class RemoteModelNotFoundError(ModelNotFoundError, BackendError):
    """A remote server answered that it does not serve the model asked for (HTTP 404)."""

    def __init__(self, message: str, *, status: int | None = 404, url: str | None = None) -> None:
        BackendError.__init__(self, message, status=status, url=url)


class CapabilityError(HearthError):
    """A model lacks what the caller needs (streaming, tools, JSON schema, a large context)."""


class ConstraintError(HearthError):
    """A constraint (JSON Schema, regex, grammar, choices) cannot be compiled or enforced.
    `keyword` and `path` (a JSON pointer into the schema) say where, when it is a schema."""

    def __init__(self, message: str, *, keyword: str | None = None, path: str | None = None):
        super().__init__(message)
        self.keyword = keyword
        self.path = path


class StructuredOutputError(HearthError):
    """A model's output did not satisfy its constraint within the retry budget."""

    def __init__(self, message: str, *, output: str = "", attempts: int = 0) -> None:
        super().__init__(message)
        self.output = output
        self.attempts = attempts
