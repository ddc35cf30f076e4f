"""The shop backend: catalog, customers, orders and returns over one SQLAlchemy schema.

Nothing in this package imports Rasa; the assistant's actions, the web front and the
`python -m shop` command line all call these modules with plain values.
"""
