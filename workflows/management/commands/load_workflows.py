"""`manage.py load_workflows PATH...`: save YAML (or JSON) definitions; unchanged files make no new version.

A file may also carry sections other apps handle (`schedules:`): they are saved with the definition,
in one transaction, or not at all.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from workflows import sections
from workflows.exceptions import ProblemsError
from workflows.services import workflow_save
from workflows.yaml_load import load_definition

SUFFIXES = {".yaml", ".yml", ".json"}


class Command(BaseCommand):
    help = "Load workflow definitions from YAML/JSON files or folders; the slug is the file name."

    def add_arguments(self, parser) -> None:
        parser.add_argument("paths", nargs="+", help="files, or folders to read *.yaml, *.yml and *.json from")

    def handle(self, *args, paths: list[str], **options) -> None:
        files = self.collect(paths)
        failures = 0
        for path in files:
            try:
                definition = load_definition(path.read_text())
            except (OSError, yaml.YAMLError) as exc:
                self.stderr.write(f"{path}: cannot be read: {exc}")
                failures += 1
                continue
            slug = path.stem.replace("_", "-")
            definition, extra = sections.split(definition)
            try:
                with transaction.atomic():
                    workflow, version, created = workflow_save(slug=slug, definition=definition)
                    lines = [line for name, value in extra.items() for line in sections.handler(name)(workflow, value)]
            except ProblemsError as exc:
                self.stderr.write(f"{path}: invalid, nothing stored:")
                for problem in exc.problems:
                    self.stderr.write(f"  {problem}")
                failures += 1
                continue
            state = "new version" if created else "unchanged"
            self.stdout.write(f"{path.name}: {workflow.slug} v{version.number} ({state})")
            for line in lines:
                self.stdout.write(f"  {line}")
        if failures:
            raise CommandError(f"{failures} of {len(files)} files were not loaded")

    def collect(self, paths: list[str]) -> list[Path]:
        files: list[Path] = []
        for raw in paths:
            path = Path(raw)
            if path.is_dir():
                found = sorted(p for p in path.iterdir() if p.suffix in SUFFIXES)
                if not found:
                    raise CommandError(f"{raw}: no .yaml, .yml or .json files in this folder")
                files.extend(found)
            elif path.is_file():
                files.append(path)
            else:
                raise CommandError(f"{raw}: no such file or folder")
        return files
