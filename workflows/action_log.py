"""`context.log`: what an action logs, kept per attempt in memory, bounded, and handed to a sink in batches.

An attempt's lines are buffered and written by the engine (executions.steplogs) with one bulk insert
when the attempt ends, and during a long attempt at most once per flush interval (by the next line
logged, or the next `context.cancelled()` question, that comes a second or more after the last
write). An attempt that logs nothing costs nothing.

Bounds, per attempt: the first CHORDFLOW_STEP_LOG_MAX_LINES lines, or fewer when together they reach
CHORDFLOW_STEP_LOG_MAX_BYTES, are kept; every later line is dropped and counted, and the log ends with
one warning line saying how many. A line over CHORDFLOW_STEP_LOG_MAX_LINE_BYTES keeps the start of its
message. The engine's own line saying how the attempt failed (`engine=True`) is always kept.

Logging never raises into the action: a message that cannot be %-formatted, or an `extra` that is not
JSON, is stored as well as it can be, saying so.
"""

from __future__ import annotations

import datetime
import json
import math
import re
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import models

DEFAULTS = {
    "CHORDFLOW_STEP_LOG_MAX_LINES": 1000,
    "CHORDFLOW_STEP_LOG_MAX_LINE_BYTES": 16 * 1024,
    "CHORDFLOW_STEP_LOG_MAX_BYTES": 1024 * 1024,
    "CHORDFLOW_STEP_LOG_FLUSH_INTERVAL": 1.0,
}
# Text PostgreSQL cannot store (NUL) or UTF-8 cannot encode (a lone surrogate) becomes U+FFFD.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_MAX_DEPTH = 32
_INT_LIMIT = 2**63


class LogLevel(models.IntegerChoices):
    """Python's logging numbers, so a minimum level is one comparison."""

    DEBUG = 10, "debug"
    INFO = 20, "info"
    WARNING = 30, "warning"
    ERROR = 40, "error"


LEVEL_BY_NAME = {level.label: level for level in LogLevel}
LOG_LEVELS = list(LEVEL_BY_NAME)  # "debug", "info", "warning", "error"


def setting(name: str) -> Any:
    return getattr(settings, name, DEFAULTS[name])


@dataclass(frozen=True)
class LogLine:
    level: int
    message: str
    extra: dict
    logged_at: datetime.datetime


Sink = Callable[[list[LogLine]], None]


@dataclass
class _Bounds:
    max_lines: int
    max_line_bytes: int
    max_bytes: int
    flush_interval: float

    @classmethod
    def from_settings(cls) -> _Bounds:
        return cls(
            max_lines=setting("CHORDFLOW_STEP_LOG_MAX_LINES"),
            max_line_bytes=setting("CHORDFLOW_STEP_LOG_MAX_LINE_BYTES"),
            max_bytes=setting("CHORDFLOW_STEP_LOG_MAX_BYTES"),
            flush_interval=float(setting("CHORDFLOW_STEP_LOG_FLUSH_INTERVAL")),
        )


@dataclass(eq=False)
class ActionLog:
    """The `log` of an ActionContext. Without a sink (an action called outside a worker) lines stay in `lines`."""

    sink: Sink | None = None
    redact: Callable[[Any], Any] = field(default=lambda value: value)
    bounds: _Bounds = field(default_factory=_Bounds.from_settings)
    lines: list[LogLine] = field(default_factory=list)  # not yet handed to the sink
    kept: int = 0  # action lines kept so far (written or buffered)
    kept_bytes: int = 0
    dropped: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._owner = threading.get_ident()  # only the attempt's own thread writes (its database connection)
        self._last_flush = time.monotonic()
        self._closed = False

    def debug(self, message: str, *args: Any, extra: dict | None = None, exc_info: Any = False) -> None:
        self.log(LogLevel.DEBUG, message, *args, extra=extra, exc_info=exc_info)

    def info(self, message: str, *args: Any, extra: dict | None = None, exc_info: Any = False) -> None:
        self.log(LogLevel.INFO, message, *args, extra=extra, exc_info=exc_info)

    def warning(self, message: str, *args: Any, extra: dict | None = None, exc_info: Any = False) -> None:
        self.log(LogLevel.WARNING, message, *args, extra=extra, exc_info=exc_info)

    def error(self, message: str, *args: Any, extra: dict | None = None, exc_info: Any = False) -> None:
        self.log(LogLevel.ERROR, message, *args, extra=extra, exc_info=exc_info)

    def exception(self, message: str, *args: Any, extra: dict | None = None) -> None:
        """An error line with the traceback of the exception being handled, as `logging.exception`."""
        self.log(LogLevel.ERROR, message, *args, extra=extra, exc_info=True)

    def log(
        self, level: int | str, message: Any, *args: Any, extra: dict | None = None, exc_info: Any = False, engine=False
    ) -> None:
        """Keep one line (`engine`: the engine's own, kept past the bounds). Never raises."""
        if (self.dropped or self._closed) and not engine:  # past the bounds or the attempt's end: count it only
            with self._lock:
                self.dropped += 1
            return
        level = _level(level)
        try:
            text = _format(message, args)
            if exc_info:
                text = f"{text}\n{_exception_text(exc_info)}".rstrip("\n")
            line = self._line(level, text, extra)
        except Exception as exc:  # a log call must never fail the action
            line = LogLine(level, f"(could not log a line: {type(exc).__name__}: {exc})", {}, _now())
        with self._lock:
            if not engine and not self._admit(line):
                return
            self.lines.append(line)
        self.flush_if_due()

    def _line(self, level: int, text: str, extra: Any) -> LogLine:
        text = _storable(str(self.redact(text)))
        safe = self.redact(json_safe(extra)) if extra is not None else {}  # JSON first: a repr() may hold a secret
        if not isinstance(safe, dict):
            safe = {"extra": safe}
        limit = self.bounds.max_line_bytes
        extra_bytes = _size(safe)
        if extra_bytes > limit // 2 and extra_bytes + _size(text) > limit:
            safe = {"cut": f"extra of {extra_bytes:,} bytes left out: over CHORDFLOW_STEP_LOG_MAX_LINE_BYTES"}
            extra_bytes = _size(safe)
        text = _cut(text, limit - extra_bytes)
        return LogLine(level, text, safe, _now())

    def _admit(self, line: LogLine) -> bool:
        """Keep the beginning: once a line is dropped, every later one is too (no holes in a log)."""
        size = _size(line.message) + _size(line.extra)
        if self.dropped or self.kept >= self.bounds.max_lines or self.kept_bytes + size > self.bounds.max_bytes:
            self.dropped += 1
            return False
        self.kept += 1
        self.kept_bytes += size
        return True

    def flush_if_due(self) -> None:
        """Write the buffered lines when the last write is a flush interval old (a running step's log shows live)."""
        if (
            self.sink is not None
            and self.lines
            and not self._closed
            and threading.get_ident() == self._owner
            and time.monotonic() - self._last_flush >= self.bounds.flush_interval
            and self.may_flush()
        ):
            self.flush()

    def flush(self) -> None:
        """Hand every buffered line to the sink: one batch, in order. Without a sink they stay in `lines`."""
        if self.sink is None:
            return
        with self._lock:
            batch, self.lines = self.lines, []
        self._last_flush = time.monotonic()
        if batch:
            self.sink(batch)

    def close(self) -> list[LogLine]:
        """The attempt ended: the lines not yet written, ending with one saying how many were dropped.

        The engine writes them with the attempt's outcome, in its transaction (one more statement)."""
        if self.dropped and not self._closed:
            reason = (
                f"CHORDFLOW_STEP_LOG_MAX_LINES ({self.bounds.max_lines:,} lines)"
                if self.kept >= self.bounds.max_lines
                else f"CHORDFLOW_STEP_LOG_MAX_BYTES ({self.bounds.max_bytes:,} bytes)"
            )
            message = f"{self.dropped:,} later lines dropped: this attempt reached {reason}"
            self._closed = True
            self.log(LogLevel.WARNING, message, extra={"dropped": self.dropped}, engine=True)
        self._closed = True
        with self._lock:
            batch, self.lines = self.lines, []
        return batch

    def may_flush(self) -> bool:
        """Overridden by the engine: not inside the action's own transaction (its rollback would take the lines)."""
        return True


def _level(level: Any) -> int:
    """One of the four levels: a name, or a number rounded down as logging's are (CRITICAL is an error)."""
    if isinstance(level, str):
        return LEVEL_BY_NAME.get(level.lower(), LogLevel.INFO)
    try:
        number = int(level)
    except (TypeError, ValueError):
        return LogLevel.INFO
    return max((known for known in LogLevel if known <= number), default=LogLevel.DEBUG)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _format(message: Any, args: tuple) -> str:
    text = str(message)
    if not args:
        return text
    if len(args) == 1 and isinstance(args[0], dict) and args[0]:
        args = args[0]  # logging's `log.info("%(n)d rows", {"n": 3})`
    try:
        return text % args
    except Exception as exc:
        return f"{text} (could not format with {args!r}: {type(exc).__name__}: {exc})"


def _exception_text(exc_info: Any) -> str:
    if isinstance(exc_info, BaseException):
        return "".join(traceback.format_exception(exc_info))
    if isinstance(exc_info, tuple):
        return "".join(traceback.format_exception(*exc_info))
    return traceback.format_exc()


def _storable(text: str) -> str:
    return _UNSTORABLE.sub("\ufffd", text)


def _size(value: Any) -> int:
    if isinstance(value, str):
        return len(value.encode("utf-8", "replace"))
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "replace"))


def _cut(text: str, limit: int) -> str:
    size = _size(text)
    if size <= limit:
        return text
    suffix = f" … [cut: {size:,} bytes, over CHORDFLOW_STEP_LOG_MAX_LINE_BYTES]"
    room = max(0, limit - _size(suffix))
    return text.encode("utf-8")[:room].decode("utf-8", "ignore") + suffix


def json_safe(value: Any, depth: int = 0) -> Any:
    """`value` as JSON every database and client can hold: keys as strings, other objects as their repr."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _storable(value)
    if isinstance(value, int):
        return value if -_INT_LIMIT <= value < _INT_LIMIT else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if depth >= _MAX_DEPTH:
        return _storable(repr(value)[:200])
    if isinstance(value, dict):
        return {_storable(str(key)): json_safe(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(item, depth + 1) for item in value]
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    return _storable(repr(value))
