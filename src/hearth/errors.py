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
