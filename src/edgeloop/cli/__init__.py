"""The ``edgeloop`` command line: validate, eval, convert, demo."""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer
from rich.console import Console
from rich.table import Table

from edgeloop.evaluate import Reason, compile_snapshot, evaluate, evaluate_all
from edgeloop.model import FlagSet, FlagsValidationError, dump_flags, load_flags_file
from edgeloop.sim import simulate_audience

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
    file: Annotated[Path, typer.Option(help="Flags file to run.")] = Path(
        "examples/micro-offer.yaml"
    ),
    flag: Annotated[str, typer.Option(help="The experiment flag to report.")] = "micro-offer",
    attendees: Annotated[int, typer.Option(min=1, max=10_000_000)] = 10_000,
    seed: Annotated[int, typer.Option(help="Audience seed: same seed, same audience.")] = 7,
) -> None:
    """Decide a flag for a simulated audience and show the split and the reasons."""
    flagset = _load(file)
    if flag not in flagset.flags:
        err.print(f"flag {flag!r} is not in {file}; it has: {', '.join(flagset.flags)}")
        raise typer.Exit(1)
    snapshot = compile_snapshot(flagset, version=1)
    audience = simulate_audience(attendees, seed)
    moment = 1_790_000_000.0  # a fixed event time: the demo is reproducible
    started = time.perf_counter()
    decisions = [evaluate(snapshot, flag, a.context(), moment) for a in audience]
    elapsed = time.perf_counter() - started

    by_variant = Counter(d.variant for d in decisions)
    by_reason = Counter(d.reason for d in decisions)
    spec = flagset.flags[flag]
    channels = spec.experiment.channels if spec.experiment else {}
    split_weights = {n: w for rule in spec.rules if rule.split for n, w in rule.split}
    total_weight = sum(split_weights.values()) or 1
    in_split = by_reason.get(Reason.SPLIT, 0)

    table = Table(title=f"{flag}: {attendees:,} simulated attendees")
    for column in ("variant", "attendees", "share", "of split", "target", "channel"):
        table.add_column(column, justify="left" if column in ("variant", "channel") else "right")
    for name in spec.variants:
        count = by_variant.get(name, 0)
        split_count = sum(1 for d in decisions if d.variant == name and d.reason is Reason.SPLIT)
        target = split_weights.get(name)
        table.add_row(
            name,
            f"{count:,}",
            f"{count / attendees:.1%}",
            f"{split_count / in_split:.1%}" if in_split and target is not None else "",
            f"{target / total_weight:.1%}" if target is not None else "",
            str(channels.get(name, "")),
        )
    out.print(table)

    reasons = Table(title="decision reasons")
    reasons.add_column("reason")
    reasons.add_column("attendees", justify="right")
    reasons.add_column("share", justify="right")
    for reason, count in by_reason.most_common():
        reasons.add_row(str(reason), f"{count:,}", f"{count / attendees:.1%}")
    out.print(reasons)
    out.print(
        f"{attendees:,} decisions in {elapsed * 1000:.1f} ms "
        f"({elapsed / attendees * 1e9:,.0f} ns each, context built per call)"
    )


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
