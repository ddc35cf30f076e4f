"""The shopper-facing shop front (aiohttp + Jinja2) with the rasa-webchat chat widget."""
