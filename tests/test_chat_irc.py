"""The read-only IRC chat bot against a real IRC server (ngircd) and a real edge.

Every server here is real and local: ngircd started per module from a minimal config in a
temporary directory, the edge app on uvicorn in a thread, a second IRC client on a raw socket
playing the audience. ngircd offers no message tags, so the Twitch tag path is covered by unit
tests on the parsing functions and by a scripted Twitch-like server that speaks the CAP/tag
dialect line by line. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from irc.client import ServerNotConnectedError
from irc.client_aio import AioReactor
from irc.message import Tag

from edge_support import T0, FakeClock, ServerThread, serve_edge, wait_until
from edgeloop.edge import EdgeNode
from edgeloop.edge.telemetry import RawSignalStore
from edgeloop.model.signals import ChatEmoji, ChatMessage
from edgeloop.sdk.chat_irc import (
    IrcChatBot,
    ReadOnlyConnection,
    ReadOnlyViolation,
    attendee_id,
    find_emoji,
    message_signals,
    tag_map,
)
from edgeloop.store import LastKnownGood
from edgeloop.sync import SnapshotSigner, SnapshotVerifier

WAIT = 10.0  # the longest any single wait may take
STARTUP = 30.0  # a fresh interpreter importing the CLI, on a loaded machine


# ngircd ------------------------------------------------------------------------------------


def _ngircd_binary() -> str:
    found = shutil.which("ngircd") or next(
        (p for p in ("/usr/sbin/ngircd", "/usr/local/sbin/ngircd") if os.access(p, os.X_OK)), None
    )
    if found is None:
        reason = "ngircd is not installed (apt-get install ngircd)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}: CI must run the IRC tests")
        pytest.skip(reason)
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Ngircd:
    """ngircd in the foreground on 127.0.0.1:port with a config written into ``directory``."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.binary = _ngircd_binary()
        self.port = port or _free_port()
        self.conf = directory / "ngircd.conf"
        self.log = directory / "ngircd.log"
        self.conf.write_text(
            "[Global]\n"
            "Name = irc.edgeloop.test\n"
            "Info = edgeloop test server\n"
            "AdminInfo1 = edgeloop tests\n"
            "AdminInfo2 = loopback only\n"
            "AdminEMail = tests@edgeloop.invalid\n"
            "Listen = 127.0.0.1\n"
            f"Ports = {self.port}\n"
            "MotdPhrase = edgeloop test server\n"
            f"PidFile = {directory / 'ngircd.pid'}\n"
            "[Limits]\n"
            "MaxConnectionsIP = 0\n"
            "MaxNickLength = 31\n"
            "MaxPenaltyTime = 0\n"  # no flood throttling: the tests talk fast on purpose
            "PingTimeout = 120\n"
            "PongTimeout = 20\n"
            "[Options]\n"
            "PAM = no\n"
            "Ident = no\n"
            "DNS = no\n",
            encoding="utf-8",
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Ngircd:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [self.binary, "-n", "-f", str(self.conf)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + WAIT
        while not _accepts(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"ngircd did not start: {self.log.read_text(errors='replace')}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@pytest.fixture(scope="module")
def ircd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ngircd]:
    server = Ngircd(tmp_path_factory.mktemp("ngircd")).start()
    try:
        yield server
    finally:
        server.stop()


_channels = iter(range(1, 10_000))


@pytest.fixture
def channel() -> str:
    """A channel of the test's own on the shared server."""
    return f"#event{next(_channels)}"


# a real edge -------------------------------------------------------------------------------


@dataclass
class Edge:
    node: EdgeNode
    server: ServerThread
    db: Path

    @property
    def url(self) -> str:
        return self.server.url

    def rows(self) -> list[tuple[str, str, float]]:
        """(type, attendee, ts) of every raw signal the edge stored, in arrival order."""
        with contextlib.closing(sqlite3.connect(self.db)) as db:
            batches = [r[0] for r in db.execute("SELECT body FROM signal_batches ORDER BY rowid")]
        return [
            (s["type"], s.get("attendee"), s["ts"]) for body in batches for s in json.loads(body)
        ]


def _node(directory: Path, clock: Callable[[], float]) -> tuple[EdgeNode, Path]:
    db = directory / "raw-signals.db"
    node = EdgeNode(
        SnapshotVerifier(SnapshotSigner.generate().public_key),
        LastKnownGood(directory / "last-known-good.json"),
        clock=clock,
        raw_signals=RawSignalStore(db),
    )
    return node, db


@contextlib.contextmanager
def running_edge(
    directory: Path, clock: Callable[[], float] | None = None, port: int = 0
) -> Iterator[Edge]:
    node, db = _node(directory, clock or FakeClock(T0))
    with serve_edge(node, port=port) as server:
        yield Edge(node, server, db)
    assert node.raw_signals is not None
    node.raw_signals.close()


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[Edge]:
    with running_edge(tmp_path) as e:
        yield e


# the bot and the audience ------------------------------------------------------------------


class BotThread:
    """An :class:`IrcChatBot` running its own event loop on a thread."""

    def __init__(self, bot: IrcChatBot) -> None:
        self.bot = bot
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="chat-irc", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self.bot.run())
        except BaseException as exc:
            self.error = exc

    def __enter__(self) -> BotThread:
        self._thread.start()
        return self

    def stop(self, timeout: float = WAIT) -> None:
        self.bot.stop()
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the bot did not stop within {timeout} s"
        if self.error is not None:
            raise self.error

    def __exit__(self, *exc: object) -> None:
        self.stop()


def make_bot(port: int, channel: str, edge_url: str, **options: Any) -> IrcChatBot:
    settings: dict[str, Any] = {
        "server": "127.0.0.1",
        "port": port,
        "channel": channel,
        "nick": "edgebot",
        "edge_url": edge_url,
        "clock": FakeClock(T0),
        "retry_base": 0.05,
        "retry_cap": 0.2,
        "reconnect_base": 0.1,
        "reconnect_cap": 0.3,
    }
    settings.update(options)
    return IrcChatBot(**settings)


class Peer:
    """A plain IRC client on a raw socket: joins, talks, and remembers every line it read."""

    def __init__(self, port: int, nick: str) -> None:
        self.nick = nick
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.send(f"NICK {nick}")
        self.send(f"USER {nick} 0 * :{nick}")
        self.wait_for(lambda line: f" 001 {nick} " in line, "welcome")

    def _read(self) -> None:
        buffer = b""
        with contextlib.suppress(OSError):
            while chunk := self.sock.recv(4096):
                buffer += chunk
                *complete, buffer = buffer.split(b"\r\n")
                for raw in complete:
                    line = raw.decode("utf-8", "replace")
                    if line.startswith("PING "):
                        self.send("PONG " + line[5:])
                    with self._lock:
                        self.lines.append(line)

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode("utf-8") + b"\r\n")

    def seen(self) -> list[str]:
        with self._lock:
            return list(self.lines)

    def wait_for(self, match: Callable[[str], bool], what: str, timeout: float = WAIT) -> str:
        return wait_until(
            lambda: next((line for line in self.seen() if match(line)), None),
            timeout,
            what=f"{self.nick} to see {what}",
        )

    def join(self, channel: str) -> None:
        self.send(f"JOIN {channel}")
        self.wait_for(lambda line: f" 366 {self.nick} {channel} " in line, f"{channel} joined")

    def say(self, target: str, text: str) -> None:
        self.send(f"PRIVMSG {target} :{text}")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.send("QUIT :bye")
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._reader.join(WAIT)


@pytest.fixture
def peers(ircd: Ngircd) -> Iterator[Callable[[str], Peer]]:
    made: list[Peer] = []

    def make(nick: str) -> Peer:
        peer = Peer(ircd.port, nick)
        made.append(peer)
        return peer

    yield make
    for peer in made:
        peer.close()


def from_bot(line: str, nick: str = "edgebot") -> str | None:
    """The command of a line the bot caused (``:edgebot!… CMD …``), else None."""
    if not line.startswith(f":{nick}!"):
        return None
    parts = line.split(" ")
    return parts[1] if len(parts) > 1 else None


def wait_for_bot_join(
    peer: Peer, channel: str, nick: str = "edgebot", timeout: float = WAIT
) -> None:
    peer.wait_for(
        lambda line: from_bot(line, nick) == "JOIN" and channel in line, "the bot join", timeout
    )


# unit: parsing, emoji, read-only guard -------------------------------------------------------

TWITCH_TAGS = (
    "badge-info=;badges=broadcaster/1;client-nonce=28e05b1c83f1e916ca1710c44b014515;"
    "color=#0000FF;display-name=foofoo;emotes=62835:0-10;first-msg=0;flags=;"
    "id=f80a19d6-e35a-4273-82d0-cd87f614e767;mod=0;room-id=713936733;subscriber=0;"
    f"tmi-sent-ts={int(T0 * 1000) + 250};turbo=0;user-id=713936733;user-type="
)


def test_twitch_tags_give_the_attendee_and_the_time() -> None:
    tags = tag_map(Tag.from_group(TWITCH_TAGS))
    assert tags["user-id"] == "713936733"
    assert tags["badge-info"] == "" and tags["display-name"] == "foofoo"

    def no_clock() -> float:
        raise AssertionError("tmi-sent-ts was present: the clock must not be read")

    signals = message_signals("FooFoo", "bleedPurple hype 🎉🔥🎉", tags, no_clock)
    assert signals == [
        ChatMessage(ts=T0 + 0.25, attendee="713936733", text="bleedPurple hype 🎉🔥🎉"),
        ChatEmoji(ts=T0 + 0.25, attendee="713936733", emoji="🎉"),
        ChatEmoji(ts=T0 + 0.25, attendee="713936733", emoji="🔥"),
        ChatEmoji(ts=T0 + 0.25, attendee="713936733", emoji="🎉"),
    ]


def test_without_tags_the_nick_and_the_clock_are_used() -> None:
    clock = FakeClock(T0 + 7)
    assert message_signals("Viewer[1]", "no emoji here Kappa", {}, clock) == [
        ChatMessage(ts=T0 + 7, attendee="viewer{1}", text="no emoji here Kappa")
    ]
    # A malformed tmi-sent-ts or an empty user-id falls back as well.
    tags = tag_map(Tag.from_group("tmi-sent-ts=soon;user-id="))
    assert attendee_id("Ann", tags) == "ann"
    assert message_signals("Ann", "hi", tags, clock)[0].ts == T0 + 7


def test_emoji_detection_counts_sequences_as_one_and_repeats_each_time() -> None:
    text = "gg 👍🏽👍🏽 family 👨‍👩‍👧‍👦 🇫🇷 1️⃣ ❤ :) <3 Kappa"
    assert find_emoji(text) == ["👍🏽", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷", "1️⃣", "❤"]
    assert find_emoji("plain text, no emoji :-)") == []


def test_the_connection_refuses_to_write_to_the_channel() -> None:
    loop = asyncio.new_event_loop()
    try:
        connection = ReadOnlyConnection(AioReactor(loop=loop))
        for attempt in (
            lambda: connection.privmsg("#event", "hello"),
            lambda: connection.notice("#event", "hello"),
            lambda: connection.action("#event", "waves"),
            lambda: connection.ctcp_reply("someone", "VERSION edgeloop"),
            lambda: connection.privmsg_many(["#a", "#b"], "spam"),
            lambda: connection.topic("#event", "new topic"),
            lambda: connection.send_raw("JOIN #event\rPRIVMSG #event :smuggled"),
            lambda: connection.join("#event\r\nPRIVMSG #event :smuggled"),
        ):
            with pytest.raises(ReadOnlyViolation):
                attempt()
        # What it may send passes the guard (and then finds no socket).
        with pytest.raises(ServerNotConnectedError):
            connection.pong("irc.edgeloop.test")
    finally:
        loop.close()


def test_bad_settings_are_refused_up_front() -> None:
    for channel, nick, batch_size in (
        ("event", "bot", 100),
        ("#e", "two words", 100),
        ("#e\rPRIVMSG #e :hi", "bot", 100),
        ("#e", "bot", 0),
    ):
        with pytest.raises(ValueError):
            make_bot(6667, channel, "http://127.0.0.1:1", nick=nick, batch_size=batch_size)


# against ngircd and a real edge ---------------------------------------------------------------


def test_channel_chat_becomes_signals_at_the_edge(
    ircd: Ngircd, edge: Edge, channel: str, peers: Callable[[str], Peer]
) -> None:
    viewer = peers("Viewer1")
    viewer.join(channel)
    other = peers("viewer2")
    other.join(channel)
    bot = make_bot(ircd.port, channel, edge.url)
    with BotThread(bot):
        wait_for_bot_join(viewer, channel)
        viewer.say(channel, "hello everyone")
        viewer.say(channel, "love this offer 😍🎉")
        other.say(channel, "🎉")
        viewer.say(channel, "\x01ACTION claps 👏\x01")  # /me
        viewer.say("edgebot", "a private message is not the event's chat 😍")
        wait_until(
            lambda: edge.node.metrics.signals_accepted >= 8, WAIT, what="8 signals at the edge"
        )
        time.sleep(0.3)  # a flush interval more: nothing else may arrive
        assert bot.joined
    viewer.wait_for(lambda line: from_bot(line) == "QUIT", "the bot quit")

    metrics = edge.node.metrics
    assert (metrics.signals_accepted, metrics.signals_rejected) == (8, 0)
    rows = edge.rows()
    # Each viewer's signals in the order they spoke (two connections may interleave either way).
    assert [kind for kind, who, _ in rows if who == "viewer1"] == [
        "chat_message",  # hello everyone
        "chat_message",  # love this offer 😍🎉
        "chat_emoji",
        "chat_emoji",
        "chat_message",  # /me claps 👏
        "chat_emoji",
    ]
    assert [kind for kind, who, _ in rows if who == "viewer2"] == ["chat_message", "chat_emoji"]
    assert {ts for _, _, ts in rows} == {T0}
    assert edge.node.raw_signals is not None and edge.node.raw_signals.count() == 8
    session = edge.node.sessions.get("viewer1")
    assert session is not None and session.reactions_pos >= 2  # 😍 and 👏 at least
    assert edge.node.sessions.get("viewer2") is not None
    assert bot.stats.messages == 4 and bot.stats.signals == 8
    assert (bot.stats.accepted, bot.stats.rejected, bot.stats.dropped) == (8, 0, 0)
    assert bot.capabilities == set()  # ngircd offers multi-prefix only: nothing requested

    # Read-only: the audience never saw the bot say anything, anywhere.
    said = [line for peer in (viewer, other) for line in peer.seen() if from_bot(line)]
    assert {from_bot(line) for line in said} <= {"JOIN", "QUIT"}, said


def test_a_taken_nick_gets_an_underscore(
    ircd: Ngircd, edge: Edge, channel: str, peers: Callable[[str], Peer]
) -> None:
    squatter = peers("edgebot")
    squatter.join(channel)
    bot = make_bot(ircd.port, channel, edge.url)
    with BotThread(bot):
        wait_for_bot_join(squatter, channel, "edgebot_")
        squatter.say(channel, "👋")
        wait_until(lambda: edge.node.metrics.signals_accepted == 2, WAIT, what="2 signals")


def test_signals_wait_for_an_edge_that_comes_up_late(
    ircd: Ngircd, tmp_path: Path, channel: str, peers: Callable[[str], Peer]
) -> None:
    viewer = peers("latecomer")
    viewer.join(channel)
    port = _free_port()  # nothing listens there yet
    bot = make_bot(ircd.port, channel, f"http://127.0.0.1:{port}")
    with BotThread(bot):
        wait_for_bot_join(viewer, channel)
        viewer.say(channel, "is this on? 🤔")
        viewer.say(channel, "🎉")
        wait_until(lambda: bot.stats.retries >= 2, WAIT, what="the bot to retry")
        assert bot.stats.accepted == 0
        with running_edge(tmp_path, port=port) as edge:
            wait_until(
                lambda: edge.node.metrics.signals_accepted == 4, WAIT, what="4 signals delivered"
            )
            assert [kind for kind, _, _ in edge.rows()] == [
                "chat_message",
                "chat_emoji",
                "chat_message",
                "chat_emoji",
            ]
    assert (bot.stats.accepted, bot.stats.dropped) == (4, 0)


def test_the_queue_is_bounded_and_shutdown_does_not_hang_on_a_dead_edge(
    ircd: Ngircd, channel: str, peers: Callable[[str], Peer]
) -> None:
    viewer = peers("flooder")
    viewer.join(channel)
    bot = make_bot(
        ircd.port,
        channel,
        f"http://127.0.0.1:{_free_port()}",  # never comes up
        batch_size=1,
        max_queue=2,
        flush_timeout=0.3,
    )
    thread = BotThread(bot).__enter__()
    wait_for_bot_join(viewer, channel)
    viewer.say(channel, "🎉🎉🎉")  # four signals into a queue of two
    wait_until(lambda: bot.stats.signals == 4 and bot.stats.retries >= 1, WAIT, what="a retry")
    assert bot.stats.dropped == 2  # the two oldest beyond the bound
    started = time.monotonic()
    thread.stop()
    assert time.monotonic() - started < 3.0
    assert bot.stats.dropped == 4  # and the two still held when the flush gave up
    assert bot.stats.accepted == 0
    viewer.wait_for(lambda line: from_bot(line) == "QUIT", "the bot quit")


def test_the_bot_reconnects_and_rejoins_after_the_server_restarts(
    tmp_path: Path, edge: Edge
) -> None:
    ircd = Ngircd(tmp_path).start()
    try:
        bot = make_bot(ircd.port, "#comeback", edge.url)
        with BotThread(bot):
            wait_until(lambda: bot.joined, WAIT, what="the bot to join")
            ircd.stop()
            wait_until(lambda: not bot.joined, WAIT, what="the bot to notice")
            ircd.start()
            wait_until(lambda: bot.joined, WAIT, what="the bot to rejoin")
            viewer = Peer(ircd.port, "returning")
            try:
                viewer.join("#comeback")
                viewer.say("#comeback", "back again 👋")
                wait_until(lambda: edge.node.metrics.signals_accepted == 2, WAIT, what="2 signals")
            finally:
                viewer.close()
        assert bot.stats.connects == 2
    finally:
        ircd.stop()


# IRCv3 tags and CAP negotiation with a server that speaks Twitch's dialect ---------------------


class TwitchLike:
    """A scripted server for one client: offers Twitch's capabilities, then sends tagged chat.

    It answers CAP LS, CAP REQ (ACK), registration (001 only after CAP END, as IRCv3 says) and
    JOIN, then sends ``chat`` (tag string, nick, text) as PRIVMSGs, and records what it read.
    """

    CAPS = "twitch.tv/tags twitch.tv/commands twitch.tv/membership"

    def __init__(self, channel: str, chat: list[tuple[str, str, str]]) -> None:
        self.channel = channel
        self.chat = chat
        self.received: list[str] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(WAIT)
        self.port = int(self.listener.getsockname()[1])
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError), self.listener:
            conn, _ = self.listener.accept()
            with conn:
                conn.settimeout(WAIT)
                self._talk(conn)

    def _talk(self, conn: socket.socket) -> None:
        def send(line: str) -> None:
            conn.sendall(line.encode() + b"\r\n")

        buffer, nick, negotiating = b"", "", False
        while chunk := conn.recv(4096):
            buffer += chunk
            *lines, buffer = buffer.split(b"\r\n")
            for raw in lines:
                line = raw.decode()
                self.received.append(line)
                words = line.split(" ")
                if words[:2] == ["CAP", "LS"]:
                    negotiating = True
                    send(f":tmi.twitch.tv CAP * LS :{self.CAPS}")
                elif words[:2] == ["CAP", "REQ"]:
                    send(f":tmi.twitch.tv CAP * ACK :{' '.join(words[2:]).lstrip(':')}")
                elif words[0] == "NICK":
                    nick = words[1]
                if nick and (
                    words[:2] == ["CAP", "END"] or (words[0] == "USER" and not negotiating)
                ):
                    send(f":tmi.twitch.tv 001 {nick} :Welcome, GLHF!")
                elif words[0] == "JOIN":
                    send(f":{nick}!{nick}@{nick}.tmi.twitch.tv JOIN {self.channel}")
                    for tags, who, text in self.chat:
                        source = f"{who}!{who}@{who}.tmi.twitch.tv"
                        send(f"@{tags} :{source} PRIVMSG {self.channel} :{text}")
                elif words[0] == "QUIT":
                    return


def test_twitch_capabilities_are_requested_and_tags_identify_the_attendee(edge: Edge) -> None:
    sent = int(T0 * 1000)
    chat = [
        (f"display-name=Ronni;tmi-sent-ts={sent};user-id=1337;badge-info=", "ronni", "Kappa 🎉"),
        (
            f"display-name=Ronni2;tmi-sent-ts={sent + 1500};user-id=1337",
            "ronni2",
            "renamed, same id",
        ),
        (f"display-name=Zed;tmi-sent-ts={sent + 3000};user-id=42", "zed", "😡"),
    ]
    server = TwitchLike("#creator", chat)
    bot = make_bot(server.port, "#creator", edge.url, nick="justinfan12345")
    with BotThread(bot):
        wait_until(lambda: edge.node.metrics.signals_accepted == 5, WAIT, what="5 signals")
    assert bot.capabilities == {"twitch.tv/tags"}
    assert edge.rows() == [
        ("chat_message", "1337", T0),
        ("chat_emoji", "1337", T0),
        ("chat_message", "1337", T0 + 1.5),
        ("chat_message", "42", T0 + 3.0),
        ("chat_emoji", "42", T0 + 3.0),
    ]
    zed = edge.node.sessions.get("42")
    assert zed is not None and zed.reactions_neg >= 1
    # CAP LS went out before registration; tags were asked for; nothing was ever said.
    commands = [line.split(" ")[0] for line in server.received]
    assert server.received[0] == "CAP LS 302"
    assert "CAP REQ twitch.tv/tags" in server.received
    assert commands.index("CAP") < commands.index("NICK")
    assert set(commands) <= {"CAP", "NICK", "USER", "JOIN", "QUIT"}, server.received


# the command line -------------------------------------------------------------------------------


def test_the_cli_runs_the_bot_until_interrupted(
    ircd: Ngircd, tmp_path: Path, channel: str, peers: Callable[[str], Peer]
) -> None:
    viewer = peers("cliviewer")
    viewer.join(channel)
    with running_edge(tmp_path, clock=time.time) as edge:  # the CLI stamps with the real clock
        process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from edgeloop.cli import main; main()",
                "chat-irc",
                "--server",
                "127.0.0.1",
                "--port",
                str(ircd.port),
                "--channel",
                channel,
                "--nick",
                "clibot",
                "--edge",
                edge.url,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "COLUMNS": "200"},
        )
        try:
            wait_for_bot_join(viewer, channel, "clibot", STARTUP)
            viewer.say(channel, "from the command line 🚀")
            wait_until(lambda: edge.node.metrics.signals_accepted == 2, WAIT, what="2 signals")
            process.send_signal(signal.SIGINT)
            output, _ = process.communicate(timeout=WAIT)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(5)
    text = output.decode()
    assert process.returncode == 0, text
    assert f"reading {channel} on 127.0.0.1:{ircd.port} (read-only)" in text
    assert "1 messages → 2 signals: 2 accepted, 0 rejected, 0 dropped" in text
    viewer.wait_for(lambda line: from_bot(line, "clibot") == "QUIT", "the CLI bot quit")
