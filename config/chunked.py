"""ASGI middleware: a request body sent without Content-Length (chunked) reaches Django with one."""

from __future__ import annotations

import json
from http import HTTPStatus

from django.conf import settings


class ChunkedBodyLength:
    """Reads a body of unknown length, up to CHORDFLOW_API_MAX_BODY_BYTES, and passes it on with its length.

    Django reads CONTENT_LENGTH bytes of a body, so without this a chunked body arrived as nothing
    and a POST with a JSON object acted as `{}`. A body over the limit gets 413 without being read on.
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        headers = dict(scope.get("headers", [])) if scope["type"] == "http" else {}
        if b"transfer-encoding" not in headers or b"content-length" in headers:
            await self.app(scope, receive, send)
            return
        limit = settings.CHORDFLOW_API_MAX_BODY_BYTES
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > limit:
                await _refuse(send, f"the request body is over the limit of {limit} bytes ({limit // 1024} KiB)")
                return
            if not message.get("more_body"):
                break
        length = [(b"content-length", str(len(body)).encode())]
        kept = [(name, value) for name, value in scope["headers"] if name != b"transfer-encoding"]
        sent = False

        async def replay():
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app({**scope, "headers": kept + length}, replay, send)


async def _refuse(send, detail: str) -> None:
    content = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]
    await send({"type": "http.response.start", "status": HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "headers": headers})
    await send({"type": "http.response.body", "body": content})
