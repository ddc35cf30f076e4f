"""What the production tests check in a conversation's rows of the shared PostgreSQL tracker store."""
from typing import Dict, List


def turns(rows: List[Dict]) -> List[List[Dict]]:
    """The rows cut at each user message: one list per turn, starting with that message."""
    cut = []
    for row in rows:
        if row["type_name"] == "user":
            cut.append([])
        if cut:
            cut[-1].append(row)
    return cut


def assert_every_turn_complete_and_unmixed(rows: List[Dict]) -> None:
    for turn in turns(rows):
        names = [r["action_name"] for r in turn if r["type_name"] == "action"]
        assert names and names[-1] == "action_listen", f"a turn was cut into by another: {names}"
        assert any(r["type_name"] == "bot" for r in turn), "a turn had no bot reply"
    stamps = [r["timestamp"] for r in rows]
    assert stamps == sorted(stamps), "events are stored out of order"
    identities = [(r["type_name"], r["timestamp"], r["data"]) for r in rows]
    assert len(set(identities)) == len(identities), "an event was stored twice"
