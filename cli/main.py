"""`payops`: the command line. `payops --help` lists the commands."""

# why-function-level-imports: each command imports what it runs, so `payops --help` and the light
# commands start fast and never load the dev stack, the worker or a database driver they do not use.
from __future__ import annotations

import asyncio
import json
import sys
from typing import Annotated, Optional

import typer
from rich.console import Console

from core.platform.settings import get_settings

app = typer.Typer(
    name="payops",
    help="payops: payments operations on Temporal. `payops up` starts everything.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
ledger_app = typer.Typer(help="Ledger tools.", no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")
console = Console()
err = Console(stderr=True)


NO_DATABASE = ("[red]PAYOPS_DATABASE_URL is not set[/red] and no `payops up` runs on this data dir "
               "(start one here, or export the variable)")
_OWN_SETTINGS = {"up", "status"}  # these read stack.json themselves


@app.callback()
def _find_the_stack(ctx: typer.Context) -> None:
    """Every command but `up`/`status` uses the URLs of the `payops up` running in this folder
    (its stack.json) for the PAYOPS_* variables that are not set (devstack/stack_state.py)."""
    if ctx.invoked_subcommand not in _OWN_SETTINGS:
        from devstack.stack_state import export_running_stack

        try:
            export_running_stack(get_settings())
        except Exception:  # noqa: BLE001 — e.g. invalid settings: the command itself reports them
            pass


def _parse_ttl(value: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    value = value.strip().lower()
    try:
        if value[-1] in units:
            return int(value[:-1]) * units[value[-1]]
        return int(value)
    except (ValueError, IndexError):
        raise typer.BadParameter("use seconds or a number with s/m/h/d, e.g. 3600, 30m, 12h, 7d") from None


@app.command()
def up() -> None:
    """Start the whole stack: Temporal (+UI), PostgreSQL, Redis, migrations, sandbox bank, worker, API."""
    from devstack.stack import run_up

    raise typer.Exit(run_up(get_settings()))


@app.command()
def status() -> None:
    """Show what runs where (from the last `payops up` in this data dir)."""
    from devstack.stack import show_status

    raise typer.Exit(show_status(get_settings()))


@app.command()
def worker() -> None:
    """Run one Temporal worker (run several to scale out)."""
    from workers.main import main

    main()


@app.command()
def migrate(revision: str = "heads") -> None:
    """Apply database migrations (Alembic) to PAYOPS_DATABASE_URL."""
    from core.platform.db import run_migrations

    settings = get_settings()
    if not settings.database_url:
        err.print(NO_DATABASE)
        raise typer.Exit(2)
    run_migrations(settings.database_url, revision)
    console.print(f"migrated to {revision}")


@app.command()
def token(
    role: Annotated[list[str], typer.Option("--role", "-r", help="Role (repeatable)")],
    merchant: Annotated[Optional[str], typer.Option("--merchant", "-m", help="Merchant id claim")] = None,
    agent: Annotated[Optional[str], typer.Option("--agent", help="Agent id claim (the agent role)")] = None,
    sub: Annotated[Optional[str], typer.Option(help="Subject (user id)")] = None,
    ttl: Annotated[str, typer.Option(help="Lifetime: seconds or 30m / 12h / 7d")] = "1h",
) -> None:
    """Print a dev JWT (HS256, signed with PAYOPS_JWT_SECRET)."""
    from core.platform.auth_tokens import mint_dev_token
    from core.platform.roles import AGENT_ROLES, MERCHANT_ROLES, Role

    valid = [r.value for r in Role]
    for r in role:
        if r not in valid:
            err.print(f"[red]unknown role {r!r}[/red]; roles: {', '.join(valid)}")
            raise typer.Exit(2)
    if any(Role(r) in MERCHANT_ROLES for r in role) and not merchant:
        err.print("[red]merchant roles need --merchant MERCHANT_ID[/red]")
        raise typer.Exit(2)
    if any(Role(r) in AGENT_ROLES for r in role) and not agent:
        err.print("[red]the agent role needs --agent AGENT_ID[/red]")
        raise typer.Exit(2)
    typer.echo(mint_dev_token(get_settings(), role=role, sub=sub, merchant_id=merchant, agent_id=agent,
                              ttl_seconds=_parse_ttl(ttl)))


ops_app = typer.Typer(help="Ops through Temporal's own tools.", no_args_is_help=True)
app.add_typer(ops_app, name="ops")


def _api_url() -> str:
    """PAYOPS_PUBLIC_BASE_URL if set, else the API of the `payops up` running in this folder."""
    from devstack.stack_state import read_running_state

    settings = get_settings()
    if "public_base_url" not in settings.model_fields_set:
        api = ((read_running_state(settings) or {}).get("services") or {}).get("api") or {}
        if api.get("url"):
            return str(api["url"])
    return settings.public_base_url


@ops_app.command("grant")
def ops_grant(
    scope: Annotated[str, typer.Argument(help="payout | ops_action")],
    subject_id: Annotated[str, typer.Argument(metavar="ID", help="the payout id or ops action id")],
    decision: Annotated[str, typer.Argument(help="payout: retry | cancel; ops_action: approve | reject")],
    token: Annotated[Optional[str], typer.Option(
        envvar="PAYOPS_TOKEN", help="your payops API token (the grant names its subject)")] = None,
    api: Annotated[Optional[str], typer.Option(
        help="the API's base URL (default: PAYOPS_PUBLIC_BASE_URL, else the running `payops up`'s API)")] = None,
    ttl: Annotated[Optional[int], typer.Option(help="seconds (capped by PAYOPS_OPS_GRANT_TTL_SECONDS)")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Ask the API for a grant (POST /api/v1/ops/grants) and print it, with the copy-paste
    `temporal workflow update execute` command that uses it."""
    import httpx

    if not token:
        err.print("[red]no token[/red]: pass --token or export PAYOPS_TOKEN (e.g. `payops token --role ops_admin`)")
        raise typer.Exit(2)
    base = (api or _api_url()).rstrip("/")
    body = {"scope": scope, "id": subject_id, "decision": decision}
    if ttl is not None:
        body["ttl_seconds"] = ttl
    try:
        r = httpx.post(f"{base}/api/v1/ops/grants", json=body, headers={"Authorization": f"Bearer {token}"},
                       timeout=15.0)
    except httpx.HTTPError as exc:
        err.print(f"[red]the API at {base} did not answer[/red]: {exc}")
        raise typer.Exit(1) from None
    if r.status_code != 201:
        try:
            detail = r.json().get("detail") or r.text
        except ValueError:
            detail = r.text
        err.print(f"[red]refused ({r.status_code})[/red]: {detail}")
        raise typer.Exit(1)
    data = r.json()
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    typer.echo(data["grant"])
    # plain echo, not rich: the command must stay copy-pasteable (no wrapping)
    typer.echo(f"# for {data['actor']} ({', '.join(data['roles'])}), {data['decision']} on {data['workflow_id']}, "
               f"expires {data['expires_at']}\n{data['example']}", err=True)


def _with_closed_workflow_holds(report, settings):
    """Add the active holds whose payout's workflow is closed (terminated: nothing will release
    them). Needs Temporal; when it cannot be reached the check says so and does not pass."""
    from core.payouts.reaper import check_closed_workflow_holds

    try:
        extra = asyncio.run(check_closed_workflow_holds(settings))
    except Exception as exc:  # noqa: BLE001 — an unreachable Temporal is reported, not a traceback
        extra = [f"workflows_unchecked: could not ask Temporal at {settings.temporal_address} whether the "
                 f"workflows of active holds run ({type(exc).__name__}: {exc})"]
    if not extra:
        return report
    return report.model_copy(update={"ok": False, "violations": [*report.violations, *extra]})


@ledger_app.command("check")
def ledger_check(
    as_json: Annotated[bool, typer.Option("--json")] = False,
    against_bank: Annotated[bool, typer.Option(
        "--against-bank", help="also compare every payout with each bank's record of it")] = False,
    days: Annotated[Optional[float], typer.Option(
        help="with --against-bank: payouts and bank payments of this many last days "
             "(default PAYOPS_BANK_RECONCILIATION_DAYS)")] = None,
    confirm_seconds: Annotated[Optional[float], typer.Option(
        help="with --against-bank: look again after this many seconds before calling a disagreement "
             "(default PAYOPS_BANK_RECONCILIATION_CONFIRM_SECONDS)")] = None,
) -> None:
    """Verify the ledger: balanced journals, balances = entries, holds ↔ payouts. Exit 1 on violations.

    With --against-bank, also compare payops's payouts with the banks' records (each connector's
    payment report, or a status inquiry by reference): every disagreement is recorded, alerted and
    listed, and the exit code is 1 (3 when a bank could not be asked)."""
    from core.ledger.service import run_ledger_check

    settings = get_settings()
    if not settings.database_url:
        err.print(NO_DATABASE)
        raise typer.Exit(2)
    report = asyncio.run(run_ledger_check(settings.database_url))
    report = _with_closed_workflow_holds(report, settings)
    bank = None
    if against_bank:
        bank = asyncio.run(_check_against_bank(
            settings, settings.bank_reconciliation_days if days is None else days,
            settings.bank_reconciliation_confirm_seconds if confirm_seconds is None else confirm_seconds))
    if as_json:
        data = report.model_dump()
        if bank is not None:
            data = {"ledger": data, "bank": bank.model_dump(mode="json")}
        typer.echo(json.dumps(data, default=str, indent=2))
    else:
        colour = "green" if report.ok else "red"
        console.print(
            f"[{colour}]ledger {'OK' if report.ok else 'VIOLATIONS'}[/{colour}]: "
            f"{report.transactions_checked} transactions, {report.accounts_checked} accounts, "
            f"{report.holds_checked} holds checked"
        )
        for v in report.violations:
            console.print(f"  - {v}")
        if bank is not None:
            colour = {"ok": "green", "discrepancies": "red"}.get(bank.status, "yellow")
            console.print(
                f"[{colour}]bank {bank.status.upper()}[/{colour}] (run {bank.run_id}): {bank.payouts_checked} payouts, "
                f"{bank.bank_payments_checked} bank payments since {bank.since:%Y-%m-%d %H:%M}Z; "
                f"{bank.agreed} agree, {bank.in_flight} in flight, {len(bank.discrepancies)} disagree"
            )
            for d in bank.discrepancies:
                console.print(f"  - [{d.severity}] {d.kind}: {d.message}")
            for e in bank.errors:
                console.print(f"  ! {e}")
    code = 0 if report.ok else 1
    if bank is not None and code == 0:
        code = {"ok": 0, "discrepancies": 1}.get(bank.status, 3)
    raise typer.Exit(code)


async def _check_against_bank(settings, days: float, confirm_seconds: float):
    from connectors.registry import build_registry
    from core.reconciliation.bank import run_bank_reconciliation
    from core.platform.db import create_engine, create_sessionmaker

    engine = create_engine(settings.database_url, pool_size=2, max_overflow=0)
    registry = build_registry(settings)
    try:
        return await run_bank_reconciliation(create_sessionmaker(engine), registry, days=days,
                                             confirm_seconds=confirm_seconds, requested_by="cli")
    finally:
        await registry.aclose()
        await engine.dispose()


# --- merchant webhooks -----------------------------------------------------------------------

webhooks_app = typer.Typer(help="Merchant webhooks: a local receiver for integrating.", no_args_is_help=True)
app.add_typer(webhooks_app, name="webhooks")


@webhooks_app.command("listen")
def webhooks_listen(
    secret: Annotated[list[str], typer.Option("--secret", "-s", help="Endpoint signing secret (repeatable)")],
    port: Annotated[int, typer.Option(help="Port to listen on")] = 4242,
    host: Annotated[str, typer.Option(help="Interface to bind")] = "127.0.0.1",
    tolerance: Annotated[int, typer.Option(help="Max signature age, seconds")] = 300,
    as_json: Annotated[bool, typer.Option("--json", help="Print each verified event as JSON")] = False,
) -> None:
    """Receive webhooks locally: verify each signature with --secret and print the verified events."""
    import uvicorn

    from devstack.webhook_listener import format_line, receiver_app

    def emit(item: dict) -> None:
        if as_json and item.get("verified") and "event" in item:
            typer.echo(json.dumps(item["event"]))
        else:
            typer.echo(format_line(item))

    err.print(f"listening on http://{host}:{port}/ (register it as a webhook endpoint; Ctrl-C stops)")
    uvicorn.run(receiver_app(secret, tolerance_seconds=tolerance, emit=emit), host=host, port=port,
                log_level="warning", access_log=False)


# --- provider syncs -------------------------------------------------------------------------

sync_app = typer.Typer(help="Provider syncs (Vima API, PayShack portal): status, trigger, backfill, pause.",
                       no_args_is_help=True)
app.add_typer(sync_app, name="sync")
SourceOpt = Annotated[str, typer.Option("--source", "-s", help="vima | payshack")]


async def _sync_client():
    from core.platform.temporal import connect_temporal

    return await connect_temporal(get_settings())


@sync_app.command("backfill")
def sync_backfill(
    source: SourceOpt,
    date_from: Annotated[str, typer.Option("--from", help="first day, YYYY-MM-DD")],
    date_to: Annotated[str, typer.Option("--to", help="last day (inclusive), YYYY-MM-DD")],
    wait: Annotated[bool, typer.Option(help="follow the backfill with a progress bar")] = True,
) -> None:
    """Re-read a date range from a provider, with a progress bar fed by the workflow's query."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from core.sync import service as sync_service
    from core.platform.errors import PayopsError

    async def go() -> int:
        client = await _sync_client()
        try:
            started = await sync_service.start_backfill(client, get_settings(), source, date_from, date_to,
                                                        requested_by="cli")
        except PayopsError as exc:
            err.print(f"[red]{exc.detail}[/red]")
            return 2
        workflow_id = started["workflow_id"]
        console.print(f"backfill started: [bold]{workflow_id}[/bold]")
        if not wait:
            return 0
        columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("{task.fields[detail]}")]
        with Progress(*columns, console=console) as bar:
            task = bar.add_task(f"{source} {date_from}..{date_to}", total=None, detail="starting")
            while True:
                try:
                    p = await sync_service.sync_progress(client, workflow_id)
                except PayopsError:
                    await asyncio.sleep(0.5)  # between continue-as-new runs, or not started yet
                    continue
                t = p.totals
                bar.update(task, total=p.expected_total, completed=t.rows_fetched,
                           detail=f"+{t.inserted} new, {t.updated} updated, {t.quarantined} quarantined")
                if p.status in ("success", "error"):
                    break
                await asyncio.sleep(0.5)
        if p.status == "error":
            err.print(f"[red]backfill failed: {p.error}[/red]")
            return 1
        console.print(f"done: {t.rows_fetched} rows read, {t.inserted} new, {t.updated} updated, "
                      f"{t.unchanged} unchanged, {t.quarantined} quarantined")
        return 0

    raise typer.Exit(asyncio.run(go()))


@sync_app.command("trigger")
def sync_trigger(source: SourceOpt) -> None:
    """Run an incremental sync of a source now."""
    from core.sync import service as sync_service

    async def go() -> dict:
        return await sync_service.trigger_sync(await _sync_client(), get_settings(), source, requested_by="cli")

    console.print_json(data=asyncio.run(go()))


@sync_app.command("pause")
def sync_pause(source: SourceOpt, note: Annotated[Optional[str], typer.Option(help="why")] = None) -> None:
    """Pause a source's schedule."""
    from core.sync import service as sync_service

    async def go() -> dict:
        return await sync_service.pause_schedule(await _sync_client(), source, note=note)

    console.print_json(data=asyncio.run(go()), default=str)


@sync_app.command("resume")
def sync_resume(source: SourceOpt) -> None:
    """Resume a source's schedule."""
    from core.sync import service as sync_service

    async def go() -> dict:
        return await sync_service.resume_schedule(await _sync_client(), source)

    console.print_json(data=asyncio.run(go()), default=str)


@sync_app.command("status")
def sync_status_cmd(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every source's sync state, schedule and last run."""
    from core.sync import service as sync_service
    from core.platform.db import create_engine, create_sessionmaker

    async def go() -> list:
        settings = get_settings()
        engine = create_engine(settings.database_url)
        try:
            try:
                client = await _sync_client()
            except Exception:  # noqa: BLE001 - status still shows the database side
                client = None
            async with create_sessionmaker(engine)() as session:
                return await sync_service.sync_status(session, client, recent_runs=1)
        finally:
            await engine.dispose()

    rows = asyncio.run(go())
    if as_json:
        console.print_json(data=rows, default=str)
        return
    for s in rows:
        schedule = s["schedule"]
        when = "paused" if schedule and schedule["paused"] else ("scheduled" if schedule else "no schedule")
        console.print(f"[bold]{s['source']}[/bold] {s['status']} ({when}) synced={s['records_synced']} "
                      f"quarantined={s['records_quarantined']} last_success={s['last_success_at']}"
                      + (f" [red]{s['error']}[/red]" if s["error"] else ""))


dashboard_app = typer.Typer(help="Dashboards: rollup maintenance.", no_args_is_help=True)
app.add_typer(dashboard_app, name="dashboard")


@dashboard_app.command("rebuild")
def dashboard_rebuild(
    date_from: Annotated[str, typer.Option("--from", help="first UTC day, YYYY-MM-DD")],
    date_to: Annotated[str, typer.Option("--to", help="last UTC day (inclusive), YYYY-MM-DD")],
) -> None:
    """Recompute the dashboard rollups of a date range from the raw rows (one day at a time)."""
    from datetime import date

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from core.dashboards.rollups import rebuild_rollups
    from core.platform.db import create_engine

    try:
        first, last = date.fromisoformat(date_from), date.fromisoformat(date_to)
    except ValueError:
        raise typer.BadParameter("dates are YYYY-MM-DD") from None
    if last < first:
        raise typer.BadParameter("--to is before --from")
    settings = get_settings()
    if not settings.database_url:
        err.print(NO_DATABASE)
        raise typer.Exit(2)

    async def go():
        engine = create_engine(settings.database_url)
        try:
            with Progress(TextColumn("rebuilding {task.fields[day]}"), BarColumn(), MofNCompleteColumn(),
                          TimeRemainingColumn(), console=err) as bar:
                task = bar.add_task("rebuild", total=(last - first).days + 1, day=first.isoformat())
                return await rebuild_rollups(
                    engine, first, last, progress=lambda d, n: bar.update(task, advance=1, day=d.isoformat()))
        finally:
            await engine.dispose()

    result = asyncio.run(go())
    console.print(f"rebuilt {result.days} day(s): {result.transactions} transactions")


@app.command()
def demo(
    reset: Annotated[bool, typer.Option("--reset", help="remove the demo merchants' data (only theirs) first")] = False,
    follow: Annotated[bool, typer.Option(help="keep creating payouts until Ctrl-C")] = False,
    api_url: Annotated[Optional[str], typer.Option(help="default: http://PAYOPS_API_HOST:PAYOPS_API_PORT")] = None,
) -> None:
    """Seed the demo (merchants funded, payouts, some into dlq, an action awaiting approval, syncs).
    `payops up` runs it by itself in dev; `--reset` starts the demo over."""
    from devstack.demo import main as demo_main, with_running_stack

    settings, _ = with_running_stack(get_settings())
    if reset:
        from devstack.demo_reset import reset_demo_data

        if not settings.database_url:
            err.print("[red]PAYOPS_DATABASE_URL is not set (a `payops up` in this directory sets it for its children; "
                      "export it from `payops status`)[/red]")
            raise typer.Exit(2)
        report = asyncio.run(reset_demo_data(settings))
        console.print(f"removed {report.merchants} demo merchant(s), {report.payouts} payout(s) "
                      f"({report.workflows_terminated} workflow(s) terminated), {report.journal_transactions} journal "
                      f"transaction(s), {report.ops_actions} ops action(s)")
        if report.rollups_error:
            err.print(f"[yellow]dashboard rollups not rebuilt: {report.rollups_error}[/yellow]")
    demo_main([*(["--api-url", api_url] if api_url else []), *([] if follow else ["--once"])])


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
