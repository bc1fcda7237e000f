"""The HTTP API of `dareu serve` (FastAPI; OpenAPI docs at /docs).

    POST   /v1/requests               a removal request: checked, stored, then run as a Ray job
    GET    /v1/requests               every request, oldest first
    GET    /v1/requests/{id}          state, stage, step, the curves so far
    DELETE /v1/requests/{id}          cancel (its Ray job is stopped)
    GET    /v1/requests/{id}/receipt  the receipt (JSON; ?format=md for Markdown)
    GET    /v1/requests/{id}/logs     the Ray job's log
    GET    /v1/owners?world=W         the owners a request may name
    GET    /health                    no token needed

Every endpoint but /health (and the API docs, which hold no data) needs `Authorization: Bearer <token>`.
A background thread reconciles the store with Ray once a second: it submits queued requests, oldest first, while
fewer than `max_running` are on the cluster (a request that follows another also waits until that one is done),
records what Ray says, and resubmits a request whose job the cluster lost (the job resumes from its checkpoints).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Header, HTTPException, Query
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field

from dareu.errors import DareUError
from dareu.runs import get_status, read_json
from dareu.service.cluster import STATES as RAY_STATES
from dareu.service.spec import Body, RequestError, resolve
from dareu.service.store import ACTIVE, Store

log = logging.getLogger("dareu.serve")


class RequestIn(BaseModel):
    """A removal request."""

    world: str = Field(description="World folder (made by `dareu prepare`, the default world or a TOFU world), as "
                                   "the server and the cluster see it.")
    owners: list[str] = Field(description="Owners to remove, by name (GET /v1/owners lists them).")
    method: str = Field("dareu", description="dareu (RL de-attribution) or a loss-based method: ga, graddiff, npo, "
                                             "simnpo, idkpo, rmu, flat, satimp, ...")
    model: str | None = Field(None, description="Model to remove the owners from (default: the world's target).")
    attributor: str | None = Field(None, description="Attribution model folder (`dareu train-attributor`): DareU's "
                                                     "reward and the receipt's attribution. Needed for dareu.")
    config: dict[str, Any] = Field(default_factory=dict, description="Config overrides of the method, as in "
                                   "`dareu unlearn` (nested, e.g. {\"max_steps\": 100, \"aux\": {\"retain_coef\": 2}}).")
    follows: str | None = Field(None, description="Id of an earlier request: start from its model (requests in "
                                                  "sequence); this one waits until that one is done.")
    reference: str = Field("retrain", description="Forget quality's reference: retrain = a retain model trained "
                                                  "without every owner removed so far (cached per owner set).")
    attacks: list[str] | None = Field(None, description="Attacks for the receipt's recovery (default: relearn, "
                                                        "quant4, paraphrase, prefix; [] = none).")
    utility_floor: float = Field(0.95, description="dareu delivers its best checkpoint whose model utility stays >= "
                                                   "this x the original target's (else its final model).")


class Service:
    """The store, the cluster and the reconcile loop behind the API."""

    def __init__(self, store: Store, jobs, token: str, max_running: int = 1, interval: float = 1.0):
        self.store, self.jobs, self.token, self.interval = store, jobs, token, interval
        self.max_running = max_running
        self._on_cluster = 0  # requests with a Ray job, counted at the start of each reconcile pass
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the loop ----------------------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="reconcile", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.reconcile()
            self._stop.wait(self.interval)

    def reconcile(self) -> None:
        """One pass: follow the submitted requests, then submit queued ones, oldest first, while fewer than
        `max_running` are on the cluster."""
        rows = self.store.list(ACTIVE)
        self._on_cluster = sum(1 for r in rows if r["job"] is not None)
        for row in rows:
            try:
                with self._lock:
                    current = self.store.get(row["id"])
                    if current["state"] in ACTIVE:
                        self._reconcile(current)
            except Exception:
                log.exception("reconciling %s", row["id"])

    def _reconcile(self, r: dict) -> None:
        now = time.time()
        if r["job"] is None:
            if r["follows"]:
                parent = self.store.get(r["follows"])
                if parent["state"] in ("failed", "cancelled"):
                    self.store.update(r["id"], state="failed", finished=now,
                                      error=f"the request it follows ({parent['id']}) {parent['state']}")
                    return
                if parent["state"] != "done":
                    return  # waits for its parent's model
            if self._on_cluster < self.max_running:  # else it waits its turn (the list is oldest first)
                self._submit(r)
                self._on_cluster += 1
            return
        info = self.jobs.info(r["job"])
        if info is None:  # the cluster does not know the job (it was restarted): next attempt, which resumes
            self._submit(r)
            return
        state = RAY_STATES.get(str(info.status), "running")
        if state == "running" and r["state"] != "running":
            self.store.update(r["id"], state="running", started=now)
        elif state == "done":
            ok = get_status(r["folder"])["state"] == "done"
            self.store.update(r["id"], state="done" if ok else "failed", finished=now,
                              error=None if ok else "the job ended without a receipt")
        elif state == "failed":
            reason = get_status(r["folder"]).get("reason") or info.message or str(info.status)
            self.store.update(r["id"], state="failed", finished=now, error=str(reason)[:500])

    def _submit(self, r: dict) -> None:
        attempt = r["attempts"] + 1
        job = f"dareu-{r['id']}-{attempt}"
        self.store.update(r["id"], job=job, attempts=attempt)  # recorded first: see dareu/service/cluster.py
        self.jobs.submit(job, Path(r["folder"]))

    # -- the endpoints' work -----------------------------------------------------------------------------------
    def cancel(self, request_id: str) -> dict:
        with self._lock:
            r = self.get(request_id)
            if r["state"] not in ACTIVE:
                raise RequestError(f"request {request_id} is {r['state']}; only a queued or running request can be "
                                   "cancelled", 409)
            self.store.update(request_id, state="cancelled", finished=time.time())
            if r["job"]:
                self.jobs.stop(r["job"])
        return self.get(request_id)

    def get(self, request_id: str) -> dict:
        r = self.store.get(request_id)
        if r is None:
            raise RequestError(f"no request {request_id!r}; GET /v1/requests lists them", 404)
        return r


def training_progress(run_dir: Path) -> dict:
    """Step, planned steps and the logged curves, from the run's latest checkpoint (HF Trainer's trainer_state.json,
    or the PPO loop's log_history.json)."""
    checkpoints = sorted((run_dir / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    latest = checkpoints[-1] if checkpoints else None
    state = read_json(latest / "trainer_state.json") if latest and (latest / "trainer_state.json").is_file() else {}
    if (run_dir / "trainer_log.json").is_file():
        history = read_json(run_dir / "trainer_log.json")
    elif state:
        history = state.get("log_history", [])
    elif latest and (latest / "log_history.json").is_file():
        history = read_json(latest / "log_history.json")
    else:
        return {"step": 0}
    steps = [e["step"] for e in history if isinstance(e.get("step"), int)]
    curves = [{k: v for k, v in e.items() if isinstance(v, (int, float))} for e in history if "step" in e]
    return {"step": max(steps, default=0), "max_steps": state.get("max_steps"), "curves": curves[-200:]}


def view(r: dict, full: bool = False) -> dict:
    """What the API shows of a stored request."""
    folder = Path(r["folder"])
    progress = read_json(folder / "progress.json") if (folder / "progress.json").is_file() else {}
    out = {"id": r["id"], "state": r["state"], "owners": r["request"]["owners"], "method": r["request"]["method"],
           "follows": r["follows"], "created": r["created"], "started": r["started"], "finished": r["finished"],
           "queue_seconds": (r["started"] - r["created"]) if r["started"] else None,
           "stage": progress.get("stage"), "error": r["error"], "job": r["job"], "attempts": r["attempts"]}
    if full:
        out |= {"request": r["request"], "stages": progress.get("stages"), "stages_done": progress.get("done", []),
                "training": training_progress(folder / "run"), "folder": str(folder),
                "receipt": f"/v1/requests/{r['id']}/receipt" if r["state"] == "done" else None}
    return out


def create_app(service: Service) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        service.start()
        yield
        service.stop()

    app = FastAPI(title="DareU de-attribution service", version="1", lifespan=lifespan,
                  description="Removal requests over HTTP, Ray jobs behind them, a receipt per owner.")

    def authorised(authorization: str | None = Header(None)) -> None:
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip(), service.token):
            raise HTTPException(401, "missing or wrong token: send Authorization: Bearer <token> (the server's "
                                     "--token-file, DAREU_TOKEN, or <store>/token)",
                                headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(DareUError)
    async def refused(_request, err: DareUError):
        return JSONResponse({"detail": str(err)}, status_code=getattr(err, "status", 400))

    guard = [Depends(authorised)]

    @app.get("/health")
    def health() -> dict:
        return {"ok": True}

    @app.post("/v1/requests", status_code=201, dependencies=guard)
    def submit(body: RequestIn) -> dict:
        resolved = resolve(Body(**body.model_dump()), service.store)
        row = service.store.add(resolved)
        return view(row)

    @app.get("/v1/requests", dependencies=guard)
    def listing() -> list[dict]:
        return [view(r) for r in service.store.list()]

    @app.get("/v1/requests/{request_id}", dependencies=guard)
    def one(request_id: str) -> dict:
        return view(service.get(request_id), full=True)

    @app.delete("/v1/requests/{request_id}", dependencies=guard)
    def cancel(request_id: str) -> dict:
        return view(service.cancel(request_id))

    @app.get("/v1/requests/{request_id}/receipt", dependencies=guard)
    def receipt(request_id: str, format: str = Query("json", pattern="^(json|md)$")):
        r = service.get(request_id)
        folder = Path(r["folder"])
        if r["state"] != "done" or not (folder / "receipt.json").is_file():
            raise RequestError(f"request {request_id} is {r['state']}; its receipt comes when it is done", 409)
        if format == "md":
            return PlainTextResponse((folder / "receipt.md").read_text(), media_type="text/markdown")
        return read_json(folder / "receipt.json")

    @app.get("/v1/requests/{request_id}/logs", dependencies=guard)
    def logs(request_id: str):
        r = service.get(request_id)
        return PlainTextResponse(service.jobs.logs(r["job"]) if r["job"] else "")

    @app.get("/v1/owners", dependencies=guard)
    def owners(world: str) -> dict:
        from dareu.data import load_world
        from dareu.service.owners import owners_of

        return {"world": world, "owners": owners_of(load_world(world))}

    return app
