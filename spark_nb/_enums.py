"""Word: an Enum whose members are their own strings (Python 3.10 has no StrEnum)."""

from __future__ import annotations

import enum


class Word(str, enum.Enum):
    """An Enum whose members are their own strings, in str(), f-strings, JSON, CSV and SQLite alike."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)
