"""`make bench`: Chordflow against raw Celery, side by side, on the same broker, database and workers."""
