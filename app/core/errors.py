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


class ReadOnlyError(LinesideError):
    """The project (or a file in it) cannot be written: permissions, a read-only medium."""


class StoreBusyError(LinesideError):
    """Another program held the project database's write lock for longer than we wait."""


class NotEnoughDataError(LinesideError):
    pass


def printable(text: object) -> str:
    """*text* safe to print, log or store as UTF-8.

    File names that are not valid UTF-8 reach Python as str with lone surrogates
    (os.fsdecode's surrogateescape); printing or storing those raises
    UnicodeEncodeError. The undecodable bytes are shown as \\xNN instead, so the user
    can still recognise the file.
    """
    text = str(text)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        errors = "surrogateescape" if _only_escapes(text) else "backslashreplace"
        return text.encode("utf-8", errors).decode("utf-8", "backslashreplace")


def _only_escapes(text: str) -> bool:
    # surrogateescape can only re-encode the surrogates it made itself (U+DC80..U+DCFF).
    return all(not 0xD800 <= ord(ch) <= 0xDFFF or 0xDC80 <= ord(ch) <= 0xDCFF for ch in text)
