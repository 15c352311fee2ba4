import pytest

from inventory import Item, Store, low_stock, stock_report


@pytest.fixture
def store():
    store = Store()
    store.add(Item("A1", "Widget", 250, tags=["small"]))
    store.add(Item("B2", "Gadget", 1999))
    store.receive("A1", "north", 3)
    store.receive("B2", "north", 10)
    store.receive("B2", "south", 2)
    return store


def test_receive_unknown_item_fails(store):
    with pytest.raises(KeyError):
        store.receive("Z9", "north", 1)


def test_save_and_load_round_trip(store, tmp_path):
    path = tmp_path / "stock.json"
    store.save(path)
    loaded = Store.load(path)
    assert loaded.find("A1") == store.find("A1")
    assert loaded.stock["B2"].total() == 12


def test_report_lists_every_item(store):
    report = stock_report(store).splitlines()
    assert len(report) == 2
    assert report[0].split()[:3] == ["A1", "Widget", "3"]


def test_low_stock(store):
    assert low_stock(store, threshold=5) == ["A1"]
