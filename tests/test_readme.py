"""The README's examples work as written: its curl calls against a live web server and worker, its
`load_workflows` on the broken example, its `run_start` snippet; and it shows what the API answers."""

import json
import os
import re
import subprocess
import sys

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connection

from executions.models import Run, Schedule
from executions.services import run_start
from executions.states import RunStatus
from tests.support.runs import steps, wait_for_run, workflow
from tests.support.web import daphne_server
from tests.support.worker import BASE_DIR

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]

README = (BASE_DIR / "README.md").read_text()


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README, re.S | re.M)


def shell_commands() -> list[str]:
    """Every command of the README's ```sh blocks that talks to the API, continuation lines joined."""
    commands = []
    for block in blocks("sh"):
        for command in block.replace("\\\n", " ").splitlines():
            command = re.sub(r"\s+#\s.*$", "", command).strip()  # a trailing comment
            if command.startswith(("curl ", "TOKEN=", "H=")):
                commands.append(command)
    return commands


def block_after(marker: str, language: str = "json") -> str:
    return re.search(rf"{re.escape(marker)}.*?^```{language}\n(.*?)^```", README, re.S | re.M).group(1)


def project_env() -> dict:
    """A command-line process on the test settings and the test database."""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.test", CHORDFLOW_TEST_DB_NAME=str(connection.settings_dict["NAME"])
    )
    return env


def sh(command: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", command], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_the_readme_curl_examples_answer_as_it_says(tmp_path):
    User.objects.create_superuser(username="admin", email="admin@localhost", password="pw-123456")
    call_command("load_workflows", "workflows/examples", verbosity=0)
    commands = shell_commands()
    env = project_env()
    with daphne_server(log=tmp_path / "daphne.log") as url:
        host = url.removeprefix("http://")

        def curl(command: str, **names: str) -> tuple[int, object]:
            for placeholder, value in names.items():
                command = command.replace(placeholder, value)
            result = sh(command.replace("localhost:8000", host) + " -w '\\n%{http_code}'", env)
            body, _, status = result.stdout.rpartition("\n")
            return int(status), json.loads(body) if body else None

        # TOKEN=… and H=…: run them and keep what they set
        setup = [c for c in commands if c.startswith(("TOKEN=", "H="))]
        assert setup[0] == "TOKEN=$(.venv/bin/python manage.py drf_create_token admin | awk '{print $3}')"
        result = sh("; ".join([*setup, 'echo "$H"']).replace(".venv/bin/python", sys.executable), env)
        assert result.returncode == 0, result.stderr
        env["H"] = result.stdout.strip().splitlines()[-1]
        assert re.fullmatch(r"Authorization: Token [0-9a-f]{40}", env["H"]), result.stdout

        calls = [c for c in commands if c.startswith("curl ")]
        called = set()

        def call(fragment: str, **names: str) -> tuple[int, object]:
            matching = [c for c in calls if fragment in c + " "]
            assert len(matching) == 1, (fragment, matching)
            called.add(matching[0])
            return curl(matching[0], **names)

        status, body = call("localhost:8000/api/workflows/ ")
        assert (status, body["version"]) == (201, 1), body
        status, run = call("hello/runs/")
        assert status == 201, run
        assert call("hello/runs/")[1]["id"] == run["id"]  # the same idempotency key: the same run
        assert call("hello/runs/")[0] == 200
        wait_for_run(run["id"])

        status, body = call("api/runs/RUN_ID/ ", RUN_ID=run["id"])
        assert status == 200 and body["status"] == RunStatus.SUCCEEDED
        shown = json.loads(block_after("A run reads back as:").replace("…", ""))
        assert set(body) == set(shown), set(body) ^ set(shown)
        assert set(body["steps"][0]) == set(shown["steps"][0])
        assert body["steps"][0]["output"] == shown["steps"][0]["output"] == {"text": "hello Ada"}
        assert call("status=failed")[0] == 200

        status, events = call("RUN_ID/events/", RUN_ID=run["id"])
        assert status == 200
        shown = json.loads(block_after("### Events").replace("…", ""))
        succeeded = [e for e in events["results"] if e["type"] == "step.succeeded"]
        assert succeeded and set(shown) <= set(succeeded[0]), set(shown) - set(succeeded[0])
        assert succeeded[0]["run"] == run["id"] and succeeded[0]["status"] == "succeeded"
        assert succeeded[0]["attempt"] == 1
        assert call("RUN_ID/cancel/", RUN_ID=run["id"])[0] == 409  # it has finished: "409 saying why not"

        said = [{"level": "debug", "message": "quiet"}, {"level": "info", "message": "hello %s", "args": ["Ada"]}]
        greet = workflow(steps({"id": "greet", "action": "test.log", "params": {"lines": said}}), slug="greet-logs")
        logged, _ = run_start(workflow=greet)
        wait_for_run(logged.pk)
        status, lines = call("RUN_ID/logs/", RUN_ID=str(logged.pk))
        assert status == 200 and [line["message"] for line in lines["results"]] == ["hello Ada"]  # info and above
        shown = json.loads(block_after("### Step logs").replace("…", ""))
        assert set(lines["results"][0]) == set(shown), set(lines["results"][0]) ^ set(shown)

        status, body = call("order-pipeline/runs/")  # the error example: an unknown field and a bad input
        assert status == 400
        assert body == json.loads(block_after("**Errors**")), body
        status, body = curl(
            next(c for c in calls if "order-pipeline/runs/" in c).replace(', "colour": "red"', ""),
        )
        assert status == 400
        assert body["problems"] == [{"path": "input", "message": "'order_id' is a required property"}]

        status, schedule = call("localhost:8000/api/schedules/ ")
        assert status == 201, schedule
        assert schedule["description"] == "At 02:30, Monday through Friday"
        number = {"/schedules/1/": f"/schedules/{schedule['id']}/"}
        status, fire = call("1/trigger/", **number)
        assert status in (200, 201) and {"nominal_time", "outcome", "run"} <= set(fire), fire
        assert call("1/backfill/", **number) == (202, {"count": 5})
        assert call("1/fires/", **number)[0] == 200
        assert call("1/pause/", **number)[0] == 200
        assert Schedule.objects.get(pk=schedule["id"]).paused

        for command in [c for c in calls if c.endswith("/metrics")]:  # Prometheus text, not JSON
            called.add(command)
            result = sh(command.replace("localhost:8000", host), {**env, "CHORDFLOW_METRICS_TOKEN": "t"})
            started = r'^chordflow_runs_started_total\{workflow="hello"\} [1-9]'
            assert re.search(started, result.stdout, re.M), result.stdout

        assert [c for c in calls if c not in called] == []  # every curl of the README was run


def test_the_readme_load_workflows_example_prints_what_it_shows(tmp_path):
    session = re.search(r"^```\n(\$ .*?load_workflows.*?)^```", README, re.S | re.M).group(1).strip().splitlines()
    command, shown = session[0].removeprefix("$ "), session[1:]
    assert command == ".venv/bin/python manage.py load_workflows docs/examples/broken.yaml"
    # As a developer runs it: local settings (the built-in actions only), beside a Redis, on a fresh database.
    env = {k: v for k, v in os.environ.items() if k not in {"DJANGO_SETTINGS_MODULE", "DATABASE_URL"}}
    result = sh(command.replace(".venv/bin/python", sys.executable), {**env, "CHORDFLOW_VAR_DIR": str(tmp_path)})
    assert result.returncode == 1
    assert (result.stdout + result.stderr).strip().splitlines() == shown


def test_the_readme_run_start_snippet_runs_to_completion():
    call_command("load_workflows", "workflows/examples", verbosity=0)
    snippet = next(block for block in blocks("python") if "run, created = run_start(" in block)
    scope: dict = {}
    exec(snippet, scope)
    assert scope["created"] is True
    run = wait_for_run(scope["run"].pk)
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert Run.objects.get(idempotency_key="order-A-1").pk == run.pk
