"""The suite's worker is real: it takes tasks from the real broker and writes to the test database."""

import pytest
from django.contrib.auth import get_user_model

from tests.support.worker_tasks import create_user


@pytest.mark.django_db(transaction=True)
def test_a_task_runs_on_the_worker_and_writes_to_the_test_database(celery_worker):
    result = create_user.delay("made-by-the-worker")
    user_id = result.get(timeout=30)
    user = get_user_model().objects.get(pk=user_id)
    assert user.username == "made-by-the-worker"
    assert result.successful()
