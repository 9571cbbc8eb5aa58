"""`python -m executions.benchmark [--quick] [--report PATH]`: what `make bench` runs.

Starts its own stack (an embedded Redis unless REDIS_URL is set, a fresh SQLite file unless
DATABASE_URL is set, one prefork worker with one process per CPU), runs each shape through
Chordflow and through raw Celery on the same broker and workers, and writes a JSON report and a
table. Completion is measured from timestamps written by the tasks, never from a client's .get().
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat: a smoke test (< 1 min)")
    parser.add_argument("--report", default=str(BASE_DIR / "var" / "bench" / "report.json"))
    parser.add_argument("--concurrency", type=int, default=os.cpu_count() or 1, help="worker processes (both sides)")
    parser.add_argument("--profile", action="store_true", help="sample the worker with py-spy while it runs")
    args = parser.parse_args(argv)

    var_dir = BASE_DIR / "var" / "bench"
    var_dir.mkdir(parents=True, exist_ok=True)
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.bench"
    if not os.environ.get("DATABASE_URL"):
        db = var_dir / "bench.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        os.environ["DATABASE_URL"] = f"sqlite:///{db}"

    from config.embedded_redis import ensure_redis_url

    redis_server = ensure_redis_url(var_dir / "redis")
    created = ""
    try:
        import django

        django.setup()
        created = ensure_database()
        from executions.benchmark import report as reporting
        from executions.benchmark.shapes import Bench

        bench = Bench(quick=args.quick, concurrency=args.concurrency, var_dir=var_dir, profile=args.profile)
        started = time.time()
        with bench.stack():
            report = bench.run_all()
        report["seconds"] = round(time.time() - started, 1)
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
        Path(args.report).write_text(json.dumps(report, indent=2))
        print(reporting.table(report))
        print(f"\nreport: {args.report}  ({report['seconds']} s)")
    finally:
        if redis_server is not None:
            redis_server.stop()
    if created:
        drop_database(created)
    return 0


def ensure_database() -> str:
    """On PostgreSQL, create DATABASE_URL's database when it does not exist; returns its name then
    (the run drops it at the end), else "". SQLite needs nothing: the file is made on first use."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return ""
    name = connection.settings_dict["NAME"]
    with connection._nodb_cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        if cursor.fetchone():
            return ""
        cursor.execute(f"CREATE DATABASE {connection.ops.quote_name(name)}")
    print(f"created PostgreSQL database {name} for this run", flush=True)
    return name


def drop_database(name: str) -> None:
    from django.db import connection, connections

    connections.close_all()
    with connection._nodb_cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {connection.ops.quote_name(name)} WITH (FORCE)")


if __name__ == "__main__":
    sys.exit(main())
