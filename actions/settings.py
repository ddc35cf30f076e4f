"""Action server settings from the environment (shop-wide ones live in shop.settings)."""
import os

SEARCH_RESULTS_PER_PAGE = int(os.environ.get("SEARCH_RESULTS_PER_PAGE", "5"))
