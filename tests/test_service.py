"""`dareu serve` as a user meets it: a real server process (uvicorn) over a real Ray head on loopback, spoken to
over HTTP. Requests run as Ray jobs on the tiny world; the server is killed mid-job and started again."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dareu.data import load_world
from dareu.service.client import ANONYMOUS, ServeProcess
from tests.ray_head import env

TOKEN = "test-token-0123456789abcdef"
# a DareU run short enough for CI, long enough to kill the server while it trains
DAREU = {"max_steps": 12, "save_steps": 4, "eval_every": 0, "max_completion_length": 12, "batch_size": 8,
         "num_generations": 4, "aux": {"batch_size": 4}}
NPO = {"train": {"max_steps": 6, "learning_rate": 0.003}}


def wait_for(server: ServeProcess, request_id: str, states: tuple[str, ...], timeout: float = 900) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        status, r = server.request("GET", f"/v1/requests/{request_id}")
        assert status == 200, r
        if r["state"] in states:
            return r
        time.sleep(1)
    pytest.fail(f"request {request_id} did not reach {states}: {r}")


@pytest.fixture(scope="module")
def service(head, tmp_path_factory):
    server = ServeProcess(head.dashboard, tmp_path_factory.mktemp("service") / "store", TOKEN).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def owners(service, tiny_world) -> list[str]:
    status, body = service.request("GET", f"/v1/owners?world={tiny_world}")
    assert status == 200
    return body["owners"]


@pytest.fixture(scope="module")
def first(service, tiny_world, tiny_attributor, owners) -> dict:
    """NPO removes the last two owners; followed to its end."""
    status, r = service.request("POST", "/v1/requests", {"world": str(tiny_world), "owners": owners[-2:],
                                                       "method": "npo", "attributor": str(tiny_attributor),
                                                       "config": NPO, "attacks": ["quant8"]})
    assert status == 201, r
    return wait_for(service, r["id"], ("done", "failed"))


def test_requests_without_the_right_token_get_401_and_submit_nothing(service, tiny_world, owners):
    body = {"world": str(tiny_world), "owners": owners[:1], "method": "npo"}
    assert service.request("POST", "/v1/requests", body, token=ANONYMOUS)[0] == 401
    assert service.request("POST", "/v1/requests", body, token="wrong-token-0123456789")[0] == 401
    assert service.request("GET", "/v1/requests", token=ANONYMOUS)[0] == 401
    assert service.request("GET", "/health", token=ANONYMOUS) == (200, {"ok": True})
    status, listed = service.request("GET", "/v1/requests")
    assert status == 200 and all(r["owners"] != owners[:1] for r in listed)


def test_a_request_runs_to_done_and_its_receipt_matches_dareu_eval_of_the_unlearned_model(first, service,
                                                                                            tiny_attributor, tmp_path):
    assert first["state"] == "done", first
    assert first["stages_done"][-1] == "receipt" and first["training"]["step"] == NPO["train"]["max_steps"]
    status, receipt = service.request("GET", f"/v1/requests/{first['id']}/receipt")
    assert status == 200
    folder = Path(first["folder"])
    split = next(s for s in json.loads((folder / "world" / "data" / "dataset_dict.json").read_text())["splits"]
                 if s.startswith("forget-"))
    # the same model, evaluated by the command a user would run
    out = tmp_path / "eval"
    done = subprocess.run([sys.executable, "-m", "dareu.cli", "eval", "--world", str(folder / "world"), "--split", split,
                           "--model", receipt["model"], "--attributor", str(tiny_attributor), "--out", str(out)],
                          env=env(), capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    ev = json.loads((out / "eval.json").read_text())
    assert receipt["forget_quality"]["after"] == pytest.approx(ev["forget_quality"]["agg_value"])
    assert receipt["model_utility"]["after"] == pytest.approx(ev["model_utility"]["agg_value"])
    owner_of = {str(r["qa_id"]): r["owner"] for r in load_world(folder / "world")[split]}
    scores = ev["forget_attribution"]["value_by_index"]
    for owner, row in receipt["owners"].items():
        mine = [v["score"] for qa, v in scores.items() if owner_of[qa] == owner]
        assert mine and row["attribution"]["after"] == pytest.approx(statistics.mean(mine))
        assert set(row["attack_recovery"]) == {"quant8"}
    # the first request of a chain starts from the target: its utility is the original's
    assert receipt["model_utility"]["original_target"] == pytest.approx(receipt["model_utility"]["before"])
    status, md = service.request("GET", f"/v1/requests/{first['id']}/receipt?format=md")
    assert status == 200 and all(o in md for o in receipt["owners"])


def test_each_bad_input_gets_a_4xx_naming_the_problem_and_submits_nothing(first, service, tiny_world,
                                                                           tiny_attributor, owners):
    before = service.request("GET", "/v1/requests")[1]
    base = {"world": str(tiny_world), "owners": [owners[0]], "method": "npo"}
    cases = [
        ({"owners": ["Nobody Atall"]}, 400, "'Nobody Atall' is not in this world"),
        ({"owners": []}, 400, "owners is empty"),
        ({"method": "npx"}, 400, "unknown objective 'npx'"),
        ({"config": {"train": {"max_stepz": 3}}}, 400, "train.max_stepz"),
        ({"model": "/no/such/model"}, 400, "/no/such/model"),
        ({"world": "/no/such/world"}, 400, "/no/such/world"),
        ({"method": "dareu"}, 400, "needs an attributor"),
        ({"attacks": ["relearnn"]}, 400, "relearnn"),
        ({"utility_floor": 1.5}, 400, "utility_floor 1.5"),
        ({"follows": "r9999-000000"}, 404, "no such request"),
        ({"follows": first["id"], "owners": [first["owners"][0]]}, 409, "already removed"),
    ]
    for change, code, words in cases:
        status, body = service.request("POST", "/v1/requests", base | change)
        assert status == code and words in body["detail"], (change, status, body)
    assert service.request("GET", "/v1/requests")[1] == before  # nothing stored, so nothing submitted


def test_a_follow_up_starts_from_the_earlier_model_and_survives_a_killed_server(first, service, tiny_world,
                                                                               tiny_attributor, owners):
    status, r = service.request("POST", "/v1/requests", {"world": str(tiny_world), "owners": [owners[0]],
                                                       "method": "dareu", "attributor": str(tiny_attributor),
                                                       "config": DAREU, "follows": first["id"], "attacks": []})
    assert status == 201, r
    wait_for(service, r["id"], ("running",), timeout=300)
    deadline = time.time() + 600
    while service.request("GET", f"/v1/requests/{r['id']}")[1]["training"]["step"] < 4:
        assert time.time() < deadline
        time.sleep(0.5)
    service.kill()  # mid-training; the Ray job keeps running
    service.start()  # the same store
    listed = [x["id"] for x in service.request("GET", "/v1/requests")[1]]
    assert r["id"] in listed
    done = wait_for(service, r["id"], ("done", "failed"))
    assert done["state"] == "done" and done["attempts"] == 1, done  # found again, not resubmitted
    receipt = service.request("GET", f"/v1/requests/{r['id']}/receipt")[1]
    assert receipt["start_model"] == str(Path(first["folder"]) / "model")  # the model the first one delivered
    assert (Path(first["folder"]) / "model").resolve() == Path(first["folder"]) / "run" / "model"  # NPO: its final
    assert receipt["owners_removed_before"] == first["owners"]
    # utility is measured against the original target (on this request's retain split), not the model it started from
    target_eval = Path(done["folder"]) / "target"
    assert json.loads((target_eval / "eval_meta.json").read_text())["model"] == str(tiny_world / "models" / "target")
    assert receipt["model_utility"]["original_target"] == pytest.approx(
        json.loads((target_eval / "eval.json").read_text())["model_utility"]["agg_value"])
    # the retain reference was trained on no owner removed in the chain
    data = load_world(Path(done["folder"]) / "world")
    retain = next(s for s in data if s.startswith("retain-"))
    assert not {row["owner"] for row in data[retain]} & {*first["owners"], owners[0]}


def test_a_cancelled_request_stops_and_its_follow_up_fails(service, tiny_world, owners):
    status, r = service.request("POST", "/v1/requests", {"world": str(tiny_world), "owners": [owners[1]],
                                                       "method": "npo", "config": NPO, "attacks": []})
    assert status == 201
    status, child = service.request("POST", "/v1/requests", {"world": str(tiny_world), "owners": [owners[2]],
                                                           "method": "npo", "follows": r["id"], "attacks": []})
    assert status == 201 and child["state"] == "queued"
    status, cancelled = service.request("DELETE", f"/v1/requests/{r['id']}")
    assert status == 200 and cancelled["state"] == "cancelled"
    failed = wait_for(service, child["id"], ("failed",), timeout=60)
    assert "cancelled" in failed["error"]
    assert service.request("DELETE", f"/v1/requests/{r['id']}")[0] == 409  # already ended
    assert service.request("GET", f"/v1/requests/{r['id']}/receipt")[0] == 409
    time.sleep(3)  # the loop has run since: a cancelled request stays cancelled
    assert service.request("GET", f"/v1/requests/{r['id']}")[1]["state"] == "cancelled"
