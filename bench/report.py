"""The printed report and its JSON twin.

Each section prints a header (``== name: what it measures``), its figures, and at least one
``ratio`` line: the ratio, the goal it serves (issue 12) and PASS/FAIL, or ``n/a`` with the reason
when a figure it needs was not measured. A goal that fails is a finding, not an error: the exit
code only says whether every section could measure.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from bench.stats import median, ms, percentile


@dataclass(frozen=True)
class Goal:
    """A ratio's target: at most ``limit`` (``at_most``) or at least ``limit``."""

    limit: float
    at_most: bool = True

    def met(self, value: float) -> bool:
        return value <= self.limit if self.at_most else value >= self.limit

    def __str__(self) -> str:
        return f"{'≤' if self.at_most else '≥'} {self.limit:g}"


@dataclass(frozen=True)
class Ratio:
    section: str
    label: str
    value: float | None
    goal: str | None
    passed: bool | None
    note: str = ""


class Report:
    """Collects what the sections print and measure; ``write_json`` saves the numbers."""

    def __init__(self, *, out: IO[str] = sys.stdout) -> None:
        self.out = out
        self.current = ""
        self.figures: dict[str, dict[str, Any]] = {}
        self.ratios: list[Ratio] = []
        self.errors: dict[str, str] = {}

    def section(self, name: str, title: str) -> None:
        """Start section ``name``: its header, and a place for its figures."""
        self.current = name
        self.figures.setdefault(name, {})
        self._print(f"\n== {name}: {title}")

    def say(self, text: str) -> None:
        """One line of the current section."""
        self._print(f"   {text}")

    def spread(self, label: str, seconds: list[float], *, width: int = 56) -> None:
        """One line: ``label``, then the p50 and p99 of ``seconds`` in milliseconds."""
        self.say(f"{label:<{width}} p50 {ms(median(seconds)):>8}   p99 {ms(percentile(seconds, 99)):>8}")

    def record(self, **figures: Any) -> None:
        """Figures of the current section, for the JSON file."""
        self.figures.setdefault(self.current, {}).update(figures)

    def ratio(self, label: str, value: float | None, goal: Goal | None, *, missing: str = "") -> None:
        """A ratio with its goal and verdict; ``value`` None: not measured (``missing`` says why);
        ``goal`` None: printed for reference."""
        if value is None or math.isnan(value):
            text, passed = f"n/a ({missing or 'not measured'})", None
        elif goal is None:
            text, passed = f"{value:.2f}  (reference: no goal)", None
        else:
            passed = goal.met(value)
            text = f"{value:.2f}  (goal {goal})  {'PASS' if passed else 'FAIL'}"
        self._print(f"   ratio  {label} = {text}")
        self.ratios.append(Ratio(self.current, label, value, str(goal) if goal else None, passed, missing))

    def error(self, message: str) -> None:
        """The current section could not measure: say why (the run goes on, and exits 1)."""
        self.errors[self.current] = message
        self._print(f"   ERROR  {message}")

    def write_json(self, path: Path, **extra: Any) -> None:
        document = {**extra, "sections": self.figures, "ratios": [asdict(r) for r in self.ratios],
                    "errors": self.errors}
        path.write_text(json.dumps(document, indent=2, default=str) + "\n")

    def _print(self, text: str) -> None:
        print(text, file=self.out, flush=True)
