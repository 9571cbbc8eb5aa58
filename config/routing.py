"""Websocket routes; the live-status consumers register here."""

websocket_urlpatterns: list = []
