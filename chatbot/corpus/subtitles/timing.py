"""Timestamp parsing shared by the subtitle readers."""

from __future__ import annotations


def to_ms(hours: str | None, minutes: str, seconds: str, fraction: str) -> int:
    """'01','02','03','5' -> milliseconds; the fraction is read as a decimal ('5' = 500 ms)."""
    ms = int((fraction + "000")[:3]) if fraction else 0
    return ((int(hours or 0) * 60 + int(minutes)) * 60 + int(seconds)) * 1000 + ms
