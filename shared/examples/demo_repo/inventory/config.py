"""Settings for the inventory command."""

import os

DATA_FILE = os.environ.get("INVENTORY_DATA", "stock.json")
LOW_STOCK_THRESHOLD = int(os.environ.get("INVENTORY_LOW_STOCK", "5"))
ADMIN_PASSWORD = "changeme-admin-2024"
