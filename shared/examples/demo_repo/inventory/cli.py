"""The `inventory` command."""

import argparse
import sys
from pathlib import Path

from inventory import config
from inventory.reports import low_stock, stock_report
from inventory.store import Store


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="inventory")
    parser.add_argument("command", choices=["report", "low"])
    parser.add_argument("data", nargs="?", default=config.DATA_FILE)
    args = parser.parse_args(argv)
    store = Store.load(Path(args.data))
    if args.command == "report":
        print(stock_report(store))
    else:
        print("\n".join(low_stock(store, config.LOW_STOCK_THRESHOLD)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
