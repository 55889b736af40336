"""Profile the storefront's pages in one process, through Django's WSGI handler as gunicorn calls it.

Usage:
    .venv/bin/python bench/profile_web.py [--database sqlite|postgres] [--what catalog|buyer]
        [--requests 300] [--sort cumulative|tottime] [--limit 40]

Sets up a shop of its own (bench/common.py) and, in a child process with the production
settings, calls reseller.wsgi.application with WSGI environs (so request_started/finished
fire and connections are handled as in gunicorn) under cProfile: the catalog as a first-time
visitor, or the buyer path's three requests with the session and CSRF cookies. Prints the
SQL queries per request (and which) and the profile.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import HOST, ROOT, Shop  # noqa: E402

CHILD = r'''
import cProfile, io, pstats, re, sys, collections
from http.cookies import SimpleCookie
from urllib.parse import urlencode
import django
django.setup()
from django.db import connection
from reseller.wsgi import application

cookies = {}
queries = collections.Counter()
counting = [False]

def count(execute, sql, params, many, context):
    if counting[0]:
        queries[re.sub(r"\s+", " ", sql)[:160]] += 1
    return execute(sql, params, many, context)

def call(method, path, data=None):
    body = urlencode(data).encode() if data else b""
    environ = {
        "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80", "HTTP_HOST": "%(host)s", "HTTP_X_FORWARDED_PROTO": "https",
        "HTTP_ORIGIN": "https://%(host)s", "REMOTE_ADDR": "127.0.0.1", "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr, "SERVER_PROTOCOL": "HTTP/1.1",
        "CONTENT_LENGTH": str(len(body)), "CONTENT_TYPE": "application/x-www-form-urlencoded",
        "wsgi.multithread": True, "wsgi.multiprocess": True, "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }
    if cookies:
        environ["HTTP_COOKIE"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    status = []
    chunks = application(environ, lambda s, h, exc_info=None: status.append((s, h)))
    content = b"".join(chunks)
    if hasattr(chunks, "close"):
        chunks.close()
    code, headers = status[0]
    for name, value in headers:
        if name.lower() == "set-cookie":
            for morsel in SimpleCookie(value).values():
                cookies[morsel.key] = morsel.value
    return int(code.split()[0]), dict(headers), content.decode()

def buyer_start():
    cookies.clear()
    code, _, html = call("GET", "/")
    package = re.search(r'name="package" value="(\d+)"', html).group(1)
    code, _, _ = call("POST", "/", {"csrfmiddlewaretoken": cookies["csrftoken"], "package": package})
    assert code == 302, code

def buyer_order(n):
    code, _, _ = call("POST", "/recipient/", {"csrfmiddlewaretoken": cookies["csrftoken"],
                                              "recipient": "@bench_profile"})
    assert code == 302, code
    code, _, html = call("GET", "/confirm/")
    token = re.search(r'name="token" value="([^"]+)"', html).group(1)
    code, headers, _ = call("POST", "/confirm/", {"csrfmiddlewaretoken": cookies["csrftoken"],
                                                  "token": token, "payment_method": "sandbox"})
    assert code == 302 and "/pay/" in headers["Location"], (code, headers)

what, n, sort, limit = "%(what)s", %(requests)d, "%(sort)s", %(limit)d
import time

def timed(label, fn, repeat):
    started = time.perf_counter()
    for _ in range(repeat):
        fn()
    print(f"  {label}: {1000 * (time.perf_counter() - started) / repeat:.2f} ms each, no profiler")

if what in ("buyer", "confirm"):
    buyer_start()
    steps = {}
    def step(method, path, data=None):
        return lambda: call(method, path, data)
    recipient_form = {"csrfmiddlewaretoken": cookies["csrftoken"], "recipient": "@bench_profile"}
    timed("POST /recipient/", step("POST", "/recipient/", recipient_form), 50)
    timed("GET /confirm/", step("GET", "/confirm/"), 50)
    timed("whole order (3 requests)", lambda: buyer_order(0), 50)
    saved = dict(cookies); cookies.clear()
    timed("POST /_bench/insert/ (reference)", step("POST", "/_bench/insert/", {"a": "b"}), 100)
    cookies.update(saved)
else:
    timed("GET / (catalog)", lambda: (call("GET", "/"), cookies.clear()), 200)
    timed("GET /_bench/catalog/ (reference)", lambda: (call("GET", "/_bench/catalog/"), cookies.clear()), 200)
with connection.execute_wrapper(count):
    if what == "catalog":
        for _ in range(5):
            call("GET", "/"); cookies.clear()
        counting[0] = True
        call("GET", "/"); cookies.clear()
        counting[0] = False
        per = 1
        work = lambda: [(call("GET", "/"), cookies.clear()) for _ in range(n)]
    else:
        buyer_start()
        for i in range(3):
            buyer_order(i)
        counting[0] = True
        buyer_order(0)
        counting[0] = False
        per = 1
        if what == "confirm":
            work = lambda: [call("GET", "/confirm/") for i in range(n)]
        else:
            work = lambda: [buyer_order(i) for i in range(n)]
    print(f"queries per {'request' if what == 'catalog' else 'order (3 requests)'}: {sum(queries.values())}")
    for sql, times in queries.most_common():
        print(f"  {times} × {sql}")
    profile = cProfile.Profile()
    import time
    started = time.perf_counter()
    profile.enable()
    work()
    profile.disable()
    elapsed = time.perf_counter() - started
    print(f"{n} × {what}: {elapsed:.2f} s, {1000 * elapsed / n:.1f} ms each (under the profiler)")
    pstats.Stats(profile).sort_stats(sort).print_stats(limit)
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--what", choices=["catalog", "buyer", "confirm"], default="catalog")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--sort", default="cumulative")
    parser.add_argument("--limit", type=int, default=40)
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432/reseller_web_bench")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/9")
    args = parser.parse_args()
    with Shop(database=args.database, postgres_url=args.postgres, redis_url=args.redis) as shop:
        shop.setup()
        supplier = shop.supplier()
        code = CHILD % {"host": HOST, "what": args.what, "requests": args.requests,
                        "sort": args.sort, "limit": args.limit}
        env = {**shop.env, "DJANGO_SETTINGS_MODULE": "reseller.settings", "BENCH_URLCONF": "bench.urls",
               "SUPPLIER_BASE_URL": supplier}
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True)


if __name__ == "__main__":
    main()
