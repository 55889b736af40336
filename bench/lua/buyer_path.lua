-- The storefront's buyer path, as a browser follows it, for wrk (bench/buyer_path.py).
--
-- Run with as many wrk threads as connections (-tN -cN): each thread then drives one
-- connection, one request at a time, so its state below is one buyer's. Once per buyer:
-- GET / (the CSRF cookie), POST / (a package: the session cookie). Then, per order:
-- POST /recipient/ -> GET /confirm/ (its token) -> POST /confirm/ (the order, a redirect to
-- its pay page). The real forms, CSRF and session cookies; any other answer starts the buyer
-- over and is counted in `unexpected`.

local host, recipient_prefix = "shop.bench.test", "@bench_buyer_"
local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
  table.insert(threads, thread)
end

-- Per thread (one buyer each): read back by done() through thread:get.
orders, unexpected, server_errors = 0, 0, 0
local step = "catalog"
local cookies, csrf, token = {}, "", ""

local function cookie_header()
  local parts = {}
  for name, value in pairs(cookies) do table.insert(parts, name .. "=" .. value) end
  return table.concat(parts, "; ")
end

local function headers(form)
  local h = {
    ["Host"] = host,
    ["X-Forwarded-Proto"] = "https",
    ["Origin"] = "https://" .. host,
    ["Cookie"] = cookie_header(),
  }
  if form then h["Content-Type"] = "application/x-www-form-urlencoded" end
  return h
end

local function urlencode(text)
  return (string.gsub(text, "[^%w%-_%.~]", function(c)
    return string.format("%%%02X", string.byte(c)) end))
end

function request()
  if step == "catalog" then
    return wrk.format("GET", "/", headers(false))
  elseif step == "choose" then
    return wrk.format("POST", "/", headers(true),
      "csrfmiddlewaretoken=" .. csrf .. "&package=" .. package)
  elseif step == "recipient" then
    return wrk.format("POST", "/recipient/", headers(true),
      "csrfmiddlewaretoken=" .. csrf .. "&recipient=" .. urlencode(recipient_prefix .. id))
  elseif step == "confirm_get" then
    return wrk.format("GET", "/confirm/", headers(false))
  else -- confirm_post
    return wrk.format("POST", "/confirm/", headers(true),
      "csrfmiddlewaretoken=" .. csrf .. "&token=" .. token .. "&payment_method=sandbox")
  end
end

local function set_cookie(value)
  if value == nil then return end
  -- wrk keeps one header per name; the shop sets one cookie per response on this path.
  local name, content = string.match(value, "^%s*([^=]+)=([^;]*)")
  if name then cookies[name] = content end
end

local function restart()
  unexpected = unexpected + 1
  cookies, csrf, token, step = {}, "", "", "catalog"
end

function response(status, response_headers, body)
  if status >= 500 then server_errors = server_errors + 1 end
  set_cookie(response_headers["Set-Cookie"] or response_headers["set-cookie"])
  if step == "catalog" then
    csrf = cookies["csrftoken"] or ""
    package = string.match(body, 'name="package" value="(%d+)"')
    if status == 200 and csrf ~= "" and package then step = "choose" else restart() end
  elseif step == "choose" then
    if status == 302 and cookies["sessionid"] then step = "recipient" else restart() end
  elseif step == "recipient" then
    if status == 302 then step = "confirm_get" else restart() end
  elseif step == "confirm_get" then
    token = string.match(body, 'name="token" value="([^"]+)"')
    if status == 200 and token then step = "confirm_post" else restart() end
  else
    local location = response_headers["Location"] or response_headers["location"] or ""
    if status == 302 and string.find(location, "/pay/", 1, true) then
      orders = orders + 1
      step = "recipient"
    else
      restart()
    end
  end
end

function done(summary, latency, requests)
  local total_orders, total_unexpected, total_5xx = 0, 0, 0
  for _, thread in ipairs(threads) do
    total_orders = total_orders + thread:get("orders")
    total_unexpected = total_unexpected + thread:get("unexpected")
    total_5xx = total_5xx + thread:get("server_errors")
  end
  io.write(string.format("BUYER orders=%d unexpected=%d server_errors=%d seconds=%.3f\n",
    total_orders, total_unexpected, total_5xx, summary.duration / 1e6))
end
