"""Inventory: track stock levels of items across warehouses."""

from inventory.models import Item, StockLevel
from inventory.reports import low_stock, stock_report
from inventory.store import Store
