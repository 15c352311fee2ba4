from inventory import Item, StockLevel


def test_label_shows_name_and_sku():
    assert Item("A1", "Widget", 250).label() == "Widget (A1)"


def test_total_sums_warehouses():
    assert StockLevel("A1", {"north": 3, "south": 4}).total() == 7
