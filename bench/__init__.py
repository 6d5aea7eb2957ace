"""The benchmark harness of issue 12: ``scripts/bench`` (``python -m bench``).

It measures a dev stack that is already running (``scripts/dev``) and starts nothing long-lived
of its own, except what the yardsticks need inside this process: the bare-Temporal anchors' worker
(``bench.anchors``) and the plain FastAPI route (``bench.yardstick``, in a uvicorn subprocess).
Every figure is printed next to the goal it serves, as a ratio to a yardstick measured in the same
run on the same machine, because absolute times on a shared 2-core machine are noise.

    stack.py      where the stack is (state dir, ports), its processes' CPU and memory, the machine
    stats.py      percentiles, the wall time covered by steps, rank correlation
    report.py     the printed report, ratios with PASS/FAIL, the JSON file
    anchors.py    bare Temporal: 9 no-op activities, regular and local
    tenants.py    tenantflow through its API: latency, throughput, burst, memory
    yardstick.py  plain FastAPI + psycopg-pool route returning the same document as the API
    load.py       HTTP load: wrk pinned to a core, else loadgen.py in a separate process
    reads.py      the status route against the yardstick under the same load
    listing.py    the first and the deepest page of a 10k-tenant listing
"""
