"""Websocket routes: the read-only live-status consumers (executions/consumers.py)."""

from django.urls import path, re_path

from executions.consumers import AllRunsConsumer, ApprovalsConsumer, NoSuchSocket, RunEventsConsumer

websocket_urlpatterns: list = [
    path("ws/approvals/", ApprovalsConsumer.as_asgi()),
    path("ws/runs/", AllRunsConsumer.as_asgi()),
    path("ws/runs/<uuid:run_id>/", RunEventsConsumer.as_asgi()),
    re_path(r"", NoSuchSocket.as_asgi()),
]
