"""Flower's configuration file (`celery -A config flower --conf=config/flowerconfig.py` runs it as Python).

Its top-level names that match a Flower option (`port`, `basic_auth`, ...) set that option.
"""

from config.flower import list_every_declared_queue

list_every_declared_queue()
