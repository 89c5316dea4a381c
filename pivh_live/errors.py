"""Exception types. Each message is one line that says what to do next.

The CLI prints ``PivhError`` messages without a traceback; anything else is a
bug and keeps its traceback.
"""


class PivhError(Exception):
    """Base class for errors a user can cause and fix."""


class ConfigError(PivhError):
    """A configuration file or option is malformed or names an unknown key."""


class DatasetError(PivhError):
    """A dataset directory does not follow docs/dataset.md."""


class MediaError(PivhError):
    """A video, image folder or DICOM file cannot be decoded."""


class SourceError(PivhError):
    """A live source (capture device, stream, file) cannot be opened or read."""


class ModelBundleError(PivhError):
    """A model bundle is missing files, has a bad hash or wrong shapes."""


class EngineError(PivhError):
    """An inference engine is unavailable or failed."""


class RecordingError(PivhError):
    """A session recording cannot be written (disk full, permissions)."""
