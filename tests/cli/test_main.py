"""The ``tenantflow`` console script as a person and a script use it: run as a subprocess, in a
pseudo-terminal (what the screen shows at the end) or piped (plain lines, no escape codes), against
the real API on a port and a real worker provisioning real tenants (``tests/cli/conftest.py``)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable

import httpx
import pytest
import typer

from cli.errors import ExitCode
from cli.main import app
from tenantflow.catalog import PROJECT_STEP_NAMES, PROJECT_TEARDOWN_STEP_NAMES
from tests.cli.conftest import Cli
from tests.cli.terminal import ANSI, cli_env, done_lines, piped
from tests.conftest import API_TOKEN, ROOT

STORAGE_STEP = "register_storage_service"


def step_block(screen: str, step: str) -> str:
    """The step's row on the screen, with the lines its long error was folded onto, joined."""
    lines = screen.splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf"^\S\s+{step}\s", line))
    block = [lines[start]]
    for line in lines[start + 1:]:
        if not line.startswith("   "):
            break
        block.append(line.strip())
    return " ".join(block)


# ------------------------------------------------------------------------------- --wait
async def test_create_wait_in_a_terminal_draws_every_step_done_and_exits_0(
    cli: Cli, tenant_name: Callable[[], str]
) -> None:
    name = tenant_name()
    run = await cli.terminal("create", name, "--wait")

    assert run.exit_code == ExitCode.OK, run
    assert "\x1b[" in run.raw, "on a terminal the progress is drawn live, in colour"
    assert list(done_lines(run.screen, PROJECT_STEP_NAMES)) == list(PROJECT_STEP_NAMES), run
    assert re.search(rf"^{name}  online  9/9 steps done in ", run.screen, re.MULTILINE), run
    assert run.screen.splitlines()[-1].startswith(f"✔ {name} is online (9/9 steps done in "), run
    # The live view was redrawn as the run went on, from nothing done to everything done.
    counts = {int(n) for n in re.findall(rf"{name}  \w+  (\d)/9 steps done", run.plain)}
    assert {0, 9} < counts, run.plain


async def test_create_wait_piped_prints_one_plain_line_per_event(
    cli: Cli, tenant_name: Callable[[], str]
) -> None:
    name = tenant_name()
    run = await cli.piped("create", name, "--wait")

    assert run.exit_code == ExitCode.OK, run
    assert "\x1b" not in run.raw + run.stderr
    lines = run.raw.splitlines()
    assert all(re.match(r"\d\d:\d\d:\d\d\.\d{3}  ", line) for line in lines[:-1]), run.raw
    for step in PROJECT_STEP_NAMES:
        told = [line.split()[2] for line in lines[:-1] if line.split()[1] == step]
        assert told[0] == "pending" and told[-1] in ("success", "skipped") and "running" in told, (step, told)
    statuses = [line.split()[-1] for line in lines if " tenant " in line]
    assert statuses == ["pending", "provisioning", "online"], run.raw
    assert lines[-1].startswith(f"{name} is online (9/9 steps done in "), run.raw

    # --json: nothing while waiting, then the project as the API shows it.
    other = await cli.piped("--json", "create", tenant_name(), "--wait")
    assert other.exit_code == ExitCode.OK, other
    project = json.loads(other.raw)
    assert project["status"] == "online"
    assert [s["status"] for s in project["steps"]] == [
        "skipped" if "graph" in s["name"] else "success" for s in project["steps"]
    ]


async def test_a_failed_step_exits_1_with_the_step_and_error_until_a_retry_brings_it_online(
    cli: Cli, tenant_name: Callable[[], str]
) -> None:
    cli.fault(service="storage", kind="status", status=400, count=0, message="bucket quota exceeded")
    name = tenant_name()

    run = await cli.terminal("create", name, "--wait")
    assert run.exit_code == ExitCode.TENANT_FAILED, run
    row = step_block(run.screen, STORAGE_STEP)
    assert re.match(rf"✖\s+{STORAGE_STEP}\s+failed\s+\S+s\s+storage rejected GET /tenants/{name}: HTTP 400: "
                    "bucket quota exceeded$", row), (row, run)
    assert f"tenantflow: {name} failed at {STORAGE_STEP} (attempt 1): " in run.screen
    assert f"tenantflow retry {name} --wait" in run.screen
    done = done_lines(run.screen, PROJECT_STEP_NAMES)
    assert list(done) == list(PROJECT_STEP_NAMES[:7]), run  # everything before storage did its work

    status = await cli.piped("status", name)
    assert status.exit_code == ExitCode.TENANT_FAILED, status
    assert re.search(rf"^tenant\s+{name}\s+failed$", status.raw, re.MULTILINE), status
    failed_row = rf"^✖\s+{STORAGE_STEP}\s+failed\s.*bucket quota exceeded$"
    assert re.search(failed_row, status.raw, re.MULTILINE), status
    assert f"{name} failed at {STORAGE_STEP}" in status.stderr

    refused = await cli.piped("connection", name)
    assert refused.exit_code == ExitCode.API_ERROR
    assert refused.stderr.strip() == (f"tenantflow: HTTP 409: project '{name}' is failed: connection details "
                                      "are given only once it is online")

    dry = await cli.piped("retry-failed", "--dry-run", "--name-prefix", name)
    assert dry.exit_code == ExitCode.OK, dry
    assert dry.raw.strip() == f"1 waiting run(s) would be retried (dry run: nothing was): {name}"
    dry_json = json.loads((await cli.piped(
        "--json", "retry-failed", "--dry-run", "--failed-step", STORAGE_STEP, "--name-prefix", name)).raw)
    assert (dry_json["matched"], dry_json["tenants"], dry_json["operation_id"]) == (1, [name], None)
    assert (await cli.piped("status", name)).exit_code == ExitCode.TENANT_FAILED, "a dry run retries nothing"

    httpx.delete(f"{cli.platform}/_faults").raise_for_status()  # the quota is raised
    retried = await cli.terminal("retry", name, "--wait", "--reason", "quota raised")
    assert retried.exit_code == ExitCode.OK, retried
    assert f"retrying {STORAGE_STEP} of {name}" in retried.screen
    assert list(done_lines(retried.screen, PROJECT_STEP_NAMES)) == list(PROJECT_STEP_NAMES), retried
    again = await cli.piped("retry", name)
    assert again.exit_code == ExitCode.API_ERROR
    assert "HTTP 409: nothing to retry" in again.stderr or "not running" in again.stderr, again


async def test_timed_out_or_interrupted_waiting_exits_4_or_130_and_the_run_goes_on(
    cli: Cli, tenant_name: Callable[[], str]
) -> None:
    cli.fault(service="storage", kind="status", status=503, count=0, message="storage is down")
    name = tenant_name()

    run = await cli.piped("create", name, "--wait", "--timeout", "3")
    assert run.exit_code == ExitCode.TIMED_OUT, run
    assert run.stderr.strip().startswith(f"tenantflow: {name} is still provisioning after 3s"), run.stderr
    # Retryable failures show while the step is retried: its attempts and the last error.
    assert re.search(rf"{STORAGE_STEP}\s+pending\s+attempt [2-9]\s+\S+s\s+error: .*storage is down$", run.raw,
                     re.MULTILINE), run.raw

    # Ctrl-C while waiting stops the waiting, not the run.
    stopped = await cli.terminal("status", name, "--wait", interrupt_on="attempt ")
    assert stopped.exit_code == ExitCode.STOPPED, stopped
    assert stopped.screen.splitlines()[-1] == (
        f"tenantflow: interrupted; a run already started goes on (`tenantflow status {name} --wait` follows "
        "it again)")
    assert re.search(rf"^\S\s+{STORAGE_STEP}\s+(pending|running)\s+attempt \d", stopped.screen, re.MULTILINE)

    httpx.delete(f"{cli.platform}/_faults").raise_for_status()
    followed = await cli.piped("status", name, "--wait")
    assert followed.exit_code == ExitCode.OK, followed
    assert followed.raw.splitlines()[-1].startswith(f"{name} is online"), followed


# ------------------------------------------------------------------------- other commands
async def test_list_filters_and_follows_the_cursor(cli: Cli, tenant_name: Callable[[], str]) -> None:
    prefix = tenant_name()
    names = [f"{prefix}-{i}" for i in range(3)]
    for name in names:
        created = await cli.piped("create", name)
        assert created.exit_code == ExitCode.OK, created
        assert created.raw.startswith(f"{name} is pending (id "), created

    first = await cli.piped("list", "--name-prefix", prefix, "--limit", "2")
    assert first.exit_code == ExitCode.OK, first
    rows = first.raw.splitlines()
    assert rows[0].split() == ["NAME", "STATUS", "KIND", "CREATED", "ID"]
    assert [r.split()[0] for r in rows[1:]] == names[:2]
    assert "first 2 shown; --all for every page" in first.stderr

    every = await cli.terminal("list", "--name-prefix", prefix, "--limit", "2", "--all")
    assert every.exit_code == ExitCode.OK, every
    assert [r.split()[0] for r in every.screen.splitlines()[1:]] == names

    walked = await cli.piped("--json", "list", "--name-prefix", prefix, "--all", "--limit", "1")
    page = json.loads(walked.raw)
    assert [p["name"] for p in page["items"]] == names and page["next_cursor"] is None
    none = await cli.piped("list", "--name-prefix", prefix, "--status", "deleted")
    assert (none.exit_code, none.raw, none.stderr.strip()) == (ExitCode.OK, "", "no tenants match")
    bad = await cli.piped("list", "--status", "sleeping")
    assert bad.exit_code == ExitCode.USAGE and "'sleeping' is not one of" in bad.stderr, bad.stderr


async def test_status_and_connection_of_an_online_tenant(cli: Cli, tenant_name: Callable[[], str]) -> None:
    name = tenant_name()
    assert (await cli.piped("create", name, "--wait")).exit_code == ExitCode.OK

    status = await cli.terminal("status", name)
    assert status.exit_code == ExitCode.OK, status
    assert re.search(rf"^tenant\s+{name}  online$", status.screen, re.MULTILINE), status
    assert re.search(rf"^workflow\s+provision-project-{name}-", status.screen, re.MULTILINE), status
    assert list(done_lines(status.screen, PROJECT_STEP_NAMES)) == list(PROJECT_STEP_NAMES), status

    shown = await cli.piped("connection", name)
    assert shown.exit_code == ExitCode.OK, shown
    rows = [line.split() for line in shown.raw.splitlines()]
    fields = {(row[0], row[1]): row[2] for row in rows if len(row) == 3}
    assert fields["postgres", "url"].startswith(f"postgresql://t_{name}_owner:"), shown.raw
    assert fields["postgres", "database"] == f"t_{name}"
    assert fields["keys", "anon"].startswith("eyJ") and fields["keys", "service_role"].startswith("eyJ")
    assert re.search(r"^graph\s+none$", shown.raw, re.MULTILINE), "no graph backend configured"
    secrets = json.loads((await cli.piped("--json", "connection", name)).raw)
    assert secrets["postgres"]["password"] in fields["postgres", "url"]
    assert secrets["keys"]["anon"] == fields["keys", "anon"]


async def test_delete_asks_first_and_wait_follows_the_teardown(
    cli: Cli, tenant_name: Callable[[], str]
) -> None:
    name = tenant_name()
    assert (await cli.piped("create", name, "--wait")).exit_code == ExitCode.OK

    refused = await cli.piped("delete", name)
    assert refused.exit_code == ExitCode.USAGE
    assert "stdin is not a terminal: pass --yes" in refused.stderr
    kept = await cli.terminal("delete", name, answer=("[y/N]: ", "n\r"))
    assert kept.exit_code == ExitCode.STOPPED, kept
    assert f"Delete tenant {name} and everything it has? [y/N]: n" in kept.screen
    assert json.loads((await cli.piped("--json", "status", name)).raw)["status"] == "online"

    deleted = await cli.terminal("delete", name, "--wait", answer=("[y/N]: ", "y\r"))
    assert deleted.exit_code == ExitCode.OK, deleted
    assert list(done_lines(deleted.screen, PROJECT_TEARDOWN_STEP_NAMES)) == list(PROJECT_TEARDOWN_STEP_NAMES)
    assert not done_lines(deleted.screen, PROJECT_STEP_NAMES), "the live view shows the teardown's steps"
    assert deleted.screen.splitlines()[-1].startswith(f"✔ {name} is deleted (7/7 steps done in "), deleted

    repeat = await cli.piped("delete", name, "--yes")
    assert (repeat.exit_code, repeat.raw.strip()) == (ExitCode.OK, f"{name} is deleted")
    cancel = await cli.piped("cancel", name, "--yes")
    assert cancel.exit_code == ExitCode.API_ERROR
    assert cancel.stderr.strip() == "tenantflow: HTTP 409: nothing to cancel: the tenant is deleted"


async def test_events_prints_the_raw_stream_and_resumes_after_an_id(
    cli: Cli, tenant_name: Callable[[], str]
) -> None:
    name = tenant_name()
    assert (await cli.piped("create", name, "--wait")).exit_code == ExitCode.OK

    raw = await cli.piped("events", name)
    assert raw.exit_code == ExitCode.OK, raw
    blocks = raw.raw.split("\n\n")
    assert blocks[0].startswith("id: ") and "\nevent: status\ndata: {" in blocks[0]
    assert blocks[-2].startswith('event: end\ndata: {"project_id"') and '"status":"online"' in blocks[-2]
    assert blocks[-1] == ""

    lines = [json.loads(line) for line in (await cli.piped("--json", "events", name)).raw.splitlines()]
    assert lines[-1]["event"] == "end" and lines[-1]["id"] is None
    ids = [int(e["id"]) for e in lines[:-1]]
    assert ids == sorted(ids) and len(lines) == len(blocks) - 1
    tail = await cli.piped("--json", "events", name, "--after", str(ids[-3]))
    assert [json.loads(line) for line in tail.raw.splitlines()] == lines[-3:]


# --------------------------------------------------------------------------------- errors
async def test_api_errors_exit_3_with_the_apis_message(cli: Cli, tenant_name: Callable[[], str]) -> None:
    wrong = await cli.terminal("list", env=cli_env(cli.api_url, "not-the-token"))
    assert wrong.exit_code == ExitCode.API_ERROR, wrong
    assert wrong.screen == ("tenantflow: HTTP 401: missing or invalid API key (set TENANTFLOW_API_TOKEN or "
                            "pass --token (scripts/dev prints the export line))")
    assert "not-the-token" not in wrong.raw

    missing = await cli.piped("status", "nobody-here")
    assert (missing.exit_code, missing.stderr.strip()) == (
        ExitCode.API_ERROR, "tenantflow: HTTP 404: no project with id or name 'nobody-here'")
    invalid = await cli.piped("create", "Bad_Name")
    assert invalid.exit_code == ExitCode.API_ERROR
    assert invalid.stderr.startswith("tenantflow: HTTP 422: name: invalid project name 'Bad_Name'"), invalid

    down = await cli.piped("--api-url", "http://127.0.0.1:9", "list")
    assert down.exit_code == ExitCode.API_ERROR
    assert down.stderr.startswith("tenantflow: cannot connect to the API at http://127.0.0.1:9 ("), down

    no_token = await cli.piped("list", env=cli_env(cli.api_url, None))
    assert no_token.exit_code == ExitCode.USAGE
    assert no_token.stderr.strip() == ("tenantflow: no API token: set TENANTFLOW_API_TOKEN or pass --token "
                                       "(scripts/dev prints the export line)")
    by_flag = await cli.piped("--token", API_TOKEN, "list", "--limit", "1", env=cli_env(cli.api_url, None))
    assert by_flag.exit_code == ExitCode.OK, by_flag


async def test_keys_are_created_shown_once_listed_and_revoked(cli: Cli) -> None:
    created = await cli.piped("keys", "create", "ci-runner", "--scope", "write")
    assert created.exit_code == ExitCode.OK, created
    key = created.raw.strip()
    assert key.startswith("tfk_") and "store it now" in created.stderr and key not in created.stderr
    with_key = await cli.piped("list", "--limit", "1", env=cli_env(cli.api_url, key))
    assert with_key.exit_code == ExitCode.OK, with_key
    refused = await cli.piped("keys", "list", env=cli_env(cli.api_url, key))  # write is not admin
    assert refused.exit_code == ExitCode.API_ERROR and "needs 'admin'" in refused.stderr

    listed = await cli.piped("--json", "keys", "list")
    mine = next(k for k in json.loads(listed.raw) if k["prefix"] == key[:12])
    assert mine["name"] == "ci-runner" and key not in listed.raw
    table = await cli.piped("keys", "list")
    assert "ci-runner" in table.raw and "write" in table.raw and key[:12] in table.raw
    revoked = await cli.piped("keys", "revoke", mine["id"])
    assert revoked.exit_code == ExitCode.OK and "revoked write key 'ci-runner'" in revoked.raw
    after = await cli.piped("list", env=cli_env(cli.api_url, key))
    assert after.exit_code == ExitCode.API_ERROR and "HTTP 401" in after.stderr


# ----------------------------------------------------------------------------------- help
COMMANDS = sorted(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


def test_every_command_is_covered() -> None:
    assert COMMANDS == sorted(["cancel", "connection", "create", "delete", "events", "keys", "list", "retry",
                               "retry-failed", "status"])


@pytest.mark.parametrize("command", COMMANDS)
def test_help_of_each_command_exits_0_and_describes_its_options(command: str) -> None:
    run = piped([command, "--help"], env=cli_env("http://127.0.0.1:9", None))
    assert run.exit_code == 0, run
    text = ANSI.sub("", run.raw)
    assert f"Usage: tenantflow {command} [OPTIONS]" in text
    click_command = typer.main.get_command(app).commands[command]  # type: ignore[attr-defined]
    assert click_command.help and click_command.help.split()[0] in text
    for param in click_command.params:
        for flag in param.opts:
            assert flag in text or flag.upper() in text, (command, flag)
        assert getattr(param, "help", None), f"{command} {param.name} has no help"


def test_top_level_help_lists_the_exit_codes_and_never_shows_the_token() -> None:
    run = piped(["--help"], env=cli_env("http://127.0.0.1:9", "tf_secret_token_value"))
    assert run.exit_code == 0
    text = ANSI.sub("", run.raw)
    for code in ExitCode:
        assert re.search(rf"• {int(code)}: ", text), code
    assert "TENANTFLOW_API_TOKEN" in text and "TENANTFLOW_API_URL" in text
    assert "tf_secret_token_value" not in run.raw + run.stderr
    bare = piped([], env=cli_env("http://127.0.0.1:9", None))
    assert bare.exit_code == ExitCode.USAGE and "Usage: tenantflow" in bare.raw + bare.stderr  # help, code 2


STUBBORN_WORK = """
import asyncio, os, signal, sys
from cli.main import _run_until_interrupted

async def stubborn():
    asyncio.get_running_loop().call_later(0.3, os.kill, os.getpid(), signal.SIGINT)
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            pass  # like a read that swallows the cancellation

try:
    _run_until_interrupted(stubborn())
except KeyboardInterrupt:
    sys.exit(130)
"""


def test_ctrl_c_ends_a_command_even_when_its_work_swallows_the_cancellation() -> None:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", STUBBORN_WORK], cwd=ROOT, capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 130, done.stderr
    assert time.monotonic() - started < 15  # the interrupt, then at most the cleanup second
