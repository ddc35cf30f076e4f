"""Summarise `rasa test nlu` reports: the scores against the targets, per-intent F1, confusions.

Usage: python scripts/nlu_report.py results/nlu   (writes results/nlu/summary.md and prints it)
"""
import json
import sys
from pathlib import Path
from typing import Dict, List, Tuple

INTENT_MACRO_F1_TARGET = 0.95
ENTITY_F1_TARGET = 0.90
# Entities come from the CRFEntityExtractor (config.yml); DIET only classifies intents.
ENTITY_EXTRACTOR_REPORT = "CRFEntityExtractor_report.json"
# Rows of a Rasa classification report that are averages, not labels.
AVERAGE_ROWS = ("accuracy", "macro avg", "weighted avg", "micro avg")


def _load(report_dir: Path, name: str) -> Dict:
    path = report_dir / name
    if not path.exists():
        sys.exit(f"{path} is missing: run `rasa test nlu --out {report_dir}` first.")
    return json.loads(path.read_text())


def _labels(report: Dict) -> Dict[str, Dict]:
    return {name: row for name, row in report.items() if name not in AVERAGE_ROWS and isinstance(row, dict)}


def _confusions(intents: Dict[str, Dict]) -> List[Tuple[int, str, str]]:
    pairs = []
    for gold, row in intents.items():
        for predicted, count in (row.get("confused_with") or {}).items():
            pairs.append((count, gold, predicted))
    return sorted(pairs, key=lambda pair: (-pair[0], pair[1], pair[2]))


def _verdict(value: float, target: float) -> str:
    return "meets" if value >= target else "MISSES"


def summary(report_dir: Path) -> str:
    intent_report = _load(report_dir, "intent_report.json")
    entity_report = _load(report_dir, ENTITY_EXTRACTOR_REPORT)
    intents = _labels(intent_report)
    intent_f1 = intent_report["macro avg"]["f1-score"]
    entity_f1 = entity_report.get("micro avg", entity_report.get("weighted avg", {})).get("f1-score", 0.0)
    lines = [
        "# NLU test on the held-out examples in tests/nlu/",
        "",
        f"- Intent macro-F1: {intent_f1:.3f} (target {INTENT_MACRO_F1_TARGET}: {_verdict(intent_f1, INTENT_MACRO_F1_TARGET)})",
        f"- Intent accuracy: {intent_report['accuracy']:.3f} on {intent_report['macro avg']['support']} examples",
        f"- Entity micro-F1: {entity_f1:.3f} (target {ENTITY_F1_TARGET}: {_verdict(entity_f1, ENTITY_F1_TARGET)})",
        "",
        "## Per intent (worst first)",
        "",
        "| intent | F1 | precision | recall | examples |",
        "|---|---|---|---|---|",
    ]
    for name, row in sorted(intents.items(), key=lambda item: (item[1]["f1-score"], item[0])):
        lines.append(f"| {name} | {row['f1-score']:.3f} | {row['precision']:.3f} | {row['recall']:.3f} | {row['support']} |")
    lines += ["", "## Per entity", "", "| entity | F1 | examples |", "|---|---|---|"]
    for name, row in sorted(_labels(entity_report).items()):
        lines.append(f"| {name} | {row['f1-score']:.3f} | {row['support']} |")
    pairs = _confusions(intents)
    lines += ["", "## Confusion pairs (true intent -> predicted)", ""]
    lines += [f"- {gold} -> {predicted}: {count}" for count, gold, predicted in pairs] or ["- none"]
    return "\n".join(lines) + "\n"


def main() -> None:
    report_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "results/nlu")
    text = summary(report_dir)
    (report_dir / "summary.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
