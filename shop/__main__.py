"""`python -m shop ...` runs the shop's command line."""
from shop.cli import main

raise SystemExit(main())
