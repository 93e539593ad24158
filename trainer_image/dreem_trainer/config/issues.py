"""Configuration problems as users read them: the key path, what is wrong, and the value found."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic_core import PydanticCustomError

from dreem_trainer.contract import UserError

ISSUE_TYPE = "dreem_config"


def key_error(key: str, message: str, value: Any) -> PydanticCustomError:
    """An error raised by a section's cross-key check, pinned to one of its keys.

    Pydantic places errors from a model validator at the model's own path; the `key` carried in the
    context lets the report name the exact key the user has to change.
    """
    return PydanticCustomError(ISSUE_TYPE, message.replace("{", "(").replace("}", ")"), {"key": key, "value": value})


def did_you_mean(word: str, choices: Iterable[str], cutoff: float = 0.6) -> str:
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=cutoff)
    return f"; did you mean '{close[0]}'?" if close else ""


def first_few(names: Sequence[str], shown: int = 3) -> str:
    """`names` for a message: the first `shown` of them, then how many more."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


@dataclass(frozen=True)
class ConfigIssue:
    path: str
    message: str
    value: Any = None
    has_value: bool = True
    loc: tuple[str | int, ...] = ()
    """The path as keys, for tools; empty when the issue is about a file rather than a key."""

    def __str__(self) -> str:
        shown = f" (got {_short_repr(self.value)})" if self.has_value else ""
        return f"{self.path}: {self.message}{shown}"


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class ConfigError(UserError, ValueError):
    """Every problem found in one configuration, reported together."""

    def __init__(self, issues: list[ConfigIssue], source: str | None = None) -> None:
        self.issues = issues
        self.source = source
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f" in {self.source}" if self.source else ""
        count = len(self.issues)
        head = f"invalid configuration{where} ({count} problem{'s' if count != 1 else ''}):"
        return "\n".join([head, *(f"  - {issue}" for issue in self.issues)])
