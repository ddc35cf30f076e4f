"""The background worker against a real HTTP server standing in for Rasa's API on a free local port:
what reaches Rasa, Rasa down (the job stays due and is retried, nothing lost), a restart in a new process,
a failing job, and a clean stop on SIGTERM."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from datetime import datetime, timedelta

import pytest

from shop.alerts import subscribe
from shop.db import session_scope
from shop.models import Variant
from shop.worker import JOBS, Job, run_once, serve
from tests.unit.conftest import REPO_ROOT
from tests.unit.recovery_helpers import (  # noqa: F401 - shop is a fixture
    DELAY, T0, fake_rasa_server, fill_cart, reminders, shop, url_of, use_reminder_settings,
)
from tests.unit.service_helpers import free_port


@pytest.fixture(autouse=True)
def settings(monkeypatch):
    use_reminder_settings(monkeypatch)
    monkeypatch.setenv("RASA_TIMEOUT_SECONDS", "5")
    monkeypatch.setenv("RASA_TOKEN", "s3cret")


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_the_jobs_run_in_order():
    assert [job.name for job in JOBS] == ["cart_reminders", "stock_alerts", "lead_delivery"]


def test_a_due_reminder_and_an_alert_reach_rasa_through_trigger_intent(engine, shop, monkeypatch):
    fill_cart(engine, "chat 1/a", (shop["tee"], 1))
    with session_scope(engine) as session:
        alert = subscribe(session, variant_id=shop["jacket"], kind="price_drop", now=T0, conversation_id="chat-2").alert
        session.get(Variant, shop["jacket"]).price_cents = 7000
        alert_id = alert.id
    with fake_rasa_server() as rasa:
        monkeypatch.setenv("RASA_URL", rasa.url)
        done = run_once(engine, at(DELAY))

    assert (done["cart_reminders"], done["stock_alerts"]) == (1, 1)
    (conversation, query, body), (alert_conversation, _, alert_body) = rasa.triggered
    assert conversation == "chat 1/a"
    assert query == {"output_channel": "latest", "token": "s3cret"}
    assert body["name"] == "EXTERNAL_cart_reminder" and body["entities"]["discount_code"].startswith("COMEBACK")
    assert alert_conversation == "chat-2"
    assert alert_body == {"name": "EXTERNAL_stock_alert", "entities": {"stock_alert_id": str(alert_id)}}


def test_rasa_down_keeps_the_job_due_and_a_later_round_delivers_it(engine, shop, monkeypatch):
    fill_cart(engine, "chat-1", (shop["tee"], 1))
    monkeypatch.setenv("RASA_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    assert run_once(engine, at(DELAY))["cart_reminders"] == 0
    assert reminders(engine, "chat-1") == [(1, "scheduled", "", 1)]

    with fake_rasa_server() as rasa:
        monkeypatch.setenv("RASA_URL", rasa.url)
        rasa.status = 503  # up, but failing
        assert run_once(engine, at(DELAY + 30))["cart_reminders"] == 0
        rasa.status = 200
        assert run_once(engine, at(DELAY + 45))["cart_reminders"] == 0  # waits SHOP_WORKER_RETRY_SECONDS
        assert run_once(engine, at(DELAY + 60))["cart_reminders"] == 1
    assert len(rasa.triggered) == 1
    assert reminders(engine, "chat-1")[0] == (1, "sent", "", 3)


def test_the_conversation_s_latest_event_in_rasa_postpones_the_reminder(engine, shop, monkeypatch):
    fill_cart(engine, "chat-1", (shop["tee"], 1))
    with fake_rasa_server() as rasa:
        monkeypatch.setenv("RASA_URL", rasa.url)
        rasa.latest_event_time["chat-1"] = (at(40) - datetime(1970, 1, 1)).total_seconds()
        assert run_once(engine, at(DELAY))["cart_reminders"] == 0
        assert run_once(engine, at(40 + DELAY))["cart_reminders"] == 1


def test_a_new_worker_process_delivers_what_an_earlier_one_scheduled(engine, shop):
    # Scheduled on the real clock (the subprocess uses it), already due.
    fill_cart(engine, "chat-1", (shop["tee"], 1), now=datetime.utcnow() - timedelta(seconds=2 * DELAY))
    with fake_rasa_server() as rasa:
        env = {**os.environ, "RASA_URL": rasa.url, "SHOP_DATABASE_URL": url_of(engine)}
        finished = subprocess.run([sys.executable, "-m", "shop", "worker", "--once"], cwd=REPO_ROOT, env=env,
                                  capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    assert "cart_reminders: 1" in finished.stdout
    assert [conversation for conversation, _, _ in rasa.triggered] == ["chat-1"]


def test_a_failing_job_is_reported_and_the_others_still_run(engine):
    ran = []

    def broken(engine, now):
        raise RuntimeError("the CRM is down")

    def fine(engine, now):
        ran.append(now)
        return 2

    assert run_once(engine, T0, [Job("broken", broken), Job("fine", fine)]) == {"broken": None, "fine": 2}
    assert ran == [T0]


def test_serve_finishes_the_running_round_then_stops(engine):
    stop = threading.Event()
    rounds = []

    def last_round(engine, now):
        rounds.append(now)
        stop.set()  # as the SIGTERM handler does
        return 0

    serve(engine, 3600, stop, clock=lambda: T0, jobs=[Job("last", last_round)])
    assert rounds == [T0]


@pytest.mark.parametrize("backend", ["sqlite"])  # the signal handling is the same on every database
def test_sigterm_stops_the_worker_cleanly(engine):
    env = {**os.environ, "SHOP_DATABASE_URL": url_of(engine), "RASA_URL": f"http://127.0.0.1:{free_port()}"}
    worker = subprocess.Popen([sys.executable, "-m", "shop", "worker", "--interval", "3600"], cwd=REPO_ROOT,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in worker.stderr:  # wait until it is up
            if "worker started" in line:
                break
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
        assert "worker stopped" in worker.stderr.read()
    finally:
        if worker.poll() is None:
            worker.kill()
