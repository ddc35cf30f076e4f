"""A small round-robin HTTP load balancer for running several Rasa replicas or action servers locally.

`python -m ops.balancer --listen 127.0.0.1:5005 --backend http://127.0.0.1:5006 --backend ...`

Each request goes to the next backend in turn, so consecutive messages of one conversation land
on different replicas: the shared tracker store and lock store are what keep the conversation
whole. A backend that refuses the connection is skipped and the request goes to the next one
(nothing reached the refusing backend, so retrying cannot do anything twice). socket.io is the
exception to round robin: an Engine.IO session (its `sid`) and a WebSocket stay on the replica that
opened them, because that replica holds the session. Every response names its backend in the
`X-Upstream` header.

With `--action-fallback` (in front of action servers) a custom action that no backend can run (all
refuse, one fails with 5xx or breaks off, or none answers within `--timeout`) gets the honest reply
of ops/action_fallback.py instead of an error, so the shopper is never left in silence.

In Kubernetes a Service does this job; this module is for one machine and for the tests.
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import json
import re
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Optional, Sequence

from aiohttp import ClientConnectorError, ClientError, ClientSession, ClientTimeout, TCPConnector, WSMsgType, web

from ops.action_fallback import unavailable_reply

ActionFallback = Callable[[Dict[str, Any]], Dict[str, Any]]

logger = logging.getLogger("ops.balancer")

# Headers that describe one hop of the connection, not the message (RFC 9110, section 7.6.1).
HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade", "host", "content-length",
}
ENGINE_IO_SID = re.compile(rb'"sid"\s*:\s*"([^"]+)"')
REMEMBERED_SESSIONS = 10_000
MAX_BODY_BYTES = 10 * 1024 * 1024


class Balancer:
    def __init__(self, backends: Sequence[str], timeout_seconds: float = 300.0,
                 action_fallback: Optional[ActionFallback] = None):
        if not backends:
            raise ValueError("at least one backend is needed")
        self.backends = [b.rstrip("/") for b in backends]
        self._turns = itertools.cycle(range(len(self.backends)))
        self._timeout = ClientTimeout(total=timeout_seconds, connect=min(5.0, timeout_seconds))
        self._action_fallback = action_fallback
        self._session: Optional[ClientSession] = None
        self._socket_sessions: "OrderedDict[str, str]" = OrderedDict()

    def next_backends(self) -> List[str]:
        """All backends, starting with the one whose turn it is."""
        first = next(self._turns)
        return self.backends[first:] + self.backends[:first]

    def _sticky_backend(self, request: web.Request) -> Optional[str]:
        sid = request.query.get("sid")
        return self._socket_sessions.get(sid) if sid else None

    def _remember_socket_session(self, body: bytes, backend: str) -> None:
        match = ENGINE_IO_SID.search(body[:512])
        if match:
            self._socket_sessions[match.group(1).decode()] = backend
            while len(self._socket_sessions) > REMEMBERED_SESSIONS:
                self._socket_sessions.popitem(last=False)

    async def start(self, _app: web.Application) -> None:
        # No decompression: bodies pass through byte for byte with their Content-Encoding. A fresh
        # connection per request: a backend that died shows as refused (safe to skip), never as a
        # kept-alive connection breaking mid-request.
        self._session = ClientSession(timeout=self._timeout, auto_decompress=False,
                                      connector=TCPConnector(force_close=True))

    async def stop(self, _app: web.Application) -> None:
        if self._session:
            await self._session.close()

    def _fallback_for(self, request: web.Request, body: bytes) -> Optional[web.Response]:
        """The honest stand-in answer to a custom action call, when this balancer gives one."""
        if not self._action_fallback or request.method != "POST" or not request.path.endswith("/webhook"):
            return None
        try:
            action_call = json.loads(body)
        except ValueError:
            action_call = None
        if not isinstance(action_call, dict):
            action_call = {}
        reply = self._action_fallback(action_call)
        logger.warning("no action server ran %r: answered with the fallback", action_call.get("next_action"))
        return web.json_response(reply, headers={"X-Upstream": "fallback"})

    async def handle(self, request: web.Request) -> web.StreamResponse:
        sticky = self._sticky_backend(request)
        candidates = [sticky] if sticky else self.next_backends()
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._proxy_websocket(request, candidates)
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        for backend in candidates:
            try:
                async with self._session.request(
                    request.method, backend + request.rel_url.path_qs, headers=headers, data=body,
                    allow_redirects=False,
                ) as upstream:
                    payload = await upstream.read()
                    if upstream.status >= 500:
                        # The action may have run in part: answering for it beats running it twice.
                        fallback = self._fallback_for(request, body)
                        if fallback is not None:
                            return fallback
                    if "/socket.io/" in request.path and "sid" not in request.query and upstream.status == 200:
                        self._remember_socket_session(payload, backend)
                    response = web.Response(status=upstream.status, body=payload)
                    for name, value in upstream.headers.items():
                        if name.lower() not in HOP_BY_HOP:
                            response.headers.add(name, value)
                    response.headers["X-Upstream"] = backend
                    return response
            except ClientConnectorError as exc:
                logger.warning("backend %s refused the connection (%s); trying the next one", backend, exc)
            except (asyncio.TimeoutError, ClientError) as exc:
                logger.warning("backend %s broke off or did not answer %s %s in time (%r)", backend,
                               request.method, request.path, exc)
                return self._answer_for_missing_backend(request, body, 504, "upstream timeout or broken connection")
        return self._answer_for_missing_backend(request, body, 502, "no backend is reachable")

    def _answer_for_missing_backend(self, request: web.Request, body: bytes, status: int, error: str) -> web.Response:
        fallback = self._fallback_for(request, body)
        return fallback if fallback is not None else web.json_response({"error": error}, status=status)

    async def _proxy_websocket(self, request: web.Request, candidates: List[str]) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() not in HOP_BY_HOP and not k.lower().startswith("sec-websocket")}
        for backend in candidates:
            try:
                upstream = await self._session.ws_connect(backend + request.rel_url.path_qs, headers=headers)
            except ClientConnectorError as exc:
                logger.warning("backend %s refused the WebSocket (%s); trying the next one", backend, exc)
                continue
            client = web.WebSocketResponse(headers={"X-Upstream": backend})
            await client.prepare(request)
            await asyncio.gather(_pump(upstream, client), _pump(client, upstream))
            return client
        return web.json_response({"error": "no backend is reachable"}, status=502)


async def _pump(source, target) -> None:
    """Copy WebSocket messages one way until either side closes, then close the other."""
    async for message in source:
        if message.type == WSMsgType.TEXT:
            await target.send_str(message.data)
        elif message.type == WSMsgType.BINARY:
            await target.send_bytes(message.data)
        else:
            break
    if not target.closed:
        await target.close()


def create_app(backends: Sequence[str], timeout_seconds: float = 300.0,
               action_fallback: Optional[ActionFallback] = None) -> web.Application:
    balancer = Balancer(backends, timeout_seconds, action_fallback)
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.on_startup.append(balancer.start)
    app.on_cleanup.append(balancer.stop)
    app.router.add_route("*", "/{path:.*}", balancer.handle)
    return app


def _host_port(text: str) -> tuple:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return host, int(port)


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ops.balancer", description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", type=_host_port, default=("127.0.0.1", 5005), metavar="HOST:PORT",
                        help="where the balancer listens (default: 127.0.0.1:5005)")
    parser.add_argument("--backend", action="append", required=True, metavar="URL",
                        help="a backend base URL such as http://127.0.0.1:5006; repeat for each")
    parser.add_argument("--timeout", type=float, default=300.0, metavar="SECONDS",
                        help="longest wait for a backend's answer (default: 300)")
    parser.add_argument("--action-fallback", action="store_true",
                        help="in front of action servers: answer a custom action that no backend can run "
                        "with an honest message and an offer of a person (ops/action_fallback.py)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    host, port = args.listen
    logger.info("balancing %s:%s over %s", host, port, ", ".join(args.backend))
    fallback = unavailable_reply if args.action_fallback else None
    web.run_app(create_app(args.backend, args.timeout, fallback), host=host, port=port, access_log=None,
                print=None)


if __name__ == "__main__":
    main()
