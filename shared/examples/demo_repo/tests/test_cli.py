from inventory import Item, Store
from inventory.cli import main


def test_report_command(tmp_path, capsys):
    store = Store()
    store.add(Item("A1", "Widget", 250))
    store.receive("A1", "north", 1)
    path = tmp_path / "stock.json"
    store.save(path)
    assert main(["report", str(path)]) == 0
    assert "Widget" in capsys.readouterr().out
