"""An in-memory store of items and stock levels, saved to and loaded from JSON."""

import json
from pathlib import Path
from typing import Optional

from inventory.models import Item, StockLevel


class Store(object):
    def __init__(self) -> None:
        self.items: dict[str, Item] = {}
        self.stock: dict[str, StockLevel] = {}

    def add(self, item: Item) -> None:
        self.items[item.sku] = item
        self.stock.setdefault(item.sku, StockLevel(item.sku))

    def receive(self, sku: str, warehouse: str, quantity: int) -> None:
        if sku not in self.items:
            raise KeyError(f"unknown item {sku}")
        level = self.stock[sku]
        level.quantities[warehouse] = level.quantities.get(warehouse, 0) + quantity

    def find(self, sku: str) -> Optional[Item]:
        return self.items.get(sku)

    def save(self, path: Path) -> None:
        data = {
            "items": [vars(item) for item in self.items.values()],
            "stock": {sku: level.quantities for sku, level in self.stock.items()},
        }
        path.write_text(json.dumps(data, indent=2, sort_keys=True))

    @classmethod
    def load(cls, path: Path) -> "Store":
        data = json.loads(path.read_text())
        store = cls()
        for raw in data["items"]:
            store.add(Item(**raw))
        for sku, quantities in data["stock"].items():
            for warehouse, quantity in quantities.items():
                store.receive(sku, warehouse, quantity)
        return store
