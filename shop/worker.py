"""The one background worker: `python -m shop worker`.

Every SHOP_WORKER_INTERVAL_SECONDS (default 5) it runs the due jobs, in this order:

1. cart reminders (shop.reminders.run_due_reminders), into the chat through Rasa's trigger_intent API;
2. stock and price alerts (shop.alerts.run_due_alerts), in the chat or by email;
3. CRM lead delivery (shop.leads.deliver_due_leads).

Every job keeps its work in shop database tables, so stopping or restarting the worker, Rasa or the
action server loses nothing: what was due is done on the next run. Several workers may run at once
(production): each job claims its rows with a conditional UPDATE before acting on them.

A job that fails is logged and the others still run; the next run tries it again. SIGTERM or Ctrl-C
lets the running round finish, then the worker exits.

To add a job: write `job(engine, now) -> int` (how many things it did) and append it to JOBS.
"""
from __future__ import annotations

import argparse
import logging
import signal
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Dict, List, Optional, Sequence

from sqlalchemy.engine import Engine

from shop.db import session_scope
from shop.reminders import setting

log = logging.getLogger(__name__)

__all__ = ["JOBS", "Job", "add_worker_command", "cmd_worker", "run_once", "serve", "worker_interval"]


@dataclass(frozen=True)
class Job:
    name: str
    run: Callable[[Engine, datetime], int]


def worker_interval() -> float:
    return float(setting("SHOP_WORKER_INTERVAL_SECONDS", 5))


def cart_reminders(engine: Engine, now: datetime) -> int:
    from shop.rasa_client import latest_event_time, trigger_intent
    from shop.reminders import run_due_reminders

    with session_scope(engine) as session:
        return run_due_reminders(session, now, trigger_intent, last_activity=latest_event_time)


def stock_alerts(engine: Engine, now: datetime) -> int:
    from shop.alerts import run_due_alerts
    from shop.mailer import SmtpMailer
    from shop.rasa_client import latest_event_time, trigger_intent

    def send_email(to: str, subject: str, body: str) -> None:
        SmtpMailer().send(to, subject, body)  # settings read per mail: SMTP_* may change between runs

    with session_scope(engine) as session:
        return run_due_alerts(session, now, trigger_intent, send_email, last_activity=latest_event_time)


def lead_delivery(engine: Engine, now: datetime) -> int:
    try:
        from shop.leads import deliver_due_leads
    except ImportError:  # a checkout of the shop without the CRM delivery: nothing to deliver
        log.debug("shop.leads.deliver_due_leads is not available; skipping lead delivery")
        return 0
    with session_scope(engine) as session:
        return deliver_due_leads(session, now)


JOBS: List[Job] = [
    Job("cart_reminders", cart_reminders),
    Job("stock_alerts", stock_alerts),
    Job("lead_delivery", lead_delivery),
]


def run_once(engine: Engine, now: datetime, jobs: Sequence[Job] = JOBS) -> Dict[str, Optional[int]]:
    """One round: every job at `now`, in order. Returns job name -> how many things it did (None: it failed,
    logged, and will run again next round)."""
    done: Dict[str, Optional[int]] = {}
    for job in jobs:
        try:
            done[job.name] = job.run(engine, now)
        except Exception:  # noqa: BLE001 - one broken job must not stop reminders, alerts or leads
            log.exception("worker job %s failed; it runs again next round", job.name)
            done[job.name] = None
    return done


def serve(engine: Engine, interval: float, stop: threading.Event,
          clock: Callable[[], datetime] = datetime.utcnow, jobs: Sequence[Job] = JOBS) -> None:
    """Run rounds every `interval` seconds until `stop` is set (the running round always finishes)."""
    while not stop.is_set():
        done = run_once(engine, clock(), jobs)
        if any(done.values()):
            log.info("worker round: %s", ", ".join(f"{name} {count}" for name, count in done.items()))
        stop.wait(interval)


def add_worker_command(commands, common) -> None:
    worker = commands.add_parser(
        "worker", parents=[common], help="run the background jobs: cart reminders, stock alerts, lead delivery",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Run the due background jobs every --interval seconds until SIGTERM or Ctrl-C: abandoned-cart\n"
            "reminders and stock/price alerts (into the chat through Rasa's API at RASA_URL, or by email),\n"
            "then CRM lead delivery. The jobs live in the shop database, so a restart loses nothing."
        ),
    )
    worker.add_argument("--interval", type=float, default=None, metavar="SECONDS",
                        help="seconds between rounds (default: SHOP_WORKER_INTERVAL_SECONDS or 5)")
    worker.add_argument("--once", action="store_true", help="run one round and exit")


def cmd_worker(args: argparse.Namespace) -> int:
    from shop.db import database_url, make_engine

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    engine = make_engine(getattr(args, "database_url", None) or database_url())
    if args.once:
        done = run_once(engine, datetime.utcnow())
        print(", ".join(f"{name}: {'failed' if count is None else count}" for name, count in done.items()))
        return 1 if None in done.values() else 0
    interval = args.interval if args.interval is not None else worker_interval()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    log.info("worker started: a round every %s s on %s", interval, engine.url.render_as_string(hide_password=True))
    serve(engine, interval, stop)
    log.info("worker stopped")
    return 0
