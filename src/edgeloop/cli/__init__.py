"""The ``edgeloop`` command line: validate, eval, convert, demo."""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer
from rich.console import Console

from edgeloop.evaluate import compile_snapshot, evaluate, evaluate_all
from edgeloop.model import FlagSet, FlagsValidationError, dump_flags, load_flags_file

app = typer.Typer(
    help="edgeloop: flags, experiments and guardrails decided at the edge.",
    no_args_is_help=True,
    add_completion=False,
)
out = Console()
err = Console(stderr=True)


class Format(StrEnum):
    EDGELOOP = "edgeloop"
    FLAGD = "flagd"


def _load(path: Path, fmt: Format = Format.EDGELOOP) -> FlagSet:
    try:
        if fmt is Format.FLAGD:
            from edgeloop.model.flagd import import_flagd

            return import_flagd(_read(path), path.name)
        return load_flags_file(path)
    except FlagsValidationError as exc:
        _report_invalid(exc)
        raise typer.Exit(1) from None


def _report_invalid(exc: FlagsValidationError) -> None:
    for issue in exc.issues:
        err.print(str(issue), markup=False, highlight=False)
    n = len(exc.issues)
    err.print(f"[red]{n} error{'s' if n != 1 else ''}[/red]")


def _parse_now(now: str | None) -> float:
    if now is None:
        return time.time()  # the CLI is the edge of the system: the only place that reads it
    try:
        return float(now)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(now.replace("Z", "+00:00")).timestamp()
    except ValueError:
        err.print(f"--now: expected epoch seconds or an ISO-8601 instant, got {now!r}")
        raise typer.Exit(2) from None


@app.command()
def validate(
    file: Annotated[Path, typer.Argument(help="Flags-as-code file (YAML or JSON).")],
    fmt: Annotated[Format, typer.Option("--format", help="Input format.")] = Format.EDGELOOP,
) -> None:
    """Check a flags file; print every error as file:line: path: message (exit 1 if any)."""
    flagset = _load(file, fmt)
    n = len(flagset.flags)
    out.print(
        f"[green]ok[/green] {file}: {n} flag{'s' if n != 1 else ''}, "
        f"{len(flagset.segments)} segment{'s' if len(flagset.segments) != 1 else ''}"
    )


@app.command("eval")
def eval_(
    file: Annotated[Path, typer.Argument(help="Flags-as-code file (YAML or JSON).")],
    flag: Annotated[
        list[str] | None,
        typer.Option("--flag", "-f", help="Flag key (repeatable); all if omitted."),
    ] = None,
    context: Annotated[
        str,
        typer.Option(
            "--context", "-c", help='Evaluation context as JSON, e.g. {"targetingKey": "a1"}'
        ),
    ] = "{}",
    now: Annotated[
        str | None, typer.Option(help="Evaluation time: epoch seconds or ISO-8601 (default: now).")
    ] = None,
) -> None:
    """Evaluate flags for one context and print the decisions as JSON."""
    try:
        ctx = json.loads(context)
    except json.JSONDecodeError as exc:
        err.print(f"--context: not JSON ({exc.msg} at position {exc.pos})")
        raise typer.Exit(2) from None
    if not isinstance(ctx, dict):
        err.print("--context: expected a JSON object of attributes")
        raise typer.Exit(2)
    snapshot = compile_snapshot(_load(file))
    moment = _parse_now(now)
    if flag and len(flag) == 1:
        decisions: Any = evaluate(snapshot, flag[0], ctx, moment)
    else:
        decisions = evaluate_all(snapshot, ctx, moment, keys=flag or None)
    sys.stdout.write(msgspec.json.format(msgspec.json.encode(decisions)).decode() + "\n")


@app.command()
def convert(
    source: Annotated[Path, typer.Argument(help="Input file.")],
    target: Annotated[Path, typer.Argument(help="Output file (.yaml/.yml or .json).")],
    from_: Annotated[Format, typer.Option("--from", help="Input format.")] = Format.EDGELOOP,
    to: Annotated[Format, typer.Option("--to", help="Output format.")] = Format.EDGELOOP,
) -> None:
    """Convert between edgeloop flags-as-code and flagd flag definitions."""
    flagset = _load(source, from_)
    if to is Format.FLAGD:
        from edgeloop.model.flagd import export_flagd

        document, warnings = export_flagd(flagset)
        for warning in warnings:
            err.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)
        text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    else:
        text = dump_flags(flagset, "json" if target.suffix == ".json" else "yaml")
    target.write_text(text, encoding="utf-8")
    out.print(f"wrote {target} ({len(flagset.flags)} flags, {to} format)")


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        err.print(f"cannot read {path}: {exc}")
        raise typer.Exit(1) from None


@app.command()
def demo(
    file: Annotated[Path, typer.Option(help="Flags file with the experiment to run.")] = Path(
        "examples/micro-event.yaml"
    ),
    flag: Annotated[str, typer.Option(help="The experiment flag.")] = "micro-event-offer",
    hours: Annotated[float, typer.Option(min=0.25, max=24 * 14, help="Event length.")] = 72.0,
    arrivals: Annotated[
        float, typer.Option(min=0.1, max=10_000, help="Mean arrivals per event minute.")
    ] = 50.0,
    retention_days: Annotated[
        int, typer.Option(min=0, max=120, help="Days to run on after the event (returns).")
    ] = 31,
    seed: Annotated[int, typer.Option(help="Same seed, same event.")] = 7,
    sample_rate: Annotated[
        float,
        typer.Option(min=0.001, max=1.0, help="Privacy sample for user-level records (retention)."),
    ] = 0.1,
    out_dir: Annotated[Path, typer.Option(help="Where the report and charts go.")] = Path(
        "demo-output"
    ),
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="Keep the platform's state here (default: a temp dir)."),
    ] = None,
    serve: Annotated[
        bool, typer.Option(help="Leave the platform running afterwards (until Ctrl-C).")
    ] = False,
    host: Annotated[str, typer.Option(help="Address to serve on with --serve.")] = "127.0.0.1",
    control_port: Annotated[int, typer.Option(help="Control-plane port (--serve).")] = 8700,
    edge_port: Annotated[int, typer.Option(help="Edge port (--serve).")] = 8701,
) -> None:
    """A 72-hour micro-event in about a minute: simulated attendees with known true effects
    drive the embedded platform in event time; the guardrail rolls the harmful variant back.

    The A/B/C matrix of FILE runs behind its monetize-after-value gate; every 5 event minutes
    the edge ships aggregates, every 15 the decision loop evaluates the guardrails. After the
    event the clock runs on RETENTION_DAYS days (returns only) so D7/D30 mature. At the end: a
    report per variant, report.json and charts (PNG) in OUT_DIR.
    """
    import logging
    import os
    import shutil
    import tempfile

    if data_dir is not None and data_dir.exists() and any(data_dir.iterdir()):
        err.print(f"--data-dir {data_dir} is not empty: the demo needs a fresh platform")
        raise typer.Exit(2)
    flagset = _load(file)
    found = flagset.flags.get(flag)
    if found is None or found.experiment is None:
        err.print(f"{file} has no experiment flag {flag!r}")
        raise typer.Exit(1)
    # The demo prints what matters itself (the loop's trips included): only errors get through.
    logging.getLogger("edgeloop").setLevel(logging.ERROR)
    # Throwaway state goes to a RAM-backed directory where there is one: the demo commits
    # thousands of small SQLite transactions and need not wait for a disk to sync each.
    shm = Path("/dev/shm")
    scratch = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
    workdir = data_dir or Path(tempfile.mkdtemp(prefix="edgeloop-demo-", dir=scratch))
    # The event (and the month after it) ends now, so that `--serve` carries on in wall-clock
    # time from a consistent state; hour-aligned, so every number printed is the same each run.
    span = hours * 3600 + retention_days * 86400
    start = (time.time() - span) // 3600 * 3600
    from .demo import MicroEventDemo

    run: MicroEventDemo | None = None
    try:
        run = MicroEventDemo(
            file, flag, workdir, hours, arrivals, retention_days, seed, sample_rate, start
        )
        started = time.perf_counter()
        run.play()
        elapsed = time.perf_counter() - started
        run.report(out_dir, elapsed)
        if serve:
            logging.getLogger("edgeloop").setLevel(logging.WARNING)
            run.serve(host, control_port, edge_port)
    finally:
        if run is not None:
            run.close()
        if data_dir is None:
            shutil.rmtree(workdir, ignore_errors=True)


# services -----------------------------------------------------------------------------------

DataDir = Annotated[
    Path, typer.Option("--data-dir", envvar="EDGELOOP_DATA_DIR", help="Where state is kept.")
]
Host = Annotated[str, typer.Option(help="Address to listen on.")]
LoopEvery = Annotated[
    float, typer.Option(help="Seconds between decision-loop rounds (guardrails).", min=0.1)
]


@app.command()
def up(
    data_dir: DataDir = Path(".edgeloop"),
    host: Host = "127.0.0.1",
    control_port: Annotated[int, typer.Option(help="Control-plane port.")] = 8700,
    edge_port: Annotated[int, typer.Option(help="Edge port.")] = 8701,
    loop_every: LoopEvery = 30.0,
) -> None:
    """Control plane + one edge in one process, SQLite under --data-dir: no other server needed."""
    from . import services

    plane = services.open_control(data_dir)
    token = plane.bootstrap_admin(time.time())
    loop = services.DecisionLoop(plane, notify=services.webhook_notifier(plane))
    node = services.open_edge(data_dir, plane.signer.public_key)
    source = services.local_source(plane)
    sink, keys = services.local_telemetry(plane)

    def ready() -> None:
        out.print(f"control plane  http://{host}:{control_port}   (API docs: /docs)")
        out.print(f"edge           http://{host}:{edge_port}   (decide: POST /v1/decide)")
        out.print(f"data           {data_dir}/   snapshot version {node.version}")
        if token:
            out.print(f"admin token    {token}")
            out.print("               shown once: store it now (it is kept only as a hash)")

    services.run(
        services.serve_all(
            [
                services.Service(services.create_control_app(plane, loop=loop), host, control_port),
                services.Service(services.create_edge_app(node), host, edge_port),
            ],
            background=[
                lambda: node.run_sync(source),
                lambda: services.telemetry_loop(node, sink, keys),
                lambda: services.decision_loop(loop, time.time, loop_every),
            ],
            on_ready=ready,
        )
    )


@app.command()
def control(
    data_dir: DataDir = Path(".edgeloop"),
    host: Host = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8700,
    loop_every: LoopEvery = 30.0,
) -> None:
    """The control plane alone (edges connect with `edgeloop edge`)."""
    from . import services

    plane = services.open_control(data_dir)
    token = plane.bootstrap_admin(time.time())
    loop = services.DecisionLoop(plane, notify=services.webhook_notifier(plane))

    def ready() -> None:
        out.print(f"control plane  http://{host}:{port}")
        out.print(f"public key     {plane.signer.public_key}")
        if token:
            out.print(f"admin token    {token}   (shown once)")

    services.run(
        services.serve_all(
            [services.Service(services.create_control_app(plane, loop=loop), host, port)],
            background=[lambda: services.decision_loop(loop, time.time, loop_every)],
            on_ready=ready,
        )
    )


@app.command()
def edge(
    control_url: Annotated[
        str, typer.Option("--control", envvar="EDGELOOP_CONTROL", help="Control-plane URL.")
    ],
    token: Annotated[str, typer.Option(envvar="EDGELOOP_TOKEN", help="An edge-role token.")],
    public_key: Annotated[
        str, typer.Option(envvar="EDGELOOP_PUBLIC_KEY", help="The control plane's public key.")
    ],
    data_dir: DataDir = Path(".edgeloop-edge"),
    host: Host = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8701,
    edge_id: Annotated[str, typer.Option(help="This edge's name in aggregates.")] = "edge",
) -> None:
    """An edge node that syncs snapshots from a control plane and serves decisions."""
    from edgeloop.sync import HttpAggregateChannel

    from . import services

    try:
        node = services.open_edge(data_dir, public_key, edge_id=edge_id)
    except ValueError as exc:
        err.print(f"--public-key: {exc}")
        raise typer.Exit(2) from None
    source = services.http_source(node, control_url, token)
    channel = HttpAggregateChannel(control_url, token)

    def ready() -> None:
        out.print(f"edge  http://{host}:{port}   serving version {node.version or '(none yet)'}")

    services.run(
        services.serve_all(
            [services.Service(services.create_edge_app(node), host, port)],
            background=[
                lambda: node.run_sync(source),
                lambda: services.telemetry_loop(node, channel.send, channel.keys),
            ],
            on_ready=ready,
        )
    )


flags_app = typer.Typer(help="Change flags on a running control plane.", no_args_is_help=True)
app.add_typer(flags_app, name="flags")

ControlUrl = Annotated[
    str, typer.Option("--control", envvar="EDGELOOP_CONTROL", help="Control-plane URL.")
]
Token = Annotated[str, typer.Option(envvar="EDGELOOP_TOKEN", help="API token.")]


def _call(method: str, url: str, token: str, **kwargs: Any) -> Any:
    import httpx

    try:
        response = httpx.request(
            method, url, headers={"Authorization": f"Bearer {token}"}, timeout=30, **kwargs
        )
    except httpx.HTTPError as exc:
        err.print(f"cannot reach {url}: {exc}")
        raise typer.Exit(1) from None
    body = (
        response.json()
        if response.headers.get("content-type", "").startswith("application/json")
        else {}
    )
    if response.status_code == 422 and "errors" in body:
        for e in body["errors"]:
            err.print(e["text"], markup=False, highlight=False)
        raise typer.Exit(1)
    if response.status_code >= 400:
        err.print(f"{response.status_code}: {body.get('detail', response.text)}")
        raise typer.Exit(1)
    return body


@flags_app.command("push")
def flags_push(
    file: Annotated[Path, typer.Argument(help="Flags-as-code file (YAML or JSON).")],
    control_url: ControlUrl = "http://127.0.0.1:8700",
    token: Token = "",
    reason: Annotated[str, typer.Option(help="Why (kept in the audit log).")] = "",
) -> None:
    """Replace the live flags with FILE (validated by the control plane)."""
    text = _read(file)
    body = _call(
        "PUT",
        control_url.rstrip("/") + "/v1/document",
        token,
        content=text.encode("utf-8"),
        params={"reason": reason},
    )
    out.print(f"pushed {file}: snapshot version {body['version']}")


@flags_app.command("kill")
def flags_kill(
    key: Annotated[str, typer.Argument(help="Flag key.")],
    reason: Annotated[str, typer.Option(help="Why (kept in the audit log).")],
    control_url: ControlUrl = "http://127.0.0.1:8700",
    token: Token = "",
) -> None:
    """Turn a flag off everywhere (state DISABLED in a new snapshot)."""
    body = _call(
        "POST", control_url.rstrip("/") + f"/v1/flags/{key}/kill", token, json={"reason": reason}
    )
    out.print(f"killed {key}: snapshot version {body['version']}")


@app.command("chat-irc")
def chat_irc(
    server: Annotated[str, typer.Option(help="IRC server host (Twitch: irc.chat.twitch.tv).")],
    channel: Annotated[str, typer.Option(help="Channel to read, e.g. '#creator'.")],
    nick: Annotated[
        str, typer.Option(help="The bot's nick (Twitch: justinfan12345 reads anonymously).")
    ],
    edge_url: Annotated[
        str, typer.Option("--edge", envvar="EDGELOOP_EDGE", help="The edge to send signals to.")
    ] = "http://127.0.0.1:8701",
    port: Annotated[int, typer.Option(min=1, max=65535, help="IRC server port.")] = 6667,
    password: Annotated[
        str | None,
        typer.Option(envvar="EDGELOOP_IRC_PASSWORD", help="Server password (Twitch: oauth:…)."),
    ] = None,
    tls: Annotated[bool, typer.Option(help="Connect with TLS (Twitch: port 6697).")] = False,
) -> None:
    """Read an IRC channel (never writing to it) and send its chat and emoji to an edge."""
    import asyncio
    import signal

    from edgeloop.sdk.chat_irc import IrcChatBot

    from . import services

    try:
        bot = IrcChatBot(
            server=server,
            port=port,
            channel=channel,
            nick=nick,
            edge_url=edge_url,
            password=password,
            tls=tls,
            clock=time.time,
        )
    except ValueError as exc:
        err.print(str(exc), markup=False, highlight=False)
        raise typer.Exit(2) from None

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, bot.stop)
        try:
            await bot.run()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    out.print(
        f"reading {channel} on {server}:{port} (read-only) → {edge_url.rstrip('/')}/v1/signals",
        markup=False,
        highlight=False,
    )
    services.run(serve())
    s = bot.stats
    out.print(
        f"{s.messages} messages → {s.signals} signals: {s.accepted} accepted, "
        f"{s.rejected} rejected, {s.dropped} dropped"
    )


def main() -> None:
    app()
