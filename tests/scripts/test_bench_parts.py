"""The parts of ``scripts/bench`` whose mistakes would go unnoticed in a run: the critical path of
steps that overlap, the order statistics, reading wrk's report, and the Python load generator's
count of failed requests (a wrong token must not pass for a fast server)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench import loadgen
from bench.load import parse_wrk
from bench.stats import covered_seconds, kendall_tau, percentile, spearman_rho

# Real output of `wrk -t1 -c2 -d1s --latency` on this machine, against a server answering 404.
WRK_404 = """Running 1s test @ http://127.0.0.1:38123/nope
  1 threads and 2 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   803.11us  488.21us   6.23ms   93.76%
    Req/Sec     2.42k    88.46     2.57k    70.00%
  Latency Distribution
     50%  725.00us
     75%    0.92ms
     90%    1.12ms
     99%    3.24ms
  2409 requests in 1.00s, 1.19MB read
  Non-2xx or 3xx responses: 2409
Requests/sec:   2408.32
Transfer/sec:      1.19MB
"""


def test_the_critical_path_of_sequential_steps_is_their_sum() -> None:
    assert covered_seconds([(0.0, 0.1), (0.15, 0.35), (0.4, 0.5)]) == pytest.approx(0.4)


def test_the_critical_path_of_parallel_steps_is_the_wall_time_they_cover() -> None:
    # Three steps at once (the longest 0.3 s), then one of 0.1 s: 0.4 s, not the 0.8 s they add up to.
    assert covered_seconds([(0.0, 0.3), (0.0, 0.2), (0.05, 0.25), (0.3, 0.4)]) == pytest.approx(0.4)
    # A gap between two groups is not on the path.
    assert covered_seconds([(0.0, 0.2), (0.1, 0.3), (1.0, 1.1)]) == pytest.approx(0.4)
    assert covered_seconds([]) == 0.0


def test_percentiles_interpolate_between_ranks() -> None:
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile(range(1, 101), 99) == pytest.approx(99.01)


def test_rank_correlation_tells_first_come_first_served_from_all_at_once() -> None:
    order = [float(i) for i in range(20)]
    assert kendall_tau(order, order) == pytest.approx(1.0)
    assert spearman_rho(order, [-x for x in order]) == pytest.approx(-1.0)
    shuffled = [7.0, 2, 15, 0, 11, 19, 4, 9, 13, 1, 17, 6, 10, 3, 18, 8, 14, 5, 12, 16]
    assert abs(kendall_tau(order, shuffled)) < 0.3


def test_wrk_report_is_read_and_its_non_2xx_answers_count_as_failed() -> None:
    result = parse_wrk(WRK_404)
    assert (result.requests, result.seconds, result.failed) == (2409, 1.0, 2409)
    assert result.p50 == pytest.approx(725e-6)
    assert result.p99 == pytest.approx(3.24e-3)
    with pytest.raises(ValueError, match="not wrk"):
        parse_wrk("wrk: command not found")


@pytest.fixture
def server() -> Iterator[str]:
    """A local HTTP server: 200 with the right Authorization header, 401 without."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - the http.server name
            ok = self.headers.get("Authorization") == "Bearer right"
            body = b'{"ok": true}' if ok else b'{"detail": "no"}'
            self.send_response(200 if ok else 401)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1/projects/x"
    httpd.shutdown()
    httpd.server_close()


def test_python_load_generator_counts_answers_and_refusals(server: str) -> None:
    good = asyncio.run(loadgen.run(server, connections=3, seconds=0.5, authorization="Bearer right"))
    assert good["requests"] > 10 and good["non_2xx"] == 0 and good["errors"] == 0
    assert 0 < good["p50"] <= good["p99"] < 0.5
    refused = asyncio.run(loadgen.run(server, connections=2, seconds=0.3, authorization="Bearer wrong"))
    assert refused["requests"] > 0 and refused["non_2xx"] == refused["requests"]
