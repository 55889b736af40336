"""The catalog page in production mode against a bare Django view over 20 rows, same gunicorn.

Usage:
    .venv/bin/python bench/web_catalog.py [--database sqlite|postgres] [--quick]

Sets up a shop of its own (bench/common.py: the demo catalog, DEBUG off, gunicorn.conf.py's
workers and worker class) and loads GET / (the catalog, as a first-time visitor: no cookies)
and GET /_bench/catalog/ (bench/reference.py: 20 rows read and rendered by a template) with
wrk, interleaved, the same connections for both. The figure is the ratio of requests per
second, shop ÷ reference, its median and spread over the rounds; errors (non-2xx, socket
errors, "database is locked" in the server's log) are reported and must be zero.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.buyer_path import warm_until_steady  # noqa: E402
from bench.common import PROXY_HEADERS, Shop, interleaved, ratio_summary, result_write, wrk  # noqa: E402

POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/reseller_web_bench"
REDIS_URL = "redis://127.0.0.1:6379/9"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--quick", action="store_true", help="a short run for CI (< 60 s)")
    parser.add_argument("--seconds", type=float, default=None, help="per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--postgres", default=POSTGRES_URL)
    parser.add_argument("--redis", default=REDIS_URL)
    args = parser.parse_args()
    seconds = args.seconds or (3.0 if args.quick else 10.0)

    with Shop(database=args.database, postgres_url=args.postgres, redis_url=args.redis) as shop:
        shop.setup()
        base = shop.gunicorn()
        runs: dict[str, list[dict[str, float]]] = {"shop": [], "reference": []}

        def measure(name: str, path: str) -> float:
            result = wrk(f"{base}{path}", seconds=seconds, connections=args.connections,
                         headers=PROXY_HEADERS)
            runs[name].append(result)
            return result["rps"]

        # Warm-up: gunicorn answers once its first worker is up; under load the others are
        # still importing Django, and each thread connects and each worker reads the catalog
        # and renders its fragments once.
        # Until two short runs agree within 25 % (bench.buyer_path.warm_until_steady).
        def short_run(path: str) -> float:
            return wrk(f"{base}{path}", seconds=2, connections=args.connections,
                       headers=PROXY_HEADERS)["rps"]

        warm_until_steady(lambda: short_run("/"))
        warm_until_steady(lambda: short_run("/_bench/catalog/"))
        rps = interleaved({"shop": lambda: measure("shop", "/"),
                           "reference": lambda: measure("reference", "/_bench/catalog/")},
                          rounds=args.rounds)
        log = (shop.tmp / "gunicorn.log").read_text(errors="replace")
    summary = ratio_summary(rps["shop"], rps["reference"])
    errors = {name: sum(run["non_2xx"] + run["socket_errors"] for run in results)
              for name, results in runs.items()}
    result_write(f"web_catalog_{args.database}", {
        **summary,
        "unit": "requests/s",
        "database": args.database,
        "seconds": seconds, "rounds": args.rounds, "connections": args.connections,
        "shop_p99_ms": [run.get("p99_ms") for run in runs["shop"]],
        "reference_p99_ms": [run.get("p99_ms") for run in runs["reference"]],
        "errors": errors,
        "database_locked": log.count("database is locked"),
    })


if __name__ == "__main__":
    main()
