"""The service under polling load: 3 requests queued, 20 clients asking for status for a minute.

    python benchmarks/service_load.py --world W [--requests 3] [--clients 20] [--seconds 60] \
        [--json benchmarks/results/service_load.json]

A loopback Ray head (2 CPUs) and `dareu serve` (one request on the cluster at a time) are started on a fresh store;
3 NPO requests (2 owners each, no attacks) are submitted, then each client thread loops over GET /v1/requests/{id}
and GET /v1/requests. Reported: status latency p50/p95/max per endpoint, errors, whether every request is listed
exactly once with one Ray job each (none lost, none duplicated), and how long each request waited in the queue
(submitted -> running). The requests are then followed to their end (--no-finish skips that).
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from dareu.service.client import ServeProcess


def poll(url: str, token: str, ids: list[str], until: float, out: list[tuple[str, float, int]]) -> None:
    rng = random.Random()
    while time.time() < until:
        path = rng.choice([f"/v1/requests/{rng.choice(ids)}", "/v1/requests"])
        t = time.perf_counter()
        req = urllib.request.Request(url + path, headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(req, timeout=30) as res:
                res.read()
                status = res.status
        except urllib.error.HTTPError as err:
            status = err.code
        except OSError:
            status = 0
        out.append(("list" if path == "/v1/requests" else "one", time.perf_counter() - t, status))


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", required=True)
    ap.add_argument("--requests", type=int, default=3)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--no-finish", action="store_true", help="stop after the polling minute")
    ap.add_argument("--json", default="benchmarks/results/service_load.json")
    args = ap.parse_args(argv)

    from dareu.data import load_world
    from dareu.service.cluster import LocalHead

    world = str(Path(args.world).resolve())
    owners = list(dict.fromkeys(load_world(world)["forget10"]["owner"]))
    store = Path(tempfile.mkdtemp(prefix="dareu-load-")) / "store"
    head = LocalHead.start(cpus=2)
    server = ServeProcess(head.dashboard, store, secrets.token_hex(16)).start()
    try:
        ids = []
        for i in range(args.requests):
            status, r = server.request("POST", "/v1/requests", {"world": world, "owners": owners[2 * i:2 * i + 2],
                                                                  "method": "npo", "attacks": []})
            assert status == 201, r
            ids.append(r["id"])
        samples: list[tuple[str, float, int]] = []
        until = time.time() + args.seconds
        threads = [threading.Thread(target=poll, args=(server.url, server.token, ids, until, samples))
                   for _ in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        while not args.no_finish:
            states = [server.request("GET", f"/v1/requests/{i}")[1]["state"] for i in ids]
            if all(s in ("done", "failed", "cancelled") for s in states):
                break
            time.sleep(5)
        listed = server.request("GET", "/v1/requests")[1]
        jobs = [j for j in head_jobs(head) if (j.metadata or {}).get("dareu") == "request"]
    finally:
        server.stop()
        head.stop()
    latency = {}
    for kind in ("one", "list"):
        ms = [1000 * s for k, s, code in samples if k == kind and code == 200]
        latency[kind] = {"n": len(ms), "p50_ms": pct(ms, 50), "p95_ms": pct(ms, 95), "max_ms": max(ms)}
    listed_ids = [r["id"] for r in listed]
    result = {
        "requests": args.requests, "clients": args.clients, "seconds": args.seconds, "latency": latency,
        "errors": sum(1 for _, _, code in samples if code != 200),
        "none_lost_or_duplicated": sorted(listed_ids) == sorted(ids) and len(set(listed_ids)) == len(ids),
        "ray_jobs": len(jobs), "one_job_each": sorted(j.submission_id.rsplit("-", 1)[0] for j in jobs)
        == sorted(f"dareu-{i}" for i in ids),
        "queue_seconds": {r["id"]: r["queue_seconds"] for r in listed},
        "states": {r["id"]: r["state"] for r in listed},
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=1))
    print("| endpoint | polls | p50 ms | p95 ms | max ms |\n|---|---|---|---|---|")
    for kind, v in latency.items():
        print(f"| GET {'/v1/requests/{id}' if kind == 'one' else '/v1/requests'} | {v['n']} | {v['p50_ms']:.1f} | "
              f"{v['p95_ms']:.1f} | {v['max_ms']:.1f} |")
    print(f"errors {result['errors']}; none lost or duplicated: {result['none_lost_or_duplicated']}; one Ray job "
          f"each: {result['one_job_each']}; queue waits (s): "
          + ", ".join(f"{v:.0f}" if v is not None else "–" for v in result["queue_seconds"].values()))
    print(f"wrote {args.json}")
    return 0


def head_jobs(head) -> list:
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(head.dashboard).list_jobs()


if __name__ == "__main__":
    sys.exit(main())
