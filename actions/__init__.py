"""Custom actions for the shop assistant: thin adapters from Rasa trackers to the shop/ backend."""
