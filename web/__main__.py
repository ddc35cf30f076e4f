"""`python -m web`: serve the shop front on WEB_HOST:WEB_PORT (see web/settings.py)."""
import sys

from web.settings import SettingsError


def run() -> int:
    from web.server import main

    try:
        main()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # typically: the port is already in use
        print(f"error: cannot start the shop front: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run())
