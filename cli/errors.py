"""How a ``tenantflow`` command ends: its exit codes, and the errors that carry them.

Scripts branch on the exit code, so every way a command can end maps to one ``ExitCode``, and
each error below knows its code. The HTTP boundary (``cli.client``) is the only place that turns
httpx errors and error responses into these; ``cli.main`` prints the message and exits::

    CliError                     exit_code, message
    ├── ApiError                 the API answered an error (3); ``status``, the API's own message
    │   ├── NotAuthorized        401/403: missing or wrong token
    │   ├── NotFound             404: no tenant with that id or name
    │   └── Unavailable          502/503/504: worth another try (the event stream reconnects)
    ├── Unreachable              no answer at all: refused, timed out, dropped (3)
    ├── UsageError               the command cannot run as given, e.g. no token (2, like Typer's)
    ├── TenantFailed             the run stopped at a failed step, or ended otherwise than asked (1)
    └── TimedOut                 ``--timeout`` passed before the run settled (4)
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """The exit codes of every ``tenantflow`` command (listed in ``tenantflow --help``)."""

    OK = 0  # done: online (deleted for delete/cancel)
    TENANT_FAILED = 1  # a step failed and waits for a person (the step and its error are printed)
    USAGE = 2  # bad arguments or options (Typer's own code), a missing token
    API_ERROR = 3  # the API refused (auth, not found, conflict...) or could not be reached
    TIMED_OUT = 4  # --timeout passed while waiting
    STOPPED = 130  # Ctrl-C, or "no" at a confirmation (as a shell reports SIGINT)


EXIT_CODE_HELP = {
    ExitCode.OK: "success: the tenant is online (deleted, for delete and cancel)",
    ExitCode.TENANT_FAILED: "the tenant failed: a step waits for a retry (its name and error are printed)",
    ExitCode.USAGE: "usage error: bad option or argument, no API token",
    ExitCode.API_ERROR: "the API refused the request or could not be reached (its message is printed)",
    ExitCode.TIMED_OUT: "timed out waiting (--timeout); the run goes on",
    ExitCode.STOPPED: "stopped by you: Ctrl-C, or 'no' at a confirmation",
}


class CliError(Exception):
    """Ends the command with ``exit_code`` after printing ``message`` on stderr."""

    exit_code: ExitCode = ExitCode.API_ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ApiError(CliError):
    """The API answered with an error status; ``message`` is its ``detail``."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class NotAuthorized(ApiError):
    """401/403: the token is missing or wrong."""


class NotFound(ApiError):
    """404: no such tenant (or route)."""


class Unavailable(ApiError):
    """502/503/504: the API or what it depends on is down for now."""


class Unreachable(CliError):
    """No HTTP answer: connection refused, timed out or dropped."""


class UsageError(CliError):
    """The command cannot run as given."""

    exit_code = ExitCode.USAGE


class TenantFailed(CliError):
    """The run stopped at a failed step (or ended in another state than the command wanted)."""

    exit_code = ExitCode.TENANT_FAILED


class TimedOut(CliError):
    """Waiting took longer than ``--timeout``."""

    exit_code = ExitCode.TIMED_OUT
