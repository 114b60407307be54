"""A read-only IRC chat bot: a channel's messages become signals at an edge.

    bot = IrcChatBot(
        server="irc.chat.twitch.tv", port=6667, channel="#creator", nick="justinfan12345",
        edge_url="http://127.0.0.1:8701", clock=time.time,
    )
    await bot.run()          # until bot.stop(); then flushes what it holds and quits

What becomes a signal (see docs/chat.md):

- every channel message (PRIVMSG to the channel, ``/me`` actions included) → one
  ``chat_message`` with its text;
- every emoji in that text → one ``chat_emoji`` each, in order ("🎉🎉" is two). Emoji are
  found by the ``emoji`` package (the Unicode emoji list: ZWJ sequences, flags, keycaps and
  skin tones count as one emoji each). Twitch emotes such as ``Kappa`` are words, not emoji.

Who: the ``user-id`` tag when the server sends IRCv3 tags (Twitch does, after ``CAP REQ
:twitch.tv/tags``), else the sender's nick, lower-cased (IRC nicks are case-insensitive). The
id goes to the edge as is: raw ids stay on the edge, which pseudonymizes everything it ships.

When: the ``tmi-sent-ts`` tag (Twitch's send time, epoch milliseconds) when present, else the
injected ``clock`` (epoch seconds) at the moment the line is read.

Read-only by construction: the connection refuses to write any command but those needed to log
on, join, stay connected and leave (:data:`ALLOWED_COMMANDS`); PRIVMSG, NOTICE and CTCP replies
raise :class:`ReadOnlyViolation` instead of reaching the server.

Delivery: signals are queued (bounded; the oldest are dropped and counted past ``max_queue``),
posted to ``{edge}/v1/signals`` in batches of up to ``batch_size`` or every ``flush_interval``
seconds, and retried with exponential back-off (jittered, ``Retry-After`` honoured) on
transport errors, 429 and 5xx. A batch the edge refuses as a whole (other 4xx) is not retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import emoji
import httpx
import msgspec
from irc.client import Event, ServerConnection
from irc.client_aio import AioConnection, AioReactor, IrcProtocol
from irc.strings import lower as irc_lower
from jaraco.stream.buffer import LenientDecodingLineBuffer

from edgeloop.model.signals import (
    MAX_BATCH,
    MAX_EMOJI_LENGTH,
    MAX_ID_LENGTH,
    MAX_TEXT_LENGTH,
    ChatEmoji,
    ChatMessage,
)

__all__ = [
    "ALLOWED_COMMANDS",
    "WANTED_CAPABILITIES",
    "ChatSignal",
    "ChatStats",
    "IrcChatBot",
    "ReadOnlyViolation",
    "attendee_id",
    "find_emoji",
    "message_signals",
    "tag_map",
]

log = logging.getLogger("edgeloop.sdk.chat_irc")

ChatSignal = ChatMessage | ChatEmoji

#: IRCv3 capabilities asked for when the server offers them (both carry message tags).
WANTED_CAPABILITIES = ("message-tags", "twitch.tv/tags")

#: Every command the bot may write: capability negotiation, log-on, join, keep-alive, leave.
ALLOWED_COMMANDS = frozenset({"CAP", "PASS", "NICK", "USER", "JOIN", "PONG", "QUIT"})

_encode = msgspec.json.Encoder().encode
_CHANNEL_PREFIXES = "#&+!"
_BAD = " ,\a\r\n\0"  # never in a channel name or a nick


class ReadOnlyViolation(RuntimeError):
    """Something tried to make the read-only bot write to the server (e.g. PRIVMSG)."""


# turning a message into signals ------------------------------------------------------------


def tag_map(tags: Iterable[Mapping[str, str | None]] | None) -> dict[str, str]:
    """The ``irc`` library's parsed IRCv3 tags (``[{'key': k, 'value': v}]``) as a dict.

    A tag without a value (``badge-info=`` or ``flag``) maps to ``""``.
    """
    return {str(t["key"]): t.get("value") or "" for t in tags or ()}


def attendee_id(nick: str, tags: Mapping[str, str]) -> str:
    """``user-id`` when the server tags messages with it (stable across renames), else the nick."""
    user_id = tags.get("user-id", "")
    if 0 < len(user_id) <= MAX_ID_LENGTH:
        return user_id
    return irc_lower(nick)[:MAX_ID_LENGTH]


def _sent_at(tags: Mapping[str, str], clock: Callable[[], float]) -> float:
    sent = tags.get("tmi-sent-ts", "")
    if sent.isascii() and sent.isdigit():
        return int(sent) / 1000.0
    return clock()


def find_emoji(text: str) -> list[str]:
    """Every emoji in ``text``, in order, repeats included (the ``emoji`` package's matcher)."""
    return [
        found["emoji"]
        for found in emoji.emoji_list(text)
        if len(found["emoji"]) <= MAX_EMOJI_LENGTH
    ]


def message_signals(
    nick: str, text: str, tags: Mapping[str, str], clock: Callable[[], float]
) -> list[ChatSignal]:
    """One channel message → its ``chat_message`` then one ``chat_emoji`` per emoji in it."""
    attendee = attendee_id(nick, tags)
    ts = _sent_at(tags, clock)
    text = text[:MAX_TEXT_LENGTH]
    signals: list[ChatSignal] = [ChatMessage(ts=ts, attendee=attendee, text=text)]
    signals.extend(ChatEmoji(ts=ts, attendee=attendee, emoji=e) for e in find_emoji(text))
    return signals


# the IRC side ----------------------------------------------------------------------------


class _Protocol(IrcProtocol):
    """The library's protocol, plus an event set when the socket is really gone."""

    def __init__(self, connection: AioConnection, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(connection, loop)
        self.lost = asyncio.Event()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set()
        super().connection_lost(exc)


class ReadOnlyConnection(AioConnection):
    """An asyncio IRC connection that refuses to send anything but :data:`ALLOWED_COMMANDS`.

    Lines that are not UTF-8 are decoded as Latin-1 rather than dropping the connection.
    """

    buffer_class = LenientDecodingLineBuffer
    protocol_class = _Protocol
    transport: asyncio.BaseTransport | None = None  # not connected yet (the library omits it)

    def send_raw(self, string: str) -> None:
        command = string.split(" ", 1)[0].upper()
        if command not in ALLOWED_COMMANDS:
            raise ReadOnlyViolation(f"the chat bot is read-only: refusing to send {command}")
        if any(c in string for c in "\r\n\0"):  # a second line smuggled after an allowed one
            raise ReadOnlyViolation(f"refusing to send a {command} line with a line break in it")
        super().send_raw(string)


class _Reactor(AioReactor):
    connection_class = ReadOnlyConnection


class _Backoff:
    """Exponential back-off with jitter: each delay is drawn from [c/2, c], c = min(cap, base·2^n).

    Never near zero, so a down edge or server is not hammered by unlucky draws.
    """

    def __init__(self, base: float, cap: float, rng: random.Random) -> None:
        self.base = base
        self.cap = cap
        self.rng = rng
        self.attempt = 0

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.base * (2**self.attempt))
        self.attempt += 1
        return self.rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0


@dataclass
class ChatStats:
    """Counters since start (read them from any thread; only the bot's loop writes them)."""

    messages: int = 0  # channel messages read
    signals: int = 0  # signals made from them
    accepted: int = 0  # signals the edge accepted
    rejected: int = 0  # signals the edge refused (item by item, or a batch refused whole)
    dropped: int = 0  # signals lost to a full queue or unsent when shutdown's flush timed out
    retries: int = 0  # failed posts that were tried again
    connects: int = 0  # IRC connections made (1 + reconnects)


class IrcChatBot:
    """Joins one channel, reads it, and posts its messages and emoji to an edge as signals."""

    def __init__(
        self,
        *,
        server: str,
        port: int,
        channel: str,
        nick: str,
        edge_url: str,
        clock: Callable[[], float],
        password: str | None = None,
        tls: bool = False,
        batch_size: int = 100,
        flush_interval: float = 0.2,
        max_queue: int = 10_000,
        retry_base: float = 0.2,
        retry_cap: float = 10.0,
        reconnect_base: float = 1.0,
        reconnect_cap: float = 60.0,
        flush_timeout: float = 5.0,
        http: httpx.AsyncClient | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if not channel or channel[0] not in _CHANNEL_PREFIXES or any(c in channel for c in _BAD):
            raise ValueError(f"not an IRC channel name: {channel!r} (e.g. '#creator')")
        if not nick or any(c in nick for c in _BAD + ":!@") or nick[0] in _CHANNEL_PREFIXES:
            raise ValueError(f"not an IRC nick: {nick!r}")
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be between 1 and {MAX_BATCH}")
        if max_queue < batch_size:
            raise ValueError("max_queue must be at least batch_size")
        self.server = server
        self.port = port
        self.channel = channel
        self.nick = nick
        self.clock = clock
        self.password = password
        self.tls = tls
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_queue = max_queue
        self.flush_timeout = flush_timeout
        self.signals_url = edge_url.rstrip("/") + "/v1/signals"
        self.stats = ChatStats()
        self.capabilities: set[str] = set()  # what the server acknowledged
        self._http = http
        rng = rng or random.Random()
        self._retry = _Backoff(retry_base, retry_cap, rng)
        self._reconnect = _Backoff(reconnect_base, reconnect_cap, rng)
        self._pending: deque[ChatSignal] = deque()
        self._first_at = 0.0  # loop time at which the oldest pending signal was queued
        self._in_flight = 0
        self._closing = False
        self._joined = False
        self._offered: set[str] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = asyncio.Event()
        self._gone = asyncio.Event()
        self._more = asyncio.Event()

    @property
    def joined(self) -> bool:
        """True while the bot is in its channel."""
        return self._joined

    def stop(self) -> None:
        """Ask :meth:`run` to leave, flush and return; safe from any thread, before or during."""
        loop = self._loop
        if loop is None or loop.is_closed():
            self._stop.set()
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._stop.set()
        else:
            loop.call_soon_threadsafe(self._stop.set)

    async def run(self) -> None:
        """Read the channel until :meth:`stop`; reconnects with back-off if the server goes away.

        On stop: QUIT, then up to ``flush_timeout`` seconds to deliver what is queued.
        """
        loop = asyncio.get_running_loop()
        self._loop = loop
        own_http = self._http is None
        http = self._http or httpx.AsyncClient(timeout=10.0)
        reactor = _Reactor(loop=loop)
        self._install(reactor)
        sender = asyncio.create_task(self._send_loop(http), name="chat-irc-sender")
        try:
            await self._irc_loop(reactor)
        finally:
            self._closing = True
            self._more.set()
            try:
                await asyncio.wait_for(sender, self.flush_timeout)
            except TimeoutError:
                lost = len(self._pending) + self._in_flight
                self.stats.dropped += lost
                log.error("shutdown: %d signals could not be delivered in time", lost)
            except Exception:
                log.exception("signal sender failed")
            if own_http:
                await http.aclose()

    # IRC ---------------------------------------------------------------------------------

    def _install(self, reactor: AioReactor) -> None:
        for event, handler in (
            ("cap", self._on_cap),
            ("welcome", self._on_welcome),
            ("nicknameinuse", self._on_nick_in_use),
            ("join", self._on_join),
            ("part", self._on_part),
            ("kick", self._on_kick),
            ("pubmsg", self._on_message),
            ("action", self._on_message),
            ("disconnect", self._on_disconnect),
            ("error", self._on_error),
            ("bannedfromchan", self._on_join_refused),
            ("inviteonlychan", self._on_join_refused),
            ("badchannelkey", self._on_join_refused),
            ("channelisfull", self._on_join_refused),
            ("nosuchchannel", self._on_join_refused),
        ):
            reactor.add_global_handler(event, handler)

    async def _connect_factory(
        self, protocol: asyncio.Protocol, address: tuple[str, int]
    ) -> tuple[asyncio.BaseTransport, asyncio.Protocol]:
        """Open the socket and start IRCv3 capability negotiation before NICK/USER go out.

        ``CAP LS 302`` first makes a capability-aware server hold registration until ``CAP END``
        (so tags are on before the first channel message); older servers answer 421 and go on.
        """
        loop = asyncio.get_running_loop()
        host, port = address
        context = ssl.create_default_context() if self.tls else None
        transport, proto = await loop.create_connection(
            lambda: protocol, host, port, ssl=context, server_hostname=host if self.tls else None
        )
        transport.write(b"CAP LS 302\r\n")  # type: ignore[attr-defined]
        return transport, proto

    async def _irc_loop(self, reactor: AioReactor) -> None:
        connection: ReadOnlyConnection = reactor.server()
        while not self._stop.is_set():
            self._gone.clear()
            self._offered.clear()
            self.capabilities.clear()
            try:
                await connection.connect(
                    self.server,
                    self.port,
                    self.nick,
                    password=self.password,
                    username="edgeloop",
                    ircname="edgeloop chat signals (read-only)",
                    connect_factory=self._connect_factory,
                )
            except OSError as exc:
                log.warning("cannot reach %s:%d: %s", self.server, self.port, exc)
            else:
                self.stats.connects += 1
                await _first_of(self._stop.wait(), self._gone.wait())
                if self._stop.is_set():
                    await self._quit(connection)
                    return
                log.warning("disconnected from %s:%d", self.server, self.port)
            delay = self._reconnect.next_delay()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)

    async def _quit(self, connection: ReadOnlyConnection) -> None:
        protocol = getattr(connection, "protocol", None)
        if connection.is_connected():
            connection.disconnect("edgeloop chat bot leaving")
        if isinstance(protocol, _Protocol):
            with contextlib.suppress(TimeoutError):  # QUIT written and the socket closed
                await asyncio.wait_for(protocol.lost.wait(), 2.0)

    def _on_cap(self, connection: ServerConnection, event: Event) -> None:
        args: Sequence[str] = event.arguments
        if not args:
            return
        sub = args[0].upper()
        if sub == "LS":
            self._offered.update(cap.split("=", 1)[0] for cap in args[-1].split())
            if len(args) > 2 and args[1] == "*":
                return  # more LS lines follow (CAP 302 multiline)
            wanted = [cap for cap in WANTED_CAPABILITIES if cap in self._offered]
            if wanted:
                connection.cap("REQ", *wanted)
            else:
                connection.cap("END")
        elif sub == "ACK":
            self.capabilities.update(args[-1].split())
            connection.cap("END")
        elif sub == "NAK":
            log.info("server refused capabilities: %s", args[-1])
            connection.cap("END")

    def _on_welcome(self, connection: ServerConnection, event: Event) -> None:
        self._reconnect.reset()
        log.info("connected to %s:%d; joining %s", self.server, self.port, self.channel)
        connection.join(self.channel)

    def _on_nick_in_use(self, connection: ServerConnection, event: Event) -> None:
        taken = event.arguments[0] if event.arguments else connection.get_nickname()
        log.warning("nick %s is taken; trying %s_", taken, taken)
        connection.nick(taken + "_")

    def _ours(self, connection: ServerConnection, event: Event) -> bool:
        """Is this about our own nick in our channel?"""
        nick = getattr(event.source, "nick", None)
        return (
            event.target is not None
            and irc_lower(event.target) == irc_lower(self.channel)
            and nick is not None
            and irc_lower(nick) == irc_lower(connection.get_nickname())
        )

    def _on_join(self, connection: ServerConnection, event: Event) -> None:
        if self._ours(connection, event):
            self._joined = True
            log.info("joined %s (read-only)", self.channel)

    def _on_part(self, connection: ServerConnection, event: Event) -> None:
        if self._ours(connection, event):
            self._joined = False

    def _on_kick(self, connection: ServerConnection, event: Event) -> None:
        kicked = event.arguments[0] if event.arguments else ""
        if irc_lower(kicked) == irc_lower(connection.get_nickname()):
            self._joined = False
            log.warning("kicked from %s", self.channel)

    def _on_join_refused(self, connection: ServerConnection, event: Event) -> None:
        log.error("cannot join %s: %s", self.channel, " ".join(event.arguments))

    def _on_error(self, connection: ServerConnection, event: Event) -> None:
        log.warning("server error: %s", event.target)

    def _on_disconnect(self, connection: ServerConnection, event: Event) -> None:
        self._joined = False
        self._gone.set()

    def _on_message(self, connection: ServerConnection, event: Event) -> None:
        target = event.target
        if not target or irc_lower(target) != irc_lower(self.channel) or not event.arguments:
            return  # private messages and other channels are not this event's chat
        nick = getattr(event.source, "nick", None)
        if not nick:
            return
        try:
            signals = message_signals(nick, event.arguments[0], tag_map(event.tags), self.clock)
        except Exception:  # a bad line must not take the connection down
            log.exception("could not turn a chat line into signals")
            return
        self.stats.messages += 1
        self._enqueue(signals)

    # delivery ------------------------------------------------------------------------------

    def _enqueue(self, signals: list[ChatSignal]) -> None:
        pending = self._pending
        if not pending:
            self._first_at = asyncio.get_running_loop().time()
        for signal in signals:
            if len(pending) >= self.max_queue:
                pending.popleft()
                self.stats.dropped += 1
            pending.append(signal)
        self.stats.signals += len(signals)
        self._more.set()

    async def _send_loop(self, http: httpx.AsyncClient) -> None:
        loop = asyncio.get_running_loop()
        pending = self._pending
        while True:
            if not pending:
                if self._closing:
                    return
                self._more.clear()
                await self._more.wait()
                continue
            if len(pending) < self.batch_size and not self._closing:
                remaining = self._first_at + self.flush_interval - loop.time()
                if remaining > 0:
                    self._more.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._more.wait(), remaining)
                    continue
            batch = [pending.popleft() for _ in range(min(len(pending), self.batch_size))]
            self._first_at = loop.time()
            self._in_flight = len(batch)
            await self._post(http, batch)
            self._in_flight = 0

    async def _post(self, http: httpx.AsyncClient, batch: list[ChatSignal]) -> None:
        body = _encode(batch)
        headers = {"content-type": "application/json", "x-edgeloop-client": "chat-irc"}
        while True:
            retry_after = 0.0
            try:
                response = await http.post(self.signals_url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                status = response.status_code
                if status == 200:
                    self._retry.reset()
                    self._count(batch, response)
                    return
                if status not in (408, 429) and status < 500:
                    self.stats.rejected += len(batch)
                    log.error(
                        "edge refused a batch of %d signals: HTTP %d %s",
                        len(batch),
                        status,
                        response.text[:200],
                    )
                    return
                problem = f"HTTP {status}"
                retry_after = _retry_after(response)
            delay = max(retry_after, self._retry.next_delay())
            self.stats.retries += 1
            log.warning(
                "posting %d signals failed (%s); retrying in %.2f s", len(batch), problem, delay
            )
            await asyncio.sleep(delay)

    def _count(self, batch: list[ChatSignal], response: httpx.Response) -> None:
        try:
            answer: Any = response.json()
            accepted = int(answer["accepted"])
            rejected = list(answer["rejected"])
        except (ValueError, KeyError, TypeError):
            log.warning("unexpected answer from the edge: %s", response.text[:200])
            return
        self.stats.accepted += accepted
        self.stats.rejected += len(rejected)
        if rejected:
            log.warning(
                "edge rejected %d of %d signals (first: %s)", len(rejected), len(batch), rejected[0]
            )


def _retry_after(response: httpx.Response) -> float:
    value = response.headers.get("retry-after", "")
    try:
        return min(max(0.0, float(value)), 300.0)
    except ValueError:
        return 0.0


async def _first_of(*waits: Any) -> None:
    """Wait until the first of several awaitables finishes; cancel the rest."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
