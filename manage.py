#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys
from pathlib import Path

VENV_PYTHON = Path(__file__).resolve().parent / ".venv" / "bin" / "python"


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    try:
        from django.core.management import execute_from_command_line
    except ImportError:
        # `python manage.py …` with a Python outside any venv (.venv not activated): use the project's.
        if VENV_PYTHON.exists() and sys.prefix == sys.base_prefix:
            os.execv(VENV_PYTHON, [str(VENV_PYTHON), *sys.argv])  # noqa: S606 (the same command, same arguments)
        sys.exit(f"Django is not installed for {sys.executable}: run `make install`, then `make manage ARGS=…`")
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
