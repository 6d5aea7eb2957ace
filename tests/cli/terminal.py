"""Run the real ``tenantflow`` console script the way a person does, in a pseudo-terminal, and
read what they would see.

``in_terminal`` starts the script with its stdin, stdout and stderr on a pty (so ``isatty()`` is
true and Rich draws live, in colour) and collects every byte until it exits; ``Screen`` replays
those bytes like a terminal does (cursor moves, line erases; colours dropped), so a test looks at
the final screen rather than at the stream of redraws. ``piped`` runs it with pipes instead, as a
script or CI log would.
"""

from __future__ import annotations

import fcntl
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import ROOT

# The console script installed beside the interpreter running the tests (pyproject's
# [project.scripts]); PYTHONPATH makes it load this checkout's code.
TENANTFLOW = Path(sys.executable).parent / "tenantflow"
COLUMNS, ROWS = 120, 50
CSI = re.compile(r"\x1b\[([?0-9;]*)([@-~])")
OSC = re.compile(r"\x1b\][^\x07\x1b]*(\x07|\x1b\\)")
ANSI = re.compile(r"\x1b(\[[?0-9;]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[@-Z\\-_])")


def cli_env(api_url: str, token: str | None, **extra: str) -> dict[str, str]:
    """The environment of a user's shell after the dev stack's export line (and nothing of ours)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("TENANTFLOW_") and k not in ("NO_COLOR", "FORCE_COLOR", "COLUMNS", "LINES")}
    env.update(PYTHONPATH=str(ROOT), TERM="xterm-256color", TENANTFLOW_API_URL=api_url, **extra)
    if token is not None:
        env["TENANTFLOW_API_TOKEN"] = token
    return env


@dataclass
class Session:
    """A finished run of the CLI: its exit code and output."""

    args: list[str]
    exit_code: int
    raw: str  # every character written, escape codes included (stdout and stderr, interleaved on a pty)
    stderr: str = ""  # only for piped runs

    @property
    def screen(self) -> str:
        """What the terminal shows once the command has exited."""
        return Screen.replay(self.raw)

    @property
    def plain(self) -> str:
        """The output with escape codes removed (every frame a live display drew, in order)."""
        return ANSI.sub("", self.raw).replace("\r\n", "\n")

    def __str__(self) -> str:
        return f"$ tenantflow {' '.join(self.args)}  → exit {self.exit_code}\n{self.screen}\n{self.stderr}"


def in_terminal(
    args: list[str], *, env: Mapping[str, str], answer: tuple[str, str] | None = None,
    interrupt_on: str | None = None, timeout: float = 120.0,
) -> Session:
    """Run ``tenantflow ARGS`` on a pty of ``COLUMNS`` x ``ROWS`` until it exits.

    Args:
        args: the command line after ``tenantflow``.
        env: its environment (``cli_env``).
        answer: ``(prompt, reply)``: type ``reply`` once ``prompt`` has appeared.
        interrupt_on: press Ctrl-C (SIGINT) once this text has appeared.
        timeout: kill it after this many seconds (the test then fails).
    """
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
    proc = subprocess.Popen([str(TENANTFLOW), *args], stdin=slave, stdout=slave, stderr=slave,
                            env=dict(env), cwd=ROOT, start_new_session=True)
    os.close(slave)
    output = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while True:
            if time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(f"tenantflow {args} still running after {timeout}s:\n"
                                     f"{Screen.replay(output.decode(errors='replace'))}")
            if not select.select([master], [], [], 0.1)[0]:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every end of the pty's other side is closed, the program is gone
                break
            if not chunk:
                break
            output += chunk
            shown = output.decode(errors="replace")
            if answer and answer[0] in shown:
                os.write(master, answer[1].encode())
                answer = None
            if interrupt_on and interrupt_on in shown:
                proc.send_signal(signal.SIGINT)  # the pty is not its controlling terminal: signal it
                interrupt_on = None
    finally:
        os.close(master)
    return Session(args, proc.wait(timeout=10), output.decode(errors="replace"))


def piped(args: list[str], *, env: Mapping[str, str], stdin: str = "", timeout: float = 120.0) -> Session:
    """Run ``tenantflow ARGS`` with pipes for stdin, stdout and stderr (a script, a CI log)."""
    done = subprocess.run([str(TENANTFLOW), *args], input=stdin, capture_output=True, text=True,
                          env=dict(env), cwd=ROOT, timeout=timeout)
    return Session(args, done.returncode, done.stdout, done.stderr)


def done_lines(screen: str, steps: tuple[str, ...]) -> dict[str, str]:
    """Each step's line on the screen, for the steps shown as done (✔ success, – skipped)."""
    found = {}
    for step in steps:
        line = re.search(rf"^(✔|–)\s+{step}\s+(success|skipped)\b.*$", screen, re.MULTILINE)
        if line:
            found[step] = line.group(0)
    return found


class Screen:
    """The few terminal controls Rich uses (cursor up/down/column, erase line/screen), replayed
    onto a grid of characters; colours and other modes are dropped."""

    def __init__(self) -> None:
        self.lines: list[list[str]] = [[]]
        self.row = self.col = 0

    @classmethod
    def replay(cls, raw: str) -> str:
        screen = cls()
        screen.feed(raw)
        return screen.text()

    def text(self) -> str:
        return "\n".join("".join(line).rstrip() for line in self.lines).strip("\n")

    def feed(self, raw: str) -> None:
        i = 0
        while i < len(raw):
            match = CSI.match(raw, i) or OSC.match(raw, i)
            if match:
                if match.re is CSI:
                    self._control(match.group(1), match.group(2))
                i = match.end()
                continue
            self._char(raw[i])
            i += 1

    def _line(self) -> list[str]:
        while len(self.lines) <= self.row:
            self.lines.append([])
        return self.lines[self.row]

    def _char(self, ch: str) -> None:
        if ch == "\r":
            self.col = 0
        elif ch == "\n":
            self.row += 1
            self.col = 0
        elif ch == "\b":
            self.col = max(self.col - 1, 0)
        elif ch >= " " or ch == "\t":
            line = self._line()
            line.extend(" " * (self.col + 1 - len(line)))
            line[self.col] = ch
            self.col += 1

    def _control(self, params: str, final: str) -> None:
        numbers = [int(p) for p in params.lstrip("?").split(";") if p.isdigit()]
        n = numbers[0] if numbers else None
        if final == "A":
            self.row = max(self.row - (n or 1), 0)
        elif final == "B":
            self.row += n or 1
        elif final == "C":
            self.col += n or 1
        elif final == "D":
            self.col = max(self.col - (n or 1), 0)
        elif final == "G":
            self.col = (n or 1) - 1
        elif final == "K":
            line = self._line()
            if n in (None, 0):
                del line[self.col:]
            elif n == 1:
                line[: self.col] = [" "] * min(self.col, len(line))
            else:
                line.clear()
        elif final == "J" and n == 2:
            self.lines, self.row, self.col = [[]], 0, 0
        # m (colours), h/l (modes such as the hidden cursor): nothing to draw
