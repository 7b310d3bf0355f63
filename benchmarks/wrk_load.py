"""A bounded wrk load of one POST route, shared by the HTTP benchmarks: the request ids it got back
and the status counts, beside wrk's own figures."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

# The part of a wrk script every benchmark shares: the run's id and a request counter, the ids of
# the answers with status OK_STATUS (found by ID_PATTERN in the body), the statuses counted, and a
# JSON report at the end. A benchmark adds its own `request` function.
SCRIPT_HEAD = r"""
local run, n = os.getenv("BENCH_RUN"), 0
ids, statuses = {}, {}  -- globals: done() reads them with thread:get
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
"""
SCRIPT_TAIL = r"""
response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if status == OK_STATUS then ids[#ids + 1] = body:match('ID_PATTERN') end
end

local threads = {}
setup = function(thread) table.insert(threads, thread) end

done = function(summary, latency, requests)
  local out = io.open(os.getenv("BENCH_OUT"), "w")
  local all_ids, counts = {}, {}
  for _, thread in ipairs(threads) do
    for _, id in ipairs(thread:get("ids")) do all_ids[#all_ids + 1] = '"' .. id .. '"' end
    for status, count in pairs(thread:get("statuses")) do counts[#counts + 1] = '"' .. status .. '":' .. count end
  end
  out:write(string.format(
    '{"requests":%d,"duration_us":%d,"socket_errors":%d,"p50_us":%d,"p99_us":%d,"statuses":{%s},"ids":[%s]}',
    summary.requests, summary.duration,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), table.concat(counts, ","), table.concat(all_ids, ",")))
  out:close()
end
"""


def wrk_script(request: str, ok_status: int, id_pattern: str) -> str:
    """A whole wrk script: the shared head, the benchmark's `request` function, the shared tail."""
    tail = SCRIPT_TAIL.replace("OK_STATUS", str(ok_status)).replace("ID_PATTERN", id_pattern)
    return SCRIPT_HEAD + request + tail


def run_wrk(script: str, url: str, seconds: float, connections: int, run: str, workdir: Path) -> dict:
    """wrk (one thread) against `url` for `seconds` with `script`; its JSON report."""
    path, out = workdir / f"{run}.lua", workdir / f"{run}.json"
    path.write_text(script)
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(path), url]
    done = subprocess.run(command, capture_output=True, text=True,
                          env={**os.environ, "BENCH_RUN": run, "BENCH_OUT": str(out)})
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout[-2000:]}{done.stderr[-2000:]}")
    return json.loads(out.read_text())
