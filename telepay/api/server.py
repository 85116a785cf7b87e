"""Waitress in a background thread, with a stop that ends in bounded time.

Waitress's own `run()` loops until every socket is closed, so an idle keep-alive connection
would hold shutdown open. We drive its loop in short steps instead: on stop we close the
listening socket, let in-flight requests finish for a few seconds, then close the rest.
"""

from __future__ import annotations

import logging
import threading
import time

import waitress
from waitress import wasyncore

from telepay.api.app import close_app

logger = logging.getLogger(__name__)


class ApiServer:
    def __init__(self, app, host: str, port: int, threads: int = 8):
        self._app = app
        self._server = waitress.create_server(
            app, host=host, port=port, threads=threads, ident="telepay",
            # Bodies are capped by the app too; this bounds what waitress buffers first.
            max_request_body_size=1024 * 1024,
            channel_timeout=30,
            # Waitress would otherwise delete X-Forwarded-For from every request, since it is
            # told of no trusted proxy; behind Caddy every caller would then look like
            # 127.0.0.1. Which hops to believe is the guards' decision (`client_ip`).
            clear_untrusted_proxy_headers=False,
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="telepay-api", daemon=True)

    @property
    def port(self) -> int:
        return self._server.effective_port

    @property
    def host(self) -> str:
        return self._server.effective_host

    def start(self) -> None:
        self._thread.start()
        logger.info("API listening on http://%s:%s", self.host, self.port)

    def _serve(self) -> None:
        server, socket_map = self._server, self._server._map
        while not self._stop.is_set():
            wasyncore.loop(timeout=0.2, map=socket_map, use_poll=True, count=1)
        server.accepting = False
        server.del_channel()
        server.socket.close()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(
            getattr(channel, "requests", None) or getattr(channel, "total_outbufs_len", 0)
            for channel in list(socket_map.values())
        ):
            wasyncore.loop(timeout=0.1, map=socket_map, use_poll=True, count=1)
        for channel in list(socket_map.values()):
            channel.close()
        server.task_dispatcher.shutdown(timeout=2)
        close_app(self._app)

    def stop(self, timeout: float = 8.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.warning("API server did not stop within %.0f s", timeout)
