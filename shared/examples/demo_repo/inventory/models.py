"""Domain objects: items and their stock levels."""

from dataclasses import dataclass, field
from typing import Dict, List, Optional


@dataclass
class Item:
    sku: str
    name: str
    price_cents: int
    tags: List[str] = field(default_factory=list)
    description: Optional[str] = None

    def label(self) -> str:
        return "{} ({})".format(self.name, self.sku)


@dataclass
class StockLevel:
    sku: str
    quantities: Dict[str, int] = field(default_factory=dict)

    def total(self) -> int:
        return sum(self.quantities.values())
