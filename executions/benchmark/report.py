"""The benchmark's targets (#15's ratios and bounds, each PASS or FAIL, never asserted) and its table."""

from __future__ import annotations

RSS_LIMIT_MB = 1024
RSS_FLAT = 0.10  # "flat across runs": the widest fan-out's worker RSS grows by at most this much


def _target(lines: list[dict], target: str, value: str, passed: bool) -> None:
    lines.append({"target": target, "value": value, "pass": passed})


def targets(report: dict) -> list[dict]:
    lines: list[dict] = []
    chain = report["chain"]
    ratio = chain["chordflow_ms_per_step"] / chain["celery_ms_per_step"]
    _target(lines, f"chain of {chain['length']}: ms per step <= 1.5 x raw Celery", f"{ratio:.2f}x", ratio <= 1.5)
    overhead = chain["limited_ms_per_step"] / chain["chordflow_ms_per_step"] - 1
    _target(lines, "concurrency: an unreached limit costs a chain <= 10%", f"{overhead:+.1%}", overhead <= 0.10)
    for fan in report["fan_out"]:
        if fan["celery_branches_per_second"] is None:
            continue
        ratio = fan["chordflow_branches_per_second"] / fan["celery_branches_per_second"]
        name = f"fan-out {fan['width']:,} no-ops: branches/s >= 1.0 x raw chord"
        _target(lines, name, f"{ratio:.2f}x", ratio >= 1.0)
    io = report["fan_out_io"]
    ratio = io["chordflow_branches_per_second"] / io["celery_branches_per_second"]
    name = f"fan-out {io['width']:,} I/O-bound ({io['sleep_ms']:.0f} ms each): branches/s >= 1.0 x raw chord"
    _target(lines, name, f"{ratio:.2f}x", ratio >= 1.0)
    diamonds = report["diamonds"]
    ratio = diamonds["chordflow_runs_per_second"] / diamonds["celery_runs_per_second"]
    _target(lines, f"{diamonds['runs']} diamonds at once: runs/s >= 0.7 x raw", f"{ratio:.2f}x", ratio >= 0.7)
    by_width = {fan["width"]: fan for fan in report["fan_out"]}
    widest = max(by_width)
    if 1000 in by_width and widest > 1000:
        ratio = by_width[widest]["chordflow_ms_per_branch"] / by_width[1000]["chordflow_ms_per_branch"]
        name = f"linearity: ms per branch at {widest:,} <= 1.25 x at 1,000"
        _target(lines, name, f"{ratio:.2f}x", ratio <= 1.25)
    peak = by_width[widest]["worker_peak_rss_mb"]
    _target(lines, f"fan-out {widest:,}: worker RSS < 1 GB", f"{peak:.0f} MB", peak < RSS_LIMIT_MB)
    memory = report["memory"]
    first, last = memory["rss_mb_after_each_run"][0], memory["rss_mb_after_each_run"][-1]
    growth = last / first - 1 if first else 0.0
    name = f"fan-out {memory['width']:,}: worker RSS flat across {len(memory['rss_mb_after_each_run'])} runs (<= +10%)"
    _target(lines, name, f"{growth:+.1%}", growth <= RSS_FLAT)
    for where, p50, p99 in (
        ("a step's message, nothing else queued", chain["dispatch_p50_ms"], chain["dispatch_p99_ms"]),
        (f"{diamonds['runs']} diamonds at once", diamonds["dispatch"]["chordflow_p50_ms"],
         diamonds["dispatch"]["chordflow_p99_ms"]),
    ):  # fmt: skip
        _target(lines, f"dispatch latency p50 <= 5 ms ({where})", f"{p50:.1f} ms", p50 <= 5)
        _target(lines, f"dispatch latency p99 <= 50 ms ({where})", f"{p99:.1f} ms", p99 <= 50)
    sql = report["cost"]["sql_per_step"]
    _target(lines, "cost: <= 6 SQL queries per step", f"{sql}", sql <= 6)
    late, due = report["schedules"]["p99_late_s"], report["schedules"]["schedules"]
    name = f"schedules: p99 start <= 2 s after the nominal time ({due:,} due at once)"
    _target(lines, name, f"{late:.2f} s", late <= 2)
    seen = report["observability"]
    _target(
        lines, f"/metrics: a scrape <= 200 ms ({seen['runs']:,} runs)", f"{seen['scrape_ms']:.0f} ms",
        seen["scrape_ms"] <= 200,
    )  # fmt: skip
    slowest = max(seen["page_ms"].values())
    name = f"metrics page: loads <= 1 s, hour, day or week ({seen['runs']:,} runs)"
    _target(lines, name, f"{slowest:.0f} ms", slowest <= 1000)
    return lines


def table(report: dict) -> str:
    rows = [("shape", "Chordflow", "raw Celery", "ratio")]

    def add(name: str, ours: float, raw: float | None, unit: str) -> None:
        if raw is None:
            rows.append((name, f"{ours:,.2f} {unit}", "-", "-"))
            return
        ratio = ours / raw if raw else float("nan")
        rows.append((name, f"{ours:,.2f} {unit}", f"{raw:,.2f} {unit}", f"{ratio:.2f}x"))

    c = report["chain"]
    add(f"chain of {c['length']}: per step", c["chordflow_ms_per_step"], c["celery_ms_per_step"], "ms")
    add("  the same, concurrency limit 1000", c["limited_ms_per_step"], c["celery_ms_per_step"], "ms")
    for fan in [*report["fan_out"], report["fan_out_io"]]:
        kind = f"I/O-bound ({fan['sleep_ms']:.0f} ms)" if "sleep_ms" in fan else "no-ops"
        name = f"fan-out {fan['width']:,} {kind}"
        add(f"{name}: branches/s", fan["chordflow_branches_per_second"], fan["celery_branches_per_second"], "/s")
        add(f"{name}: per branch", fan["chordflow_ms_per_branch"], fan["celery_ms_per_branch"], "ms")
    d = report["diamonds"]
    add(f"{d['runs']} diamonds: runs/s", d["chordflow_runs_per_second"], d["celery_runs_per_second"], "/s")
    add(f"{d['runs']} diamonds: p50 start-finish", d["chordflow_p50_ms"], d["celery_p50_ms"], "ms")
    add(f"{d['runs']} diamonds: p99 start-finish", d["chordflow_p99_ms"], d["celery_p99_ms"], "ms")
    add("dispatch latency p50 (diamonds)", d["dispatch"]["chordflow_p50_ms"], d["dispatch"]["celery_p50_ms"], "ms")
    add("dispatch latency p99 (diamonds)", d["dispatch"]["chordflow_p99_ms"], d["dispatch"]["celery_p99_ms"], "ms")
    cost = report["cost"]
    add("Redis commands per step/task", cost["redis_commands_per_step"], cost["celery_redis_commands_per_task"], "")
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        "  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row))
        for row in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    lines.append("")
    lines.append(f"database: {report['database']}; {report['concurrency']} worker processes on each side")
    lines.append(
        f"dispatch latency of a step's message with nothing else queued: p50 {c['dispatch_p50_ms']:.1f} ms, "
        f"p99 {c['dispatch_p99_ms']:.1f} ms"
    )
    lines.append(
        f"SQL per step transition: {cost['sql_per_step']} statements ({cost['sql_per_step_with_transactions']} "
        f"with BEGIN/COMMIT); per for_each branch alone: {cost['sql_per_branch']}; per branch in a chunk of "
        f"{cost['chunk_width']}: {cost['sql_per_chunked_branch']:.2f}"
    )
    peak = max(f["worker_peak_rss_mb"] for f in report["fan_out"])
    mem = report["memory"]
    after = ", ".join(f"{x:.0f}" for x in mem["rss_mb_after_each_run"])
    lines.append(
        f"worker peak RSS during the widest fan-out: {peak:.0f} MB; after each of "
        f"{len(mem['rss_mb_after_each_run'])} runs of {mem['width']:,}: {after} MB "
        f"(growth {mem['growth_mb']:+.0f} MB)"
    )
    sched = report["schedules"]
    lines.append(
        f"{sched['schedules']:,} schedules due at once: runs started p50 {sched['p50_late_s']:.2f} s, "
        f"p99 {sched['p99_late_s']:.2f} s, last {sched['last_late_s']:.2f} s after their nominal time "
        f"({sched['starts_per_second']:.0f} starts/s)"
    )
    seen = report["observability"]
    pages = ", ".join(f"{name} {ms:.0f} ms" for name, ms in seen["page_ms"].items())
    earlier = seen["bench_label_sets_scrape"]
    lines.append(
        f"with {seen['runs']:,} runs: a /metrics scrape {seen['scrape_ms']:.0f} ms ({seen['scrape_lines']:,} lines; "
        f"with the earlier shapes' label sets, {earlier['ms']:.0f} ms for {earlier['lines']:,}); "
        f"the metrics page {pages} "
        f"(seeded in {seen['seed_seconds']:.0f} s; the earlier shapes' {seen['backlog_events']:,} events folded "
        f"first in {seen['backlog_fold_seconds']:.1f} s)"
    )
    lines.append("")
    lines.append("targets (goals, not assertions):")
    lines.extend(f"  {'PASS' if t['pass'] else 'FAIL'}  {t['target']}: {t['value']}" for t in report["targets"])
    return "\n".join(lines)
