-- The buyer path's reference for wrk (bench/buyer_path.py): one POST per request to the bare
-- one-row insert view, with the same proxy headers and a form body, as the shop's POSTs.
wrk.method = "POST"
wrk.body = "field=value"
wrk.headers["Host"] = "shop.bench.test"
wrk.headers["X-Forwarded-Proto"] = "https"
wrk.headers["Origin"] = "https://shop.bench.test"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
