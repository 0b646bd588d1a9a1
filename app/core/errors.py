"""User-facing errors.

Every error a shop-floor user can cause (a corrupt image, a folder that is not a
project, a wrong model file, a full disk) is raised as a LinesideError whose message
names the file and says what to do. The CLI prints the message and exits non-zero; the
desktop app shows it in a dialog. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class LinesideError(Exception):
    """An error with a message fit to show to the person at the line."""


class NotAProjectError(LinesideError):
    pass


class BadImageError(LinesideError):
    pass


class ModelFileError(LinesideError):
    pass


class DiskFullError(LinesideError):
    pass


class NotEnoughDataError(LinesideError):
    pass
