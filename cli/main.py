"""``tenantflow``: the command line of the tenantflow API (Typer + Rich).

Each command is a thin shell around one or two API calls (``cli.client``). ``--wait`` follows the
tenant's event stream (``cli.events``) and draws it live (``cli.render``), or prints one plain
line per event when stdout is not a terminal, so the same command works in a shell and in a CI
log. Every way a command can end is an exit code (``cli.errors.ExitCode``) a script can test.

The token comes from ``TENANTFLOW_API_TOKEN`` (or ``--token``) and is only ever sent in the
``Authorization`` header: it is not printed, not shown in ``--help``, and tracebacks show no locals.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live
from rich.text import Text

from cli.client import DEFAULT_API_URL, TOKEN_HINT, ApiClient
from cli.errors import EXIT_CODE_HELP, CliError, ExitCode, TenantFailed, TimedOut, UsageError
from cli.events import follow
from cli.render import (
    RunView,
    StepView,
    failed_step,
    keys_table,
    make_console,
    print_json,
    print_json_line,
    project_header,
    project_steps,
    projects_table,
    show,
    stamped,
    status_line,
    step_line,
    steps_by_run,
)
from tenantflow.catalog import EventKind, ProjectKind, ProjectStatus, RunKind, Scope, StepName

GOING_AWAY = frozenset({ProjectStatus.DEPROVISIONING, ProjectStatus.DELETED})
DEFAULT_WAIT_TIMEOUT = 300.0
RETRY_FAILED_POLL_SECONDS = 1.0

EPILOG = "\n\n".join([
    "**Environment:** `TENANTFLOW_API_URL` (default http://127.0.0.1:8000) and `TENANTFLOW_API_TOKEN`; "
    "`scripts/dev` prints both as an export line.",
    "**Exit codes:**",
    "\n".join(f"* {int(code)}: {text}" for code, text in EXIT_CODE_HELP.items()),
])

app = typer.Typer(
    name="tenantflow",
    help="Create, watch, retry and delete tenants through the tenantflow API.",
    epilog=EPILOG,
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
    pretty_exceptions_show_locals=False,  # locals would show the token
    context_settings={"help_option_names": ["-h", "--help"]},
)


@dataclass
class Options:
    """The global options, handed to every command through the Typer context."""

    api_url: str
    token: str | None = field(repr=False)
    json: bool
    out: Console = field(repr=False)
    err: Console = field(repr=False)
    following: str | None = None  # the tenant --wait is following, for the Ctrl-C message

    def client(self) -> ApiClient:
        """A client of the API; a usage error without a token."""
        if not self.token:
            raise UsageError(f"no API token: {TOKEN_HINT}")
        return ApiClient(self.api_url, self.token)


@app.callback()
def options(
    ctx: typer.Context,
    api_url: Annotated[str, typer.Option(
        "--api-url", envvar="TENANTFLOW_API_URL", help="The tenantflow API's base URL.",
    )] = DEFAULT_API_URL,
    token: Annotated[str | None, typer.Option(
        "--token", envvar="TENANTFLOW_API_TOKEN", show_default=False,
        help="The API token (never printed). Prefer the environment variable: a command line is "
        "visible to other users of the machine.",
    )] = None,
    json: Annotated[bool, typer.Option(
        "--json", help="Print the API's JSON answer instead of tables (for scripts).",
    )] = False,
) -> None:
    ctx.obj = Options(api_url=api_url, token=token, json=json, out=make_console(),
                      err=make_console(stderr=True))


Work = Callable[[Options, ApiClient], Awaitable[ExitCode | None]]
# After Ctrl-C, how long the cancelled work may take to clean up (the live display gives the
# terminal back) before the command ends anyway.
CLEANUP_SECONDS = 1.0


def _run_until_interrupted(work: Coroutine[Any, Any, ExitCode | None]) -> ExitCode | None:
    """Run ``work`` on an event loop of its own; Ctrl-C raises ``KeyboardInterrupt`` at once.

    ``asyncio.run`` answers Ctrl-C by cancelling the work and then waits, without limit, for it and
    every other task to finish: one that swallows the cancellation (a network read that was timing
    out at that moment) kept the command waiting after Ctrl-C. Here the work gets
    ``CLEANUP_SECONDS``, and what is still running then is abandoned with the process.
    """
    loop = asyncio.new_event_loop()
    interrupted = asyncio.Event()
    loop.add_signal_handler(signal.SIGINT, interrupted.set)
    task = loop.create_task(work)
    stop = loop.create_task(interrupted.wait())
    try:
        loop.run_until_complete(asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED))
        if task.done():
            return task.result()
        task.cancel()
        loop.run_until_complete(asyncio.wait({task}, timeout=CLEANUP_SECONDS))
        raise KeyboardInterrupt
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        stop.cancel()
        loop.run_until_complete(asyncio.wait({stop}))
        if task.done():
            if not task.cancelled():
                task.exception()  # retrieved: raised above, or dropped for the interruption
            loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def run(ctx: typer.Context, work: Work) -> None:
    """Run ``work`` with an API client; turn how it ended into the exit code."""
    opts: Options = ctx.obj

    async def go() -> ExitCode | None:
        async with opts.client() as client:
            return await work(opts, client)

    try:
        code = _run_until_interrupted(go())
    except CliError as exc:
        opts.err.print(Text(f"tenantflow: {exc.message}", style="red"), soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        again = f" (`tenantflow status {opts.following} --wait` follows it again)" if opts.following else ""
        opts.err.print(f"tenantflow: interrupted; a run already started goes on{again}", soft_wrap=True)
        raise typer.Exit(ExitCode.STOPPED) from None
    raise typer.Exit(code or ExitCode.OK)


# --------------------------------------------------------------------------------- waiting
async def wait_for_run(
    opts: Options, client: ApiClient, project: dict[str, Any], *, expect: ProjectStatus, timeout: float,
) -> ExitCode:
    """Follow the tenant's events until its run settles; the exit code of how it settled.

    Raises:
        TenantFailed: it stopped at a failed step, or settled in another state than ``expect``.
        TimedOut: it had not settled after ``timeout`` seconds.
    """
    run_kind = RunKind.DEPROVISION if expect == ProjectStatus.DELETED else RunKind.PROVISION
    view = RunView(project, run_kind=run_kind)
    opts.following = view.name
    try:
        async with asyncio.timeout(timeout):
            final = await _watch(opts, client, str(project["id"]), view)
    except TimeoutError:
        raise TimedOut(f"{view.name} is still {view.status} after {timeout:g}s (it goes on; "
                       f"`tenantflow status {view.name} --wait` follows it again)") from None
    return await _settle(opts, client, view, final, expect=expect)


async def _watch(opts: Options, client: ApiClient, project_id: str, view: RunView) -> str:
    """Feed ``view`` from the event stream until ``end``; return the status the stream ended on."""
    live = Live(view, console=opts.out, refresh_per_second=8) if _live(opts) else None
    with live or contextlib.nullcontext():
        async with contextlib.aclosing(follow(client, project_id)) as events:
            async for event in events:
                data = event.json()
                if event.event == EventKind.END:
                    view.finish(data["status"])
                    return str(data["status"])
                changed = view.apply(event.event, data)
                if live is None and not opts.json:
                    _plain(opts, view, event.event, changed, data)
    raise CliError("the event stream ended without an end event")  # follow() only returns after end


def _live(opts: Options) -> bool:
    return not opts.json and opts.out.is_terminal


def _plain(opts: Options, view: RunView, event: str, changed: StepView | None, data: dict[str, Any]) -> None:
    if changed is not None:
        opts.out.print(stamped(step_line(changed), data.get("at")), soft_wrap=True)
    elif event == EventKind.STATUS:
        opts.out.print(stamped(status_line(view.name, data["status"]), data.get("at")), soft_wrap=True)


async def _settle(
    opts: Options, client: ApiClient, view: RunView, final: str, *, expect: ProjectStatus
) -> ExitCode:
    detail = await client.project(view.id)
    if opts.json:
        print_json(detail)
    if final == expect:
        if not opts.json:
            opts.out.print(Text.assemble(("✔ " if opts.out.is_terminal else "", "green"),
                                         f"{view.name} is {final} ({view.progress()})"), soft_wrap=True)
        return ExitCode.OK
    step = failed_step(s for s in project_steps(detail) if s.run_kind == view.run_kind)
    if final == ProjectStatus.FAILED and step is not None:
        raise TenantFailed(
            f"{view.name} failed at {step.name} (attempt {step.attempt}): {step.error_message}\n"
            f"  fix the cause, then: tenantflow retry {view.name} --wait"
        )
    raise TenantFailed(f"{view.name} is {final}, not {expect}")


# --------------------------------------------------------------------------------- options
Ref = Annotated[str, typer.Argument(help="The tenant's name or id.", show_default=False)]
Wait = Annotated[bool, typer.Option(
    "--wait", help="Follow the run step by step (live on a terminal, a line per event otherwise) until "
    "it settles; the exit code tells how.",
)]
Timeout = Annotated[float, typer.Option(
    "--timeout", min=0.1, metavar="SECONDS", help="With --wait: give up waiting after this long (exit 4).",
)]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation (required when stdin "
                                   "is not a terminal).")]
Reason = Annotated[str, typer.Option("--reason", help="Why (kept in the workflow's log).")]
FailedStep = Annotated[StepName | None, typer.Option(
    "--failed-step", help="Only tenants whose step of this name has failed.", show_default=False,
)]
KindOpt = Annotated[ProjectKind | None, typer.Option(
    "--kind", help="Only tenants of this kind.", show_default=False,
)]
NamePrefix = Annotated[str | None, typer.Option(
    "--name-prefix", help="Only tenants whose name starts with this (literally).", show_default=False,
)]


# -------------------------------------------------------------------------------- commands
@app.command()
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The project's name: 3-40 lowercase letters, digits, '-'.",
                                        show_default=False)],
    wait: Wait = False,
    timeout: Timeout = DEFAULT_WAIT_TIMEOUT,
    idempotency_key: Annotated[str | None, typer.Option(
        "--idempotency-key", metavar="KEY", show_default=False,
        help="A repeat with the same key gets the same project, never a second one.",
    )] = None,
) -> None:
    """Create a project tenant and start provisioning it (an existing one of that name is returned)."""

    async def work(opts: Options, client: ApiClient) -> ExitCode | None:
        project = await client.create_project(name, idempotency_key=idempotency_key)
        if wait:
            return await wait_for_run(opts, client, project, expect=ProjectStatus.ONLINE, timeout=timeout)
        if opts.json:
            print_json(project)
        else:
            opts.out.print(f"{project['name']} is {project['status']} (id {project['id']}); follow it with "
                           f"`tenantflow status {project['name']} --wait`", soft_wrap=True)
        return None

    run(ctx, work)


@app.command("list")
def list_(
    ctx: typer.Context,
    status: Annotated[ProjectStatus | None, typer.Option(
        "--status", help="Only tenants in this status.", show_default=False,
    )] = None,
    kind: KindOpt = None,
    name_prefix: NamePrefix = None,
    failed_step: FailedStep = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Tenants per page (the API caps it).")] = 20,
    all_: Annotated[bool, typer.Option("--all", help="Every page, not just the first.")] = False,
) -> None:
    """Tenants, oldest first: one page, or every page with --all."""

    async def work(opts: Options, client: ApiClient) -> ExitCode | None:
        filters = dict(status=status, kind=kind, name_prefix=name_prefix, failed_step=failed_step,
                       limit=limit)
        page = await client.list_projects(**filters)
        items = list(page["items"])
        while all_ and page["next_cursor"]:
            page = await client.list_projects(**filters, cursor=page["next_cursor"])
            items += page["items"]
        if opts.json:
            print_json({"items": items, "next_cursor": page["next_cursor"]})
        elif not items:
            opts.err.print("no tenants match")
        else:
            show(opts.out, projects_table(items))
            if page["next_cursor"]:
                opts.err.print(f"(first {len(items)} shown; --all for every page)")
        return None

    run(ctx, work)


@app.command()
def status(
    ctx: typer.Context, ref: Ref, wait: Wait = False, timeout: Timeout = DEFAULT_WAIT_TIMEOUT,
) -> None:
    """A tenant's status and steps (exit 1 if it is failed); --wait follows it until it settles."""

    async def work(opts: Options, client: ApiClient) -> ExitCode | None:
        project = await client.project(ref)
        if wait:
            expect = ProjectStatus.DELETED if project["status"] in GOING_AWAY else ProjectStatus.ONLINE
            return await wait_for_run(opts, client, project, expect=expect, timeout=timeout)
        if opts.json:
            print_json(project)
        else:
            show(opts.out, project_header(project))
            opts.out.print()
            show(opts.out, steps_by_run(project_steps(project)))
        step = failed_step(project_steps(project))
        if project["status"] == ProjectStatus.FAILED and step is not None:
            raise TenantFailed(f"{project['name']} failed at {step.name}: {step.error_message}")
        return None

    run(ctx, work)


@app.command()
def retry(
    ctx: typer.Context, ref: Ref, wait: Wait = False, timeout: Timeout = DEFAULT_WAIT_TIMEOUT,
    reason: Reason = "",
) -> None:
    """Resume a failed tenant from its failed step (steps that succeeded do not run again)."""

    async def work(opts: Options, client: ApiClient) -> ExitCode | None:
        accepted = await client.retry(ref, reason=reason)
        if not opts.json:
            opts.out.print(f"retrying {accepted['retrying_step']} of {ref}", soft_wrap=True)
        if wait:
            project = await client.project(ref)
            return await wait_for_run(opts, client, project, expect=ProjectStatus.ONLINE, timeout=timeout)
        if opts.json:
            print_json(accepted)
        return None

    run(ctx, work)


def _confirmed(ctx: typer.Context, question: str, *, yes: bool) -> None:
    """Ask before something that cannot be undone; refuse to guess when nobody can answer."""
    if yes:
        return
    if not sys.stdin.isatty():
        opts: Options = ctx.obj
        opts.err.print("tenantflow: this cannot be undone and stdin is not a terminal: pass --yes")
        raise typer.Exit(ExitCode.USAGE)
    if not typer.confirm(question, default=False):
        raise typer.Exit(ExitCode.STOPPED)


async def _deprovisioned(
    opts: Options, client: ApiClient, project: dict[str, Any], *, wait: bool, timeout: float
) -> ExitCode | None:
    if wait:
        return await wait_for_run(opts, client, project, expect=ProjectStatus.DELETED, timeout=timeout)
    if opts.json:
        print_json(project)
    else:
        opts.out.print(f"{project['name']} is {project['status']}", soft_wrap=True)
    return None


@app.command()
def delete(
    ctx: typer.Context, ref: Ref, yes: Yes = False, wait: Wait = False,
    timeout: Timeout = DEFAULT_WAIT_TIMEOUT,
) -> None:
    """Delete a tenant in any state: its databases, graph, API keys and registrations are removed
    (the record stays for audit and the name is free again). Asks first unless --yes."""
    _confirmed(ctx, f"Delete tenant {ref} and everything it has?", yes=yes)

    async def work(opts: Options, client: ApiClient) -> ExitCode | None:
        return await _deprovisioned(opts, client, await client.delete(ref), wait=wait, timeout=timeout)

    run(ctx, work)


@app.command()
def cancel(
    ctx: typer.Context, ref: Ref, yes: Yes = False, wait: Wait = False,
    timeout: Timeout = DEFAULT_WAIT_TIMEOUT,
) -> None:
    """Stop a provisioning that has not finished and remove what it made (an online tenant takes
    `delete`). Asks first unless --yes."""
    _confirmed(ctx, f"Cancel tenant {ref} and remove what it has?", yes=yes)

    async def work(opts: Options, client: ApiClient) -> ExitCode | None:
        return await _deprovisioned(opts, client, await client.cancel(ref), wait=wait, timeout=timeout)

    run(ctx, work)


@app.command("retry-failed")
def retry_failed(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Only count and name the matching runs; retry nothing.",
    )] = False,
    failed_step: FailedStep = None,
    kind: KindOpt = None,
    name_prefix: NamePrefix = None,
    reason: Reason = "",
    wait: Annotated[bool, typer.Option("--wait", help="Wait until every matching run was resumed.")] = False,
    timeout: Timeout = DEFAULT_WAIT_TIMEOUT,
) -> None:
    """Resume every run waiting on a failed step that matches the filters, in batches (after the
    cause, an outage or a quota, is fixed). Try --dry-run first."""

    async def work(opts: Options, client: ApiClient) -> ExitCode | None:
        result = await client.retry_failed(failed_step=failed_step, kind=kind, name_prefix=name_prefix,
                                           dry_run=dry_run, reason=reason)
        if opts.json and not wait:
            print_json(result)
        elif not opts.json:
            more = " ..." if result["matched"] > len(result["tenants"]) else ""
            names = ", ".join(result["tenants"]) + more
            verb = "would be retried (dry run: nothing was)" if dry_run else "are being retried"
            opts.out.print(f"{result['matched']} waiting run(s) {verb}" + (f": {names}" if names else ""),
                           soft_wrap=True)
            if result["operation_id"]:
                opts.out.print(f"operation {result['operation_id']}", soft_wrap=True)
        if wait and result["operation_id"]:
            await _bulk_done(opts, client, result["operation_id"], timeout=timeout)
        return None

    run(ctx, work)


async def _bulk_done(opts: Options, client: ApiClient, operation_id: str, *, timeout: float) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not (progress := await client.retry_failed_status(operation_id))["done"]:
                await asyncio.sleep(RETRY_FAILED_POLL_SECONDS)
    except TimeoutError:
        raise TimedOut(f"bulk retry {operation_id} not done after {timeout:g}s") from None
    if opts.json:
        print_json(progress)
        return
    opts.out.print(f"retried {progress['retried']} of {progress['matched']}", soft_wrap=True)
    if progress["not_waiting"]:
        opts.out.print(f"no longer waiting: {', '.join(progress['not_waiting'])}", soft_wrap=True)


@app.command()
def connection(ctx: typer.Context, ref: Ref) -> None:
    """Print how to reach an online tenant, passwords and API keys included. Every read is
    recorded by the API (who, from where, when); keep the output out of logs and shell history."""

    async def work(opts: Options, client: ApiClient) -> ExitCode | None:
        details = await client.connection(ref)
        if opts.json:
            print_json(details)
            return None
        for section, values in details.items():
            if not values:
                opts.out.print(f"{section:<9} none", soft_wrap=True)
                continue
            for key, value in values.items():
                if value is not None:
                    opts.out.print(f"{section:<9} {key:<18} {value}", soft_wrap=True)
        return None

    run(ctx, work)


@app.command()
def events(
    ctx: typer.Context, ref: Ref,
    after: Annotated[str | None, typer.Option(
        "--after", metavar="ID", show_default=False, help="Only events after this id (Last-Event-ID).",
    )] = None,
) -> None:
    """Print the tenant's raw event stream until it settles (for debugging; --json: one object a line)."""

    async def work(opts: Options, client: ApiClient) -> ExitCode | None:
        async with contextlib.aclosing(follow(client, ref, last_event_id=after)) as stream:
            async for event in stream:
                if opts.json:
                    print_json_line({"id": event.id, "event": event.event, "data": event.json()})
                else:
                    head = f"id: {event.id}\n" if event.id is not None else ""
                    sys.stdout.write(f"{head}event: {event.event}\ndata: {event.data}\n\n")
                    sys.stdout.flush()
        return None

    run(ctx, work)


keys_app = typer.Typer(help="API keys: create (shown once), list, revoke. Needs an admin key or the token.",
                       no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def keys_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Who will hold the key (shown in audits).")],
    scope: Annotated[Scope, typer.Option(
        "--scope", case_sensitive=False,
        help="read (look), write (create, retry, delete tenants) or admin (connection secrets, keys).",
    )] = Scope.READ,
) -> None:
    """Create an API key and print it: it is shown this once and cannot be read again."""

    async def work(opts: Options, client: ApiClient) -> ExitCode | None:
        created = await client.create_key(name, scope.value)
        if opts.json:
            print_json(created)
            return None
        opts.err.print(f"created {created['scope']} key {created['name']!r} ({created['prefix']}…); "
                       "store it now, it is not shown again:", soft_wrap=True)
        sys.stdout.write(created["key"] + "\n")
        return None

    run(ctx, work)


@keys_app.command("list")
def keys_list(ctx: typer.Context) -> None:
    """Every API key, revoked ones too (names, scopes and prefixes; never a key)."""

    async def work(opts: Options, client: ApiClient) -> ExitCode | None:
        keys = await client.list_keys()
        if opts.json:
            print_json(keys)
        else:
            opts.out.print(keys_table(keys))
        return None

    run(ctx, work)


@keys_app.command("revoke")
def keys_revoke(
    ctx: typer.Context,
    key_id: Annotated[str, typer.Argument(metavar="ID", help="The key's id (keys list).")],
) -> None:
    """Revoke an API key: its next request is refused (401)."""

    async def work(opts: Options, client: ApiClient) -> ExitCode | None:
        revoked = await client.revoke_key(key_id)
        if opts.json:
            print_json(revoked)
        else:
            opts.out.print(f"revoked {revoked['scope']} key {revoked['name']!r} ({revoked['prefix']}…)",
                           soft_wrap=True)
        return None

    run(ctx, work)


def main() -> None:
    """The ``tenantflow`` console script."""
    app(prog_name="tenantflow")
