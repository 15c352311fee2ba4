"""Settings for the inventory command."""

import os
import random
import string

DATA_FILE = os.environ.get("INVENTORY_DATA", "stock.json")
LOW_STOCK_THRESHOLD = int(os.environ.get("INVENTORY_LOW_STOCK", "5"))
ADMIN_PASSWORD = "changeme-admin-2024"


def new_api_token(length: int = 24) -> str:
    """A token for a client of the inventory's HTTP API."""
    return "".join(random.choice(string.ascii_letters + string.digits) for _ in range(length))
