"""Run the benchmark: our assistant and Rasa's template bot, same number of REST turns each,
then 50 concurrent shoppers against ours on the 100,000-product catalog.

Every server runs as its own process on a free port, exactly as `make run` starts it; latency is
measured by the client per turn (request sent to reply received). Peak memory is the kernel's
high-water mark of each server's resident set (VmHWM), read just before it stops.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import requests

from bench.scripts import baseline_turns, shop_turns
from ops.servers import BIN, REPO_ROOT, Server, free_port

WORK_DIR = REPO_ROOT / "var" / "bench"
RESULTS_DIR = REPO_ROOT / "results" / "bench"
OUR_MODEL = REPO_ROOT / "models" / "shop.tar.gz"
LARGE_CATALOG = WORK_DIR / "catalog-large.db"
BASELINE_DIR = WORK_DIR / "baseline"
TURN_TIMEOUT_SECONDS = 30
GOALS = {"p50_ratio_max": 1.5, "p99_ms_max": 300.0, "concurrent_errors_max": 0, "rss_ratio_max": 1.3}


@dataclass
class Latencies:
    turns: int
    seconds: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    throughput_turns_per_s: float
    errors: int = 0
    silent_turns: int = 0
    samples_ms: List[float] = field(default_factory=list, repr=False)


@dataclass
class ServerMemory:
    rasa_peak_rss_mb: float
    action_server_peak_rss_mb: float


def _percentile(sorted_ms: List[float], fraction: float) -> float:
    if not sorted_ms:
        return 0.0
    index = min(len(sorted_ms) - 1, max(0, round(fraction * len(sorted_ms)) - 1))
    return sorted_ms[index]


def _summarise(samples_ms: List[float], seconds: float, errors: int, silent: int) -> Latencies:
    ordered = sorted(samples_ms)
    return Latencies(
        turns=len(samples_ms) + errors, seconds=round(seconds, 2),
        p50_ms=round(statistics.median(ordered), 1) if ordered else 0.0,
        p95_ms=round(_percentile(ordered, 0.95), 1), p99_ms=round(_percentile(ordered, 0.99), 1),
        max_ms=round(ordered[-1], 1) if ordered else 0.0,
        throughput_turns_per_s=round(len(samples_ms) / seconds, 1) if seconds else 0.0,
        errors=errors, silent_turns=silent, samples_ms=[round(value, 1) for value in samples_ms],
    )


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def _progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _run(command: List[str], cwd: Path, env: Optional[Dict[str, str]] = None) -> None:
    done = subprocess.run(command, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


def ensure_baseline() -> Path:
    """Rasa's `rasa init` template bot with default settings, trained once and then reused."""
    models = sorted((BASELINE_DIR / "models").glob("*.tar.gz")) if BASELINE_DIR.exists() else []
    if models:
        return models[-1]
    _progress("creating and training the baseline (`rasa init --no-prompt`), about 2 minutes")
    BASELINE_DIR.mkdir(parents=True, exist_ok=True)
    _run([str(BIN / "rasa"), "init", "--no-prompt", "--init-dir", str(BASELINE_DIR)], cwd=BASELINE_DIR)
    models = sorted((BASELINE_DIR / "models").glob("*.tar.gz"))
    if not models:
        sys.exit(f"`rasa init` trained no model in {BASELINE_DIR / 'models'}")
    return models[-1]


def ensure_large_catalog() -> str:
    url = f"sqlite:///{LARGE_CATALOG}"
    if not LARGE_CATALOG.exists():
        _progress("seeding the 100,000-product catalog once (a few minutes); reused by later runs")
        WORK_DIR.mkdir(parents=True, exist_ok=True)
        partial = LARGE_CATALOG.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        _run([str(BIN / "python"), "-m", "shop", "--database-url", f"sqlite:///{partial}", "seed",
              "--size", "large", "--quiet"], cwd=REPO_ROOT)
        partial.rename(LARGE_CATALOG)
    return url


class Assistant:
    """One Rasa server with its action server, as `make run` starts them."""

    def __init__(self, name: str, model: Path, cwd: Path, env: Dict[str, str], workdir: Path):
        workdir.mkdir(parents=True, exist_ok=True)
        self.rasa_port, action_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.rasa_port}"
        endpoints = workdir / "endpoints.yml"
        endpoints.write_text(
            f'action_endpoint:\n  url: "http://127.0.0.1:{action_port}/webhook"\n'
            f'tracker_store:\n  type: SQL\n  dialect: "sqlite"\n  db: "{workdir / "tracker.db"}"\n'
        )
        env = {**env, "TF_CPP_MIN_LOG_LEVEL": "3"}
        self.actions = Server(f"{name} action server",
                              [str(BIN / "rasa"), "run", "actions", "--port", str(action_port)],
                              env, workdir / "actions.log", cwd=cwd)
        self.rasa = Server(f"{name} rasa server",
                           [str(BIN / "rasa"), "run", "--model", str(model), "-i", "127.0.0.1",
                            "-p", str(self.rasa_port), "--endpoints", str(endpoints)],
                           env, workdir / "rasa.log", cwd=cwd)
        self.actions.wait_until_ready(f"http://127.0.0.1:{action_port}/health", lambda r: r.ok, 600)
        self.rasa.wait_until_ready(f"{self.url}/", lambda r: r.ok, 900)

    def memory(self) -> ServerMemory:
        return ServerMemory(_peak_rss_mb(self.rasa.process.pid), _peak_rss_mb(self.actions.process.pid))

    def stop(self) -> None:
        self.rasa.stop()
        self.actions.stop()


def _send(http: requests.Session, url: str, sender: str, text: str):
    """One turn; returns (milliseconds, replied) or raises on an HTTP or network error."""
    started = time.perf_counter()
    response = http.post(f"{url}/webhooks/rest/webhook", json={"sender": sender, "message": text},
                         timeout=TURN_TIMEOUT_SECONDS)
    elapsed = (time.perf_counter() - started) * 1000
    response.raise_for_status()
    return elapsed, bool(response.json())


def sequential(url: str, turns: List[str], sender_prefix: str, turns_per_conversation: int = 10) -> Latencies:
    samples: List[float] = []
    errors = silent = 0
    http = requests.Session()
    started = time.perf_counter()
    for index, text in enumerate(turns):
        sender = f"{sender_prefix}-{index // turns_per_conversation}"
        try:
            elapsed, replied = _send(http, url, sender, text)
        except (requests.RequestException, ValueError):
            errors += 1
            continue
        samples.append(elapsed)
        silent += not replied
    return _summarise(samples, time.perf_counter() - started, errors, silent)


def concurrent(url: str, shoppers: int, turns_each: int, seed: int) -> Latencies:
    def shopper(number: int):
        http = requests.Session()
        results = []
        for text in shop_turns(turns_each, seed + number):
            try:
                results.append(_send(http, url, f"crowd-{seed}-{number}", text))
            except (requests.RequestException, ValueError):
                results.append(None)
        return results

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=shoppers) as pool:
        outcomes = [turn for result in pool.map(shopper, range(shoppers)) for turn in result]
    seconds = time.perf_counter() - started
    samples = [turn[0] for turn in outcomes if turn is not None]
    silent = sum(1 for turn in outcomes if turn is not None and not turn[1])
    return _summarise(samples, seconds, sum(1 for turn in outcomes if turn is None), silent)


def _warm_up(url: str, turns: List[str]) -> None:
    sequential(url, turns, "warm-up")


def _load_average() -> float:
    return round(os.getloadavg()[0], 2)


def verdicts(report: Dict) -> Dict[str, Dict]:
    ours, base = report["ours"]["sequential"], report["baseline"]["sequential"]
    crowd = report["ours"]["concurrent"]
    p50_ratio = round(ours["p50_ms"] / base["p50_ms"], 2) if base["p50_ms"] else None
    rss_ratio = (round(report["ours"]["memory"]["rasa_peak_rss_mb"] / report["baseline"]["memory"]["rasa_peak_rss_mb"], 2)
                 if report["baseline"]["memory"]["rasa_peak_rss_mb"] else None)
    return {
        "p50 vs baseline": {"value": p50_ratio, "goal": f"<= {GOALS['p50_ratio_max']}x",
                            "met": p50_ratio is not None and p50_ratio <= GOALS["p50_ratio_max"]},
        "p99 (sequential)": {"value": ours["p99_ms"], "goal": f"<= {GOALS['p99_ms_max']:.0f} ms",
                             "met": ours["p99_ms"] <= GOALS["p99_ms_max"]},
        "p99 (50 shoppers)": {"value": crowd["p99_ms"], "goal": f"<= {GOALS['p99_ms_max']:.0f} ms",
                              "met": crowd["p99_ms"] <= GOALS["p99_ms_max"]},
        "errors (50 shoppers)": {"value": crowd["errors"], "goal": "0",
                                 "met": crowd["errors"] <= GOALS["concurrent_errors_max"]},
        "Rasa RSS vs baseline": {"value": rss_ratio, "goal": f"<= {GOALS['rss_ratio_max']}x",
                                 "met": rss_ratio is not None and rss_ratio <= GOALS["rss_ratio_max"]},
    }


def _table(report: Dict) -> str:
    rows = [("", "turns", "p50 ms", "p95 ms", "p99 ms", "turns/s", "errors", "Rasa RSS MB", "actions RSS MB")]
    for who, phase in (("baseline", "sequential"), ("ours", "sequential"), ("ours", "concurrent")):
        lat, mem = report[who][phase], report[who]["memory"]
        rows.append((f"{who} {phase}", str(lat["turns"]), str(lat["p50_ms"]), str(lat["p95_ms"]), str(lat["p99_ms"]),
                     str(lat["throughput_turns_per_s"]), str(lat["errors"]), str(mem["rasa_peak_rss_mb"]),
                     str(mem["action_server_peak_rss_mb"])))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) for row in rows]
    lines.append("")
    for name, verdict in report["goals"].items():
        lines.append(f"{name}: {verdict['value']} (goal {verdict['goal']}): {'meets' if verdict['met'] else 'MISSES'}")
    return "\n".join(lines)


def _chart(report: Dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (bars, spread) = plt.subplots(1, 2, figsize=(12, 4.5))
    phases = [("baseline", "sequential"), ("ours", "sequential"), ("ours", "concurrent")]
    labels = ["baseline\n(template bot)", "ours\n(one shopper)", f"ours\n({report['settings']['shoppers']} shoppers)"]
    width = 0.25
    for offset, key in enumerate(("p50_ms", "p95_ms", "p99_ms")):
        bars.bar([index + offset * width for index in range(len(phases))],
                 [report[who][phase][key] for who, phase in phases], width, label=key.replace("_ms", ""))
    bars.axhline(GOALS["p99_ms_max"], color="red", linestyle="--", linewidth=1, label="p99 goal")
    bars.set_xticks([index + width for index in range(len(phases))], labels)
    bars.set_ylabel("latency per turn (ms)")
    bars.set_title("Latency percentiles")
    bars.legend()
    spread.hist([report[who][phase]["samples_ms"] for who, phase in phases], bins=40, label=labels, histtype="step")
    spread.set_xlabel("latency per turn (ms)")
    spread.set_ylabel("turns")
    spread.set_title("Distribution")
    spread.legend()
    figure.suptitle(f"Shop assistant benchmark, {report['finished_at']} (load average {report['load_average_before']})")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--turns", type=int, default=200, help="REST turns per assistant, one at a time (default 200)")
    parser.add_argument("--shoppers", type=int, default=50, help="concurrent simulated shoppers (default 50)")
    parser.add_argument("--shopper-turns", type=int, default=20, help="turns per concurrent shopper (default 20)")
    parser.add_argument("--seed", type=int, default=11, help="seed of our message mix (default 11)")
    args = parser.parse_args(argv)
    if not OUR_MODEL.exists():
        sys.exit(f"No trained model at {OUR_MODEL}: run `make train` first (`make bench` does).")

    report: Dict = {"settings": vars(args), "load_average_before": _load_average()}
    baseline_model = ensure_baseline()
    catalog_url = ensure_large_catalog()

    _progress("baseline: starting the template bot")
    baseline = Assistant("baseline", baseline_model, BASELINE_DIR, {}, WORK_DIR / "run-baseline")
    try:
        _warm_up(baseline.url, baseline_turns(9))
        _progress(f"baseline: {args.turns} turns, one at a time")
        report["baseline"] = {"sequential": asdict(sequential(baseline.url, baseline_turns(args.turns), "base"))}
        report["baseline"]["memory"] = asdict(baseline.memory())
    finally:
        baseline.stop()

    _progress("ours: starting the assistant on the 100,000-product catalog")
    ours = Assistant("ours", OUR_MODEL, REPO_ROOT, {"SHOP_DATABASE_URL": catalog_url}, WORK_DIR / "run-ours")
    try:
        _warm_up(ours.url, shop_turns(10, args.seed - 1))
        _progress(f"ours: {args.turns} turns, one at a time")
        report["ours"] = {"sequential": asdict(sequential(ours.url, shop_turns(args.turns, args.seed), "shopper"))}
        _progress(f"ours: {args.shoppers} shoppers x {args.shopper_turns} turns at once")
        report["ours"]["concurrent"] = asdict(concurrent(ours.url, args.shoppers, args.shopper_turns, args.seed))
        report["ours"]["memory"] = asdict(ours.memory())
    finally:
        ours.stop()

    report["goals"] = verdicts(report)
    report["finished_at"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    report["load_average_after"] = _load_average()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "bench.json").write_text(json.dumps(report, indent=2))
    _chart(report, RESULTS_DIR / "bench.png")
    print(_table(report))
    print(f"\nLoad average before/after: {report['load_average_before']} / {report['load_average_after']}")
    print(f"Wrote {RESULTS_DIR / 'bench.json'} and {RESULTS_DIR / 'bench.png'}")
