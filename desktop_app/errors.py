"""User-facing errors: a kind, a message a person understands, and a hint saying what to do."""

from __future__ import annotations

import enum


class ErrorKind(enum.Enum):
    """What went wrong, so the UI and CLI can choose an icon, an exit code or a retry action."""

    bad_input = "bad_input"
    missing_file = "missing_file"
    corrupt_file = "corrupt_file"
    unsupported = "unsupported"
    unsafe_file = "unsafe_file"
    out_of_memory = "out_of_memory"
    cancelled = "cancelled"
    network = "network"
    runtime = "runtime"


class UserError(Exception):
    """A failure worth showing to a person; its fields are read-only so it can cross threads.

    `message` says what happened; `hint` says what to do about it. (Not a frozen dataclass:
    Python must be able to set `__traceback__` when it is raised through a context manager.)
    """

    __slots__ = ("_hint", "_kind", "_message")

    def __init__(self, kind: ErrorKind, message: str, hint: str = "") -> None:
        super().__init__(kind, message, hint)
        self._kind = kind
        self._message = message
        self._hint = hint

    @property
    def kind(self) -> ErrorKind:
        return self._kind

    @property
    def message(self) -> str:
        return self._message

    @property
    def hint(self) -> str:
        return self._hint

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, UserError):
            return NotImplemented
        return (self.kind, self.message, self.hint) == (other.kind, other.message, other.hint)

    def __hash__(self) -> int:
        return hash((self.kind, self.message, self.hint))

    def __repr__(self) -> str:
        return f"UserError({self.kind!r}, {self.message!r}, {self.hint!r})"

    def __str__(self) -> str:
        return f"{self.message} — {self.hint}" if self.hint else self.message

    @property
    def is_input_error(self) -> bool:
        """True for errors caused by what the user asked for (CLI exit code 2)."""
        return self.kind in (ErrorKind.bad_input, ErrorKind.missing_file)


def bad_input(message: str, hint: str = "") -> UserError:
    """Shorthand for an error in what the user asked for."""
    return UserError(ErrorKind.bad_input, message, hint)


OOM_HINT = "Out of GPU memory — try a smaller size or batch, or enable low-VRAM mode."


def friendly_error(exc: BaseException) -> UserError:
    """Map any exception to a UserError with a hint; known failures get specific advice."""
    if isinstance(exc, UserError):
        return exc
    text = f"{type(exc).__name__}: {exc}"
    lowered = text.lower()
    if "out of memory" in lowered or type(exc).__name__ == "OutOfMemoryError":
        return UserError(ErrorKind.out_of_memory, "The device ran out of memory.", OOM_HINT)
    if isinstance(exc, FileNotFoundError):
        return UserError(
            ErrorKind.missing_file,
            f"File not found: {exc.filename or exc}",
            "Check the path, or pick the model again in the library.",
        )
    if isinstance(exc, MemoryError):
        return UserError(
            ErrorKind.out_of_memory,
            "The computer ran out of memory.",
            "Close other programs, or use a smaller size or batch.",
        )
    return UserError(
        ErrorKind.runtime,
        f"Unexpected error: {text}",
        "See the log file for details; the app keeps running.",
    )
