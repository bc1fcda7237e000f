"""Requests in sequence through `dareu serve`: N removal requests, each starting from the model of the one before,
per method, on one world. Does every request's owners go, and does the model still work after the last one?

    python benchmarks/service_chain.py --world W --attributor A [--methods dareu,npo] [--requests 5] \
        [--owners-per-request 2] [--store benchmarks/results/service_chain] [--json benchmarks/results/service_chain.json]

A loopback Ray head (2 CPUs: one request runs at a time) and a `dareu serve` process are started for the run and
stopped at its end. The chains' owners are the world's forget10 owners, in order. Every request runs with its
method's shipped defaults. Killed? Run the same command again: the store keeps the requests, the server finds them,
and each job continues from its last finished stage.

Checks per request (the service issue's goal): every owner's attribution after <= 0.1; every owner's greedy fact
leakage after <= the retain reference's + 0.05 (one QA in twenty); after the last request, model utility >= 0.9 x
the original target's (measured on the same retain split).
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from pathlib import Path

from dareu.service.client import ServeProcess

ROOT = Path(__file__).resolve().parents[1]


def overrides(pairs: list[str], method: str) -> dict:
    """The nested config of `method` from METHOD:a.b=value pairs (values read as YAML)."""
    import yaml

    out: dict = {}
    for pair in pairs:
        who, _, kv = pair.partition(":")
        if who != method:
            continue
        key, _, value = kv.partition("=")
        *path, last = key.split(".")
        node = out
        for part in path:
            node = node.setdefault(part, {})
        node[last] = yaml.safe_load(value)
    return out


def worst(values) -> float | None:
    """The largest of the owners' values (None when none was measured)."""
    found = [v for v in values if v is not None]
    return max(found) if found else None


def chain_rows(server: ServeProcess, ids: list[str]) -> list[dict]:
    rows = []
    for i, rid in enumerate(ids, 1):
        r = server.request("GET", f"/v1/requests/{rid}")[1]
        row = {"request": i, "id": rid, "state": r["state"], "owners": r["owners"], "error": r["error"],
               "seconds": (r["finished"] - r["started"]) if r["finished"] and r["started"] else None,
               "queue_seconds": r["queue_seconds"]}
        if r["state"] == "done":
            rec = server.request("GET", f"/v1/requests/{rid}/receipt")[1]
            owners = rec["owners"].values()
            row |= {"attribution_after": worst(o["attribution"]["after"] for o in owners),
                    "fact_leakage_after": worst(o["fact_leakage"]["after"] for o in owners),
                    "fact_leakage_retain": worst(o["fact_leakage"]["retain_reference"] for o in owners),
                    "forget_quality": rec["forget_quality"]["after"],
                    "utility_ratio": rec["model_utility"]["ratio_to_target"],
                    "worst_recovery": max((v for o in owners for v in (o.get("attack_recovery") or {}).values()
                                           if v is not None), default=None)}
            row["owners_gone"] = (row["attribution_after"] is not None and row["attribution_after"] <= 0.1
                                  and all(o["fact_leakage"]["after"] <= o["fact_leakage"]["retain_reference"] + 0.05
                                          for o in owners))
        rows.append(row)
    return rows


def markdown(chains: dict[str, list[dict]]) -> str:
    cols = ["attribution_after", "fact_leakage_after", "fact_leakage_retain", "forget_quality", "utility_ratio",
            "worst_recovery", "owners_gone", "seconds"]
    lines = ["| method | request | owners | " + " | ".join(cols) + " |", "|---" * (len(cols) + 3) + "|"]
    for method, rows in chains.items():
        for r in rows:
            cells = [("–" if r.get(c) is None else f"{r[c]:.3g}" if isinstance(r[c], float) else str(r[c]))
                     for c in cols]
            lines.append(f"| {method} | {r['request']} | {', '.join(r['owners'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", required=True)
    ap.add_argument("--attributor", required=True)
    ap.add_argument("--methods", default="dareu,npo")
    ap.add_argument("--requests", type=int, default=5)
    ap.add_argument("--owners-per-request", type=int, default=2)
    ap.add_argument("--attacks", default="relearn,quant4,paraphrase,prefix", help="attacks of every receipt ('' = none)")
    ap.add_argument("--set", action="append", default=[], metavar="METHOD:key=value",
                    help="a config override of one method's requests, e.g. dareu:max_steps=100 (repeatable)")
    ap.add_argument("--store", default="benchmarks/results/service_chain")
    ap.add_argument("--json", default="benchmarks/results/service_chain.json")
    args = ap.parse_args(argv)

    from dareu.data import load_world
    from dareu.service.cluster import LocalHead

    store = Path(args.store).resolve()
    store.parent.mkdir(parents=True, exist_ok=True)
    plan_file = store.parent / f"{store.name}-plan.json"
    plan = json.loads(plan_file.read_text()) if plan_file.is_file() else {"token": secrets.token_hex(16), "chains": {}}
    world = str(Path(args.world).resolve())
    forget = list(dict.fromkeys(load_world(world)["forget10"]["owner"]))
    need = args.requests * args.owners_per_request
    if len(forget) < need:
        sys.exit(f"forget10 has {len(forget)} owners; {args.requests} x {args.owners_per_request} need {need}")
    head = LocalHead.start(cpus=2)
    server = ServeProcess(head.dashboard, store, plan["token"]).start()
    start = time.time()
    try:
        for method in args.methods.split(","):
            if method in plan["chains"] and plan.get("attributor") == args.attributor:
                continue  # submitted by an earlier run: the store has it
            ids, follows = [], None
            for i in range(args.requests):
                owners = forget[i * args.owners_per_request:(i + 1) * args.owners_per_request]
                body = {"world": world, "owners": owners, "method": method, "follows": follows,
                        "attributor": str(Path(args.attributor).resolve()),  # every receipt measures attribution
                        "attacks": [a for a in args.attacks.split(",") if a], "config": overrides(args.set, method)}
                status, r = server.request("POST", "/v1/requests", body)
                if status != 201:
                    sys.exit(f"request refused ({status}): {r['detail']}")
                ids.append(r["id"])
                follows = r["id"]
            plan["chains"][method] = ids
            plan["attributor"] = args.attributor
            plan_file.write_text(json.dumps(plan, indent=1))
        while True:
            states = [server.request("GET", f"/v1/requests/{i}")[1] for ids in plan["chains"].values()
                      for i in ids]
            print(f"[{time.time() - start:.0f}s] " + " ".join(f"{s['id'][:5]}:{s['state']}/{s['stage']}" for s in states),
                  flush=True)
            if all(s["state"] in ("done", "failed", "cancelled") for s in states):
                break
            time.sleep(30)
        chains = {m: chain_rows(server, ids) for m, ids in plan["chains"].items()}
    finally:
        server.stop()
        head.stop()
    result = {"world": world, "requests": args.requests, "owners_per_request": args.owners_per_request, "set": args.set,
              "chains": chains,
              "goal": {m: {"every_request_owners_gone": all(r.get("owners_gone") for r in rows),
                           "final_utility_ratio": rows[-1].get("utility_ratio")} for m, rows in chains.items()}}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=1))
    print(markdown(chains))
    print(json.dumps(result["goal"], indent=1))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
