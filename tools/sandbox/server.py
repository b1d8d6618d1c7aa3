"""Run the sandbox under uvicorn (what `opsgate sandbox` calls)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import uvicorn
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from tools.sandbox.app import create_app
from tools.sandbox.faults import TRANSPORT_EXTENSION


class DropCapableProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
    """uvicorn's HTTP protocol, handing each request's transport to the app in its scope.

    The commit-then-drop fault closes that transport to cut the connection without a response.
    """

    app: Any  # set by uvicorn's protocol from config.loaded_app; wrapped per connection below

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        inner = self.app

        async def app(scope: Any, receive: Any, send: Any) -> None:
            extensions = scope.get("extensions") or {}
            extensions[TRANSPORT_EXTENSION] = {"transport": transport}
            scope["extensions"] = extensions
            await inner(scope, receive, send)

        self.app = app


def server(db_path: str, **config: Any) -> uvicorn.Server:
    """A uvicorn Server for the sandbox over db_path (config: uvicorn.Config options)."""
    options: dict[str, Any] = {"log_level": "warning", "access_log": False, **config}
    return uvicorn.Server(uvicorn.Config(create_app(db_path), http=DropCapableProtocol, **options))


def run(host: str, port: int, db_path: str, sockets: list[socket.socket] | None = None) -> None:
    """Serve the sandbox on host:port with its state in the SQLite file db_path; blocks."""
    server(db_path, host=host, port=port).run(sockets=sockets)
