"""The NLU summary reads Rasa's reports and says plainly whether the targets are met."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _write_reports(tmp_path: Path, greet_f1: float) -> None:
    intents = {
        "greet": {"precision": 1.0, "recall": greet_f1, "f1-score": greet_f1, "support": 10,
                  "confused_with": {"goodbye": 2}},
        "goodbye": {"precision": 0.8, "recall": 1.0, "f1-score": 0.9, "support": 10, "confused_with": {}},
        "accuracy": 0.9,
        "macro avg": {"precision": 0.9, "recall": 0.9, "f1-score": (greet_f1 + 0.9) / 2, "support": 20},
        "weighted avg": {"precision": 0.9, "recall": 0.9, "f1-score": 0.9, "support": 20},
    }
    entities = {
        "color": {"precision": 1.0, "recall": 0.9, "f1-score": 0.947, "support": 12},
        "micro avg": {"precision": 1.0, "recall": 0.9, "f1-score": 0.947, "support": 12},
    }
    (tmp_path / "intent_report.json").write_text(json.dumps(intents))
    (tmp_path / "CRFEntityExtractor_report.json").write_text(json.dumps(entities))


def _run(tmp_path: Path) -> str:
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "nlu_report.py"), str(tmp_path)],
                          capture_output=True, text=True, check=True)
    return done.stdout


def test_summary_lists_scores_worst_intent_first_and_confusions(tmp_path):
    _write_reports(tmp_path, greet_f1=0.889)
    printed = _run(tmp_path)
    assert "Intent macro-F1: 0.895 (target 0.95: MISSES)" in printed
    assert "Entity micro-F1: 0.947 (target 0.9: meets)" in printed
    assert printed.index("| greet | 0.889") < printed.index("| goodbye | 0.900")
    assert "- greet -> goodbye: 2" in printed
    assert (tmp_path / "summary.md").read_text() == printed.rstrip("\n") + "\n"


def test_summary_says_meets_when_every_target_is_reached(tmp_path):
    _write_reports(tmp_path, greet_f1=1.0)
    assert "Intent macro-F1: 0.950 (target 0.95: meets)" in _run(tmp_path)


def test_missing_reports_give_the_command_to_run(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "nlu_report.py"), str(tmp_path)],
                          capture_output=True, text=True)
    assert done.returncode != 0
    assert "run `rasa test nlu" in done.stderr
