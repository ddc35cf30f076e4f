"""ops/balancer.py with real HTTP backends on free local ports (small aiohttp servers that say who they are)."""
from __future__ import annotations

import asyncio
import json
import time
from contextlib import asynccontextmanager
from typing import AsyncIterator, List

from aiohttp import ClientSession, web

from ops.action_fallback import DEFAULT_MESSAGE, END_OF_TURN, TALK_TO_A_PERSON, unavailable_reply
from ops.balancer import create_app
from ops.servers import free_port


def backend_app(name: str, hang: asyncio.Event = None) -> web.Application:
    async def answer(request: web.Request) -> web.Response:
        if request.path == "/socket.io/" and "sid" not in request.query:
            return web.Response(text='0{"sid":"sid-of-' + name + '","upgrades":[],"pingInterval":25000}')
        if request.path == "/broken":
            return web.json_response({"error": "boom"}, status=500)
        if request.path == "/webhook" and hang is not None:
            await hang.wait()
        body = await request.read()
        return web.json_response({"backend": name, "path": request.path_qs, "body": body.decode()})

    app = web.Application()
    app.router.add_route("*", "/{path:.*}", answer)
    return app


@asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def balancer(backends: List[str], **options) -> AsyncIterator[str]:
    async with serving(create_app(backends, **options)) as url:
        yield url


def nobody_listening() -> str:
    return f"http://127.0.0.1:{free_port()}"


ACTION_CALL = {"next_action": "action_search_products", "sender_id": "s1",
               "tracker": {"events": [{"event": "user", "text": "red sneakers"}]}}


def test_requests_take_turns_and_arrive_unchanged():
    async def scenario():
        async with serving(backend_app("a")) as a, serving(backend_app("b")) as b, balancer([a, b]) as front:
            async with ClientSession() as client:
                seen = []
                for i in range(4):
                    async with client.post(f"{front}/webhooks/rest/webhook?x={i}", data=f"hello {i}") as r:
                        assert r.status == 200
                        body = await r.json()
                        assert body["path"] == f"/webhooks/rest/webhook?x={i}" and body["body"] == f"hello {i}"
                        seen.append((body["backend"], r.headers["X-Upstream"]))
        return seen, a, b

    seen, a, b = asyncio.run(scenario())
    assert seen == [("a", a), ("b", b), ("a", a), ("b", b)]


def test_a_backend_that_refuses_is_skipped_and_none_left_is_a_clear_502():
    async def scenario():
        async with serving(backend_app("alive")) as alive, balancer([nobody_listening(), alive]) as front:
            async with ClientSession() as client:
                names = []
                for _ in range(3):
                    async with client.get(f"{front}/status") as r:
                        names.append((await r.json())["backend"])
        async with balancer([nobody_listening()]) as front:
            async with ClientSession() as client:
                async with client.get(f"{front}/status") as r:
                    return names, r.status, await r.json()

    names, status, body = asyncio.run(scenario())
    assert names == ["alive"] * 3
    assert status == 502 and body == {"error": "no backend is reachable"}


def test_a_backend_that_dies_after_answering_is_skipped_from_then_on():
    async def scenario():
        async with serving(backend_app("b")) as b:
            runner = web.AppRunner(backend_app("a"))
            await runner.setup()
            port = free_port()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            a = f"http://127.0.0.1:{port}"
            async with balancer([a, b]) as front:
                async with ClientSession() as client:
                    async with client.post(f"{front}/webhooks/rest/webhook", data="one") as r:
                        first = (await r.json())["backend"]
                    await runner.cleanup()  # replica a crashes
                    later = []
                    for i in range(3):
                        async with client.post(f"{front}/webhooks/rest/webhook", data=str(i)) as r:
                            later.append((r.status, (await r.json())["backend"]))
        return first, later

    first, later = asyncio.run(scenario())
    assert first == "a"
    assert later == [(200, "b")] * 3


def test_a_socket_io_session_stays_on_the_replica_that_opened_it():
    async def scenario():
        async with serving(backend_app("a")) as a, serving(backend_app("b")) as b, balancer([a, b]) as front:
            async with ClientSession() as client:
                async with client.get(f"{front}/socket.io/?EIO=4&transport=polling") as r:
                    sid = json.loads((await r.text())[1:])["sid"]
                    opened_on = r.headers["X-Upstream"]
                later = []
                for _ in range(3):
                    async with client.post(f"{front}/socket.io/?EIO=4&transport=polling&sid={sid}", data="42") as r:
                        later.append(r.headers["X-Upstream"])
        return sid, opened_on, later, a

    sid, opened_on, later, a = asyncio.run(scenario())
    assert sid == "sid-of-a" and opened_on == a
    assert later == [a, a, a]


def action_call_through(backends_factory, **options):
    async def scenario():
        hang = asyncio.Event()
        async with serving(backend_app("slow", hang)) as slow:
            backends = backends_factory(slow)
            async with balancer(backends, action_fallback=unavailable_reply, **options) as front:
                async with ClientSession() as client:
                    started = time.monotonic()
                    async with client.post(f"{front}/webhook", json=ACTION_CALL) as r:
                        return r.status, await r.json(), time.monotonic() - started, r.headers["X-Upstream"]

    return asyncio.run(scenario())


def test_a_custom_action_no_server_can_run_gets_an_honest_answer_and_a_person_at_once():
    status, reply, seconds, upstream = action_call_through(lambda _slow: [nobody_listening(), nobody_listening()])
    assert status == 200 and upstream == "fallback"
    assert reply == {"events": [END_OF_TURN], "responses": [{"text": DEFAULT_MESSAGE, "buttons": [TALK_TO_A_PERSON]}]}
    assert seconds < 5


def test_a_hung_action_server_is_answered_for_within_the_timeout():
    status, reply, seconds, upstream = action_call_through(lambda slow: [slow], timeout_seconds=1.0)
    assert status == 200 and upstream == "fallback"
    assert reply["responses"][0]["text"] == DEFAULT_MESSAGE
    assert 0.9 < seconds < 5


def test_a_failing_action_server_is_answered_for_but_other_paths_keep_their_errors():
    async def scenario():
        async with serving(backend_app("a")) as a:
            async with balancer([a], action_fallback=unavailable_reply) as front:
                async with ClientSession() as client:
                    async with client.post(f"{front}/broken", json=ACTION_CALL) as r:
                        broken = r.status, await r.json()
        async with balancer([nobody_listening()], action_fallback=unavailable_reply) as front:
            async with ClientSession() as client:
                async with client.get(f"{front}/health") as r:
                    health = r.status
        return broken, health

    (status, body), health = asyncio.run(scenario())
    assert status == 500 and body == {"error": "boom"}  # not an action call: passed through as it is
    assert health == 502


def test_the_fallback_is_said_once_per_turn():
    already_said = {"tracker": {"events": [
        {"event": "user", "text": "where is my order"},
        {"event": "bot", "text": DEFAULT_MESSAGE},
    ]}}
    next_turn = {"tracker": {"events": already_said["tracker"]["events"] + [{"event": "user", "text": "hello?"}]}}

    assert unavailable_reply(already_said) == {"events": [END_OF_TURN], "responses": []}
    assert unavailable_reply(next_turn)["responses"][0]["text"] == DEFAULT_MESSAGE
    assert unavailable_reply({})["responses"][0]["buttons"] == [TALK_TO_A_PERSON]
