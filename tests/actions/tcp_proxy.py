"""A TCP proxy on a free loopback port, in front of a real server, that a test can break on purpose:
`down()` refuses new connections and cuts the open ones (a crashed database), `pause()` keeps every
connection open but passes no byte (a hung one), `up()` makes it a plain pipe again."""
from __future__ import annotations

import select
import socket
import threading
from typing import List, Tuple

POLL_SECONDS = 0.05


class TcpProxy:
    def __init__(self, target: Tuple[str, int]):
        self.target = target
        self._running = True
        self._paused = threading.Event()
        self._lock = threading.Lock()
        self._open: List[socket.socket] = []
        self._listener = self._listen(0)
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def _listen(self, port: int) -> socket.socket:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(64)
        listener.settimeout(POLL_SECONDS)
        return listener

    def _accept_loop(self) -> None:
        while self._running:
            listener = self._listener
            if listener is None:
                threading.Event().wait(POLL_SECONDS)
                continue
            try:
                client, _ = listener.accept()
            except (socket.timeout, OSError):
                continue
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open += [client, server]
            threading.Thread(target=self._pipe, args=(client, server), daemon=True).start()

    def _pipe(self, client: socket.socket, server: socket.socket) -> None:
        peers = {client: server, server: client}
        try:
            while self._running:
                if self._paused.is_set():
                    threading.Event().wait(POLL_SECONDS)
                    continue
                readable, _, _ = select.select(list(peers), [], [], POLL_SECONDS)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    peers[sock].sendall(data)
        except OSError:
            return
        finally:
            for sock in (client, server):
                sock.close()

    def _cut_open_connections(self) -> None:
        with self._lock:
            for sock in self._open:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
            self._open.clear()

    def down(self) -> None:
        self._paused.clear()
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        self._cut_open_connections()

    def pause(self) -> None:
        self._paused.set()

    def up(self) -> None:
        self._paused.clear()
        if self._listener is None:
            self._listener = self._listen(self.port)

    def close(self) -> None:
        self._running = False
        self.down()
