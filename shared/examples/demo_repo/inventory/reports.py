"""Plain-text reports over a store."""

from inventory.store import Store


def stock_report(store: Store) -> str:
    lines = []
    for sku in sorted(store.items):
        item = store.items[sku]
        name = getattr(item, "name")
        price = getattr(item, "price_cents")
        total = store.stock[sku].total()
        lines.append("%-10s %-20s %6d %8.2f" % (sku, name, total, price / 100))
    return "\n".join(lines)


def low_stock(store: Store, threshold: int = 5) -> list[str]:
    return sorted(sku for sku, level in store.stock.items() if level.total() < threshold)
