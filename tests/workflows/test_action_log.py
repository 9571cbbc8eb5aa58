"""context.log without a database: formatting like logging, JSON-safe extra, the bounds, when it flushes."""

import datetime
import math

import pytest

from workflows.action_log import ActionLog, LogLevel, _Bounds
from workflows.actions import ActionContext


def bounded(max_lines=1000, max_line_bytes=16 * 1024, max_bytes=1024 * 1024, flush_interval=1.0, sink=None):
    return ActionLog(sink=sink, bounds=_Bounds(max_lines, max_line_bytes, max_bytes, flush_interval))


def test_lines_are_formatted_like_logging_and_keep_their_level_time_and_extra():
    log = bounded()
    before = datetime.datetime.now(datetime.UTC)
    log.info("fetched %d rows from %s", 3, "orders", extra={"rows": 3})
    log.debug("%(n)d left", {"n": 2})
    log.warning("100% done")  # no arguments: not formatted, as logging does
    log.error("failed")
    assert [(line.level, line.message, line.extra) for line in log.lines] == [
        (LogLevel.INFO, "fetched 3 rows from orders", {"rows": 3}),
        (LogLevel.DEBUG, "2 left", {}),
        (LogLevel.WARNING, "100% done", {}),
        (LogLevel.ERROR, "failed", {}),
    ]
    assert all(before <= line.logged_at <= datetime.datetime.now(datetime.UTC) for line in log.lines)


def test_an_action_context_outside_a_worker_keeps_its_lines_in_memory():
    context = ActionContext(run_id="r", workflow="w", step_id="s", attempt=1)
    context.log.info("hello %s", "Ada")
    assert not context.cancelled()  # asking flushes nothing without a sink
    assert [line.message for line in context.log.lines] == ["hello Ada"]


def test_logging_never_raises_into_the_action_and_says_what_it_could_not_do():
    log = bounded()

    class Unprintable:
        def __str__(self):
            raise RuntimeError("no")

        __repr__ = __str__

    log.info("%d rows", "many")
    log.info(Unprintable())
    assert (
        log.lines[0].message
        == "%d rows (could not format with ('many',): TypeError: %d format: a real number is required, not str)"
    )
    assert log.lines[1].message == "(could not log a line: RuntimeError: no)"


def test_extra_is_stored_as_json_every_database_can_hold():
    log = bounded()
    when = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    log.info(
        "x", extra={1: "one", "nan": math.nan, "big": 2**70, "at": when, "set": {1}, "obj": object, "nul": "a\x00b"}
    )
    log.info("list", extra=[1, 2])  # type: ignore[arg-type]
    assert log.lines[0].extra == {
        "1": "one", "nan": "nan", "big": str(2**70), "at": "2026-01-02T03:04:05+00:00", "set": [1],
        "obj": "<class 'object'>", "nul": "a\ufffdb",
    }  # fmt: skip
    assert log.lines[1].extra == {"extra": [1, 2]}


def test_a_line_over_its_limit_keeps_the_start_of_its_message_and_an_extra_too_big_is_left_out():
    log = bounded(max_line_bytes=200)
    log.info("x" * 1000)
    log.info("short", extra={"blob": "y" * 1000})
    cut = log.lines[0].message
    assert cut.startswith("x" * 100) and cut.endswith(" … [cut: 1,000 bytes, over CHORDFLOW_STEP_LOG_MAX_LINE_BYTES]")
    assert len(cut.encode()) <= 200
    assert log.lines[1].message == "short"
    assert log.lines[1].extra == {"cut": "extra of 1,011 bytes left out: over CHORDFLOW_STEP_LOG_MAX_LINE_BYTES"}


def test_past_the_line_bound_later_lines_are_dropped_counted_and_said_once_at_the_end():
    log = bounded(max_lines=3)
    for number in range(10):
        log.info("line %d", number)
    log.log(LogLevel.ERROR, "how it failed", engine=True)  # the engine's line is kept past the bound
    lines = log.close()
    assert [line.message for line in lines] == [
        "line 0", "line 1", "line 2", "how it failed",
        "7 later lines dropped: this attempt reached CHORDFLOW_STEP_LOG_MAX_LINES (3 lines)",
    ]  # fmt: skip
    assert lines[-1].level == LogLevel.WARNING and lines[-1].extra == {"dropped": 7}
    assert log.close() == []  # closing again says nothing twice


def test_past_the_byte_bound_the_log_keeps_its_beginning_without_holes():
    log = bounded(max_bytes=25)
    log.info("0123456789")  # 10 bytes, and 2 for its empty extra
    log.info("0123456789")
    log.info("0123456789")  # over 25: dropped
    log.info("x")  # would fit, but a log has no holes
    lines = log.close()
    assert [line.message for line in lines][:2] == ["0123456789", "0123456789"]
    assert lines[2].message == "2 later lines dropped: this attempt reached CHORDFLOW_STEP_LOG_MAX_BYTES (25 bytes)"
    assert len(lines) == 3


def test_secrets_are_redacted_before_the_cut_so_no_piece_of_one_is_left():
    secret = "s3cr3t-value-0123456789"
    log = ActionLog(redact=lambda value: value.replace(secret, "⟪secret:K⟫") if isinstance(value, str) else value)
    log.bounds.max_line_bytes = 110  # the cut falls inside the secret: redacted after it, a piece would stay
    log.info("token %s and more", "x" * 30 + secret + "y" * 100)
    assert "[cut:" in log.lines[0].message and "xxx" in log.lines[0].message
    assert "s3cr" not in log.lines[0].message


@pytest.mark.parametrize("interval", [0.0, 3600.0])
def test_a_running_attempt_hands_lines_to_its_sink_at_most_once_per_interval(interval):
    batches = []
    log = bounded(flush_interval=interval, sink=batches.append)
    log.info("a")
    log.info("b")
    if interval:
        assert batches == []  # a fresh attempt: nothing written until the interval passes or it ends
        assert [line.message for line in log.close()] == ["a", "b"]
    else:
        assert [[line.message for line in batch] for batch in batches] == [["a"], ["b"]]
        assert log.close() == []


def test_asking_whether_the_attempt_was_cancelled_flushes_what_is_due():
    batches = []
    log = bounded(flush_interval=3600.0, sink=batches.append)
    context = ActionContext(run_id="r", workflow="w", step_id="s", attempt=1, log=log)
    context.log.info("before a long wait")
    context.cancelled()
    assert batches == []
    log.bounds.flush_interval = 0.0
    context.cancelled()
    assert [[line.message for line in batch] for batch in batches] == [["before a long wait"]]


def test_exception_adds_the_traceback_of_the_error_being_handled():
    log = bounded()
    try:
        {}["missing"]
    except KeyError:
        log.exception("lookup failed for %s", "missing")
    first, *trace = log.lines[0].message.splitlines()
    assert first == "lookup failed for missing" and log.lines[0].level == LogLevel.ERROR
    assert trace[0] == "Traceback (most recent call last):" and trace[-1] == "KeyError: 'missing'"


def test_any_level_becomes_one_of_the_four_as_logging_rounds_them():
    log = bounded()
    for level in (5, 10, 25, "WARNING", 50, "loud", None):
        log.log(level, "x")
    assert [line.level for line in log.lines] == [10, 10, 20, 30, 40, 20, 20]


def test_a_secret_inside_bytes_a_set_or_a_key_of_extra_is_redacted_too():
    secret = "sk_live_4242"

    def redact(value):
        if isinstance(value, str):
            return value.replace(secret, "[secret]")
        if isinstance(value, dict):
            return {redact(k): redact(v) for k, v in value.items()}
        if isinstance(value, list):
            return [redact(v) for v in value]
        return value

    log = ActionLog(redact=redact)
    log.info("charged", extra={"raw": secret.encode(), "tags": {secret}, (secret, 1): "key"})
    assert secret not in repr(log.lines[0].extra), log.lines[0].extra


def test_a_line_logged_after_the_attempt_ended_is_counted_not_kept():
    log = bounded()
    log.info("during")
    log.close()
    log.info("from a thread the action left behind")
    assert [line.message for line in log.lines] == [] and log.dropped == 1
