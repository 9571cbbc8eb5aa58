"""docs/prometheus/: the sample configuration scrapes both /metrics and loads the alert rules, and every
alert reads series that exist, by labels they have, so the docs cannot drift from the exporters."""

import re
from pathlib import Path

import pytest
import yaml

from executions.exporter import catalog
from tests.support.flower import FLOWER_SERIES

BASE_DIR = Path(__file__).resolve().parent.parent
DOCS = BASE_DIR / "docs" / "prometheus"
# What GET /metrics serves: series name -> (type, labels), from the exporter itself.
CHORDFLOW_SERIES = catalog()
PROMETHEUS_SERIES = {"up": ("gauge", set())}  # whether a scrape answered
SERIES = {**CHORDFLOW_SERIES, **FLOWER_SERIES, **PROMETHEUS_SERIES}
# Label values an expression may compare with (a typo would silently match nothing).
LABEL_VALUES = {("chordflow_runs_finished_total", "status"): {"succeeded", "failed", "cancelled"}}
TARGET_LABELS = {"job", "instance"}  # added by Prometheus to every scraped series
SELECTOR = re.compile(r"\b((?:chordflow|flower)_[a-z0-9_]+|up)\b(?:\{([^}]*)\})?")
MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def load(name: str) -> dict:
    return yaml.safe_load((DOCS / name).read_text())


def alert_rules() -> list[dict]:
    return [rule for group in load("alerts.yml")["groups"] for rule in group["rules"]]


def series_of(name: str) -> tuple[str, set[str]]:
    """The series a PromQL name reads and the labels it has (a histogram's _bucket also has `le`)."""
    if name in SERIES:
        return name, SERIES[name][1]
    for suffix in HISTOGRAM_SUFFIXES:
        base = name.removesuffix(suffix)
        if base != name and SERIES.get(base, ("",))[0] == "histogram":
            return base, SERIES[base][1] | ({"le"} if suffix == "_bucket" else set())
    raise AssertionError(f"{name} is not a series that Chordflow, Flower or Prometheus serves")


def test_the_sample_config_scrapes_both_endpoints_and_loads_the_rules():
    config = load("prometheus.yml")
    assert all((DOCS / path).is_file() for path in config["rule_files"]), config["rule_files"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"chordflow", "flower"}
    assert all(job["metrics_path"] == "/metrics" and job["static_configs"][0]["targets"] for job in jobs.values())
    # Ours needs the bearer token in production, from a file: never the secret itself in the config.
    authorization = jobs["chordflow"]["authorization"]
    assert authorization["type"] == "Bearer" and "credentials" not in authorization
    assert authorization["credentials_file"]


def test_the_readme_shows_the_sample_jobs_as_they_are_in_the_file():
    readme = (BASE_DIR / "README.md").read_text()
    section = readme.split("### Scraping both, and Flower's queues\n", 1)[1].split("\n### ", 1)[0]
    assert "docs/prometheus/prometheus.yml" in section and "docs/prometheus/alerts.yml" in section
    shown = re.findall(r"^```yaml\n(.*?)^```", section, re.S | re.M)
    assert len(shown) == 2
    for block in shown:
        assert block in (DOCS / "prometheus.yml").read_text(), block


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_each_alert_reads_series_that_exist_by_labels_they_have(rule):
    expr = rule["expr"]
    selectors = SELECTOR.findall(expr)
    assert selectors, f"{rule['alert']} reads no series that the test knows"
    readable = set(TARGET_LABELS)
    for name, matchers in selectors:
        series, labels = series_of(name)
        readable |= labels
        for label, _op, value in MATCHER.findall(matchers):
            assert label in labels | TARGET_LABELS, f"{rule['alert']}: {name} has no label {label!r}"
            allowed = LABEL_VALUES.get((series, label))
            assert allowed is None or value in allowed, f"{rule['alert']}: {label}={value!r} is not one of {allowed}"
    for grouping in GROUPING.findall(expr):
        for label in filter(None, (part.strip() for part in grouping.split(","))):
            assert label in readable, f"{rule['alert']}: groups by {label!r}, which no series it reads has"
    for text in rule["annotations"].values():
        for label in re.findall(r"\$labels\.(\w+)", text):
            assert label in readable, f"{rule['alert']}: its text names {label!r}, which no series it reads has"


def test_each_alert_says_how_serious_and_what_happened():
    rules = alert_rules()
    assert len({rule["alert"] for rule in rules}) == len(rules)
    for rule in rules:
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


def test_the_alerts_cover_failing_runs_growing_queues_and_late_schedules():
    read = {series_of(name)[0] for rule in alert_rules() for name, _ in SELECTOR.findall(rule["expr"])}
    assert {"chordflow_runs_finished_total", "chordflow_queue_depth", "chordflow_schedule_lag_seconds"} <= read
