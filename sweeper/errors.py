"""User-facing errors: printed as a message, never as a Python traceback."""

from __future__ import annotations

from hydra.errors import CompactHydraException


class UserError(CompactHydraException):
    """A problem the user can fix (bad value, missing tool, missing data).

    Hydra prints a CompactHydraException as its message alone, so raising this anywhere
    under Hydra gives the user the message and no traceback.
    """

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(f"error: {p}" for p in self.problems))


def first_line(error: object) -> str:
    """The first line of an error and of its cause (Hydra wraps OmegaConf's message)."""
    parts: list[str] = []
    while error is not None and len(parts) < 3:
        text = str(error).strip()
        if text:
            parts.append(text.splitlines()[0])
        error = getattr(error, "__cause__", None)
    return ": ".join(parts) if parts else "unknown error"
