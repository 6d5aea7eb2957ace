"""What the CLI shows: Rich tables of tenants and steps, the live step-by-step view of a run, and
the plain one-line-per-event form of that view for output that is not a terminal.

One row renderer (``step_row``) draws a step in both the ``status`` table and the live view, so a
step looks the same wherever it appears. Colour and the live redraw are for terminals only: when
stdout is not a TTY, Rich writes no escape codes, tables lose their trailing padding, and ``--wait``
prints one plain line per event (words, no icons) instead of the live view.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from tenantflow.catalog import DONE_STEP_STATUSES, EventKind, ProjectStatus, RunKind, StepStatus

# Wide enough that piped tables are not folded; a terminal's own width wins.
PIPE_WIDTH = 200
STEP_STYLE: dict[str, tuple[str, str]] = {  # status -> (icon, style)
    StepStatus.PENDING: ("·", "dim"),
    StepStatus.RUNNING: ("", "cyan"),  # a spinner
    StepStatus.SUCCESS: ("✔", "green"),
    StepStatus.SKIPPED: ("–", "green"),
    StepStatus.FAILED: ("✖", "bold red"),
}
PROJECT_STYLE: dict[str, str] = {
    ProjectStatus.PENDING: "dim", ProjectStatus.PROVISIONING: "cyan", ProjectStatus.ONLINE: "bold green",
    ProjectStatus.FAILED: "bold red", ProjectStatus.DEPROVISIONING: "magenta", ProjectStatus.DELETED: "dim",
}


def make_console(*, stderr: bool = False) -> Console:
    """A console for stdout (or stderr): colours on a terminal, plain wide text otherwise."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else PIPE_WIDTH
    return Console(stderr=stderr, highlight=False, width=width, soft_wrap=width is not None)


def show(console: Console, renderable: RenderableType) -> None:
    """Print a table: as drawn on a terminal; elsewhere without the cells' trailing padding, so
    piped lines end where their text does."""
    if console.is_terminal:
        console.print(renderable)
        return
    with console.capture() as captured:
        console.print(renderable)
    console.out("\n".join(line.rstrip() for line in captured.get().splitlines()), highlight=False)


def print_json(data: Any) -> None:
    """JSON for scripts, on stdout, never coloured."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def print_json_line(data: Any) -> None:
    """One JSON object on one line (a stream of them is easy to read line by line)."""
    sys.stdout.write(json.dumps(data, default=str) + "\n")
    sys.stdout.flush()


def parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def local_time(value: str | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    moment = parse_time(value)
    return moment.astimezone().strftime(fmt) if moment else ""


def seconds(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.2f}s" if value < 60 else f"{int(value // 60)}m{int(value % 60):02d}s"


@dataclass(frozen=True)
class StepView:
    """A step as the API shows it (a ``steps`` entry of a project, or a ``step`` event's data)."""

    name: str
    run_kind: str
    status: str
    attempt: int
    retry_count: int
    started_at: datetime | None
    completed_at: datetime | None
    error_message: str | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StepView:
        return cls(
            name=data.get("name") or data["step"], run_kind=data.get("run_kind", RunKind.PROVISION),
            status=data["status"], attempt=data.get("attempt", 0), retry_count=data.get("retry_count", 0),
            started_at=parse_time(data.get("started_at")), completed_at=parse_time(data.get("completed_at")),
            error_message=data.get("error_message"),
        )

    def duration(self, now: datetime | None = None) -> float | None:
        """Seconds from start to completion (to ``now`` while it runs)."""
        if self.started_at is None:
            return None
        end = self.completed_at or (now if self.status == StepStatus.RUNNING else None)
        return max((end - self.started_at).total_seconds(), 0.0) if end else None


def step_icon(status: str) -> RenderableType:
    icon, style = STEP_STYLE.get(status, ("?", ""))
    return Spinner("dots", style=style) if status == StepStatus.RUNNING else Text(icon, style=style)


def step_row(step: StepView, *, now: datetime) -> list[RenderableType]:
    """icon, name, status, attempt, duration, last error."""
    _, style = STEP_STYLE.get(step.status, ("?", ""))
    attempt = f"attempt {step.attempt}" if step.attempt > 1 else ""
    error = Text(step.error_message or "", style="red" if step.status == StepStatus.FAILED else "yellow")
    return [step_icon(step.status), Text(step.name), Text(step.status, style=style),
            Text(attempt, style="dim"), Text(seconds(step.duration(now)), style="dim"), error]


def steps_table(steps: Iterable[StepView], *, now: datetime | None = None) -> Table:
    """The steps, one row each, in the order given."""
    table = Table(box=None, show_header=False, pad_edge=False, padding=(0, 1))
    table.add_column(width=1, no_wrap=True)
    table.add_column(no_wrap=True)
    table.add_column(no_wrap=True)
    table.add_column(no_wrap=True)
    table.add_column(justify="right", no_wrap=True)
    table.add_column(overflow="fold")
    moment = now or datetime.now(UTC)
    for step in steps:
        table.add_row(*step_row(step, now=moment))
    return table


def steps_by_run(steps: Iterable[StepView]) -> RenderableType:
    """``status``: the steps, under a heading per run once a teardown has begun."""
    runs: dict[str, list[StepView]] = {}
    for step in steps:
        runs.setdefault(step.run_kind, []).append(step)
    if len(runs) < 2:
        return steps_table(next(iter(runs.values()), []))
    titles: dict[str, str] = {RunKind.PROVISION: "provisioning", RunKind.DEPROVISION: "teardown"}
    parts: list[RenderableType] = []
    for kind, rows in runs.items():
        parts += [Text(titles.get(kind, kind), style="bold"), steps_table(rows), Text("")]
    return Group(*parts[:-1])


def project_status_text(status: str) -> Text:
    return Text(status, style=PROJECT_STYLE.get(status, ""))


def projects_table(items: Iterable[dict[str, Any]]) -> Table:
    """``list``: one tenant a row."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("NAME", "STATUS", "KIND", "CREATED", "ID"):
        table.add_column(column, no_wrap=True)
    for p in items:
        table.add_row(p["name"], project_status_text(p["status"]), p["kind"], local_time(p["created_at"]),
                      Text(str(p["id"]), style="dim"))
    return table


def keys_table(items: Iterable[dict[str, Any]]) -> Table:
    """``keys list``: one API key a row (never the key itself: the API does not have it)."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("NAME", "SCOPE", "PREFIX", "CREATED", "REVOKED", "ID"):
        table.add_column(column, no_wrap=True)
    for k in items:
        revoked = local_time(k["revoked_at"]) if k["revoked_at"] else ""
        table.add_row(k["name"], k["scope"], k["prefix"], local_time(k["created_at"]),
                      Text(revoked, style="red"), Text(str(k["id"]), style="dim"))
    return table


def project_header(project: dict[str, Any]) -> Table:
    """``status``: who the tenant is, where its run is, its graph database."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    name = Text.assemble((project["name"], "bold"), "  ", project_status_text(project["status"]))
    table.add_row("tenant", name)
    table.add_row("id", str(project["id"]))
    table.add_row("kind", project["kind"])
    table.add_row("workflow", project["workflow_id"])
    table.add_row("created", local_time(project["created_at"]))
    graph = project.get("graph")
    if graph:
        where = " ".join(str(v) for v in (graph.get("backend"), graph.get("database"), graph.get("uri")) if v)
        table.add_row("graph", f"{where}  ({graph.get('status')})")
    return table


def project_steps(project: dict[str, Any]) -> list[StepView]:
    return [StepView.from_json(s) for s in project.get("steps", [])]


def failed_step(steps: Iterable[StepView]) -> StepView | None:
    return next((s for s in steps if s.status == StepStatus.FAILED), None)


class RunView:
    """One run of a tenant as its events tell it: a line per step of ``run_kind``, the status.

    Seeded from the project (so every step has its line before its first event), then moved on
    by ``apply``. Rich's ``Live`` renders it on every refresh, so the spinner and the running
    step's duration move between events.
    """

    def __init__(self, project: dict[str, Any], *, run_kind: str) -> None:
        self.id = str(project["id"])
        self.name: str = project["name"]
        self.status: str = project["status"]
        self.run_kind = run_kind
        self.steps: dict[str, StepView] = {
            s.name: s for s in project_steps(project) if s.run_kind == run_kind
        }
        self.started = datetime.now(UTC)

    def apply(self, event: str, data: dict[str, Any]) -> StepView | None:
        """Take one ``step`` or ``status`` event; return the step it changed (None otherwise)."""
        if event == EventKind.STATUS:
            self.status = data["status"]
            return None
        if event != EventKind.STEP or data.get("run_kind", self.run_kind) != self.run_kind:
            return None
        step = StepView.from_json(data)
        self.steps[step.name] = step
        return step

    def finish(self, status: str) -> None:
        self.status = status

    @property
    def done(self) -> int:
        return sum(1 for s in self.steps.values() if s.status in DONE_STEP_STATUSES)

    def elapsed(self) -> float:
        """Seconds since the view was made (when the command started waiting)."""
        return (datetime.now(UTC) - self.started).total_seconds()

    def progress(self) -> str:
        return f"{self.done}/{len(self.steps)} steps done in {seconds(self.elapsed())}"

    def headline(self) -> Text:
        return Text.assemble((self.name, "bold"), "  ", project_status_text(self.status),
                             (f"  {self.progress()}", "dim"))

    def __rich__(self) -> RenderableType:
        return Group(self.headline(), steps_table(self.steps.values()))


def step_line(step: StepView) -> str:
    """A ``step`` event as one plain line (no colour, no icon): for pipes and logs."""
    parts = [f"{step.name:<28}", f"{step.status:<8}"]
    if step.attempt > 1:
        parts.append(f"attempt {step.attempt}")
    if step.completed_at is not None:
        parts.append(seconds(step.duration()))
    if step.error_message:
        parts.append(f"error: {step.error_message}")
    return "  ".join(parts).rstrip()


def status_line(name: str, status: str) -> str:
    """A ``status`` event as one plain line."""
    return f"tenant {name} is {status}"


def stamped(line: str, at: str | None) -> str:
    """``line`` after the event's time (local, to the millisecond)."""
    moment = parse_time(at) or datetime.now(UTC)
    return f"{moment.astimezone().strftime('%H:%M:%S.%f')[:-3]}  {line}"
