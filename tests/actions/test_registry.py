from pathlib import Path

import yaml
from rasa_sdk.executor import ActionExecutor

DOMAIN = Path(__file__).resolve().parents[2] / "domain.yml"


def test_the_action_server_serves_every_custom_action_the_domain_names():
    executor = ActionExecutor()
    executor.register_package("actions")
    declared = set(yaml.safe_load(DOMAIN.read_text())["actions"])
    assert declared - set(executor.actions) == set()
    assert set(executor.actions) - declared == set()
