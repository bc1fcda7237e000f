"""The retain model's logs: the reference of forget quality, PrivLeak, Tug-of-War and fact leakage.

open-unlearning leaves forget quality empty when nobody supplied retain logs; here they are found or
computed and cached (`<world>/eval/retain-<split>/eval.json`), checked to belong to the same forget split,
and the second retain seed's logs give the noise ceiling.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from dareu.errors import DareUError
from dareu.evaluation import metrics as M

META = "eval_meta.json"


@dataclass
class Reference:
    """Logs (eval dicts) of the retain model and of its second seed; either may be missing."""

    retain: dict | None = None
    seed2: dict | None = None

    def noise_ceiling(self) -> float | None:
        if not self.retain or not self.seed2:
            return None
        from dareu.evaluation.suite import scores

        return M.ks_test(scores(self.seed2["forget_truth_ratio"]), scores(self.retain["forget_truth_ratio"]))[0]


def read_logs(path: str | Path, what: str = "logs") -> dict:
    """A JSON log file, or a folder holding eval.json / TOFU_EVAL.json / eval_log_aggregated.json."""
    p = Path(path)
    if p.is_dir():
        found = [p / n for n in ("eval.json", "TOFU_EVAL.json", "eval_log_aggregated.json") if (p / n).is_file()]
        if not found:
            raise DareUError(f"{what} {p}: no eval.json, TOFU_EVAL.json or eval_log_aggregated.json in that folder")
        p = found[0]
    if not p.is_file():
        raise DareUError(f"{what} {p} does not exist")
    try:
        data = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DareUError(f"{what} {p} is not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise DareUError(f"{what} {p} must hold a JSON object of metrics")
    return data


def check_reference(logs: dict, forget_ids: list[str], split: str, what: str = "retain logs") -> None:
    """Refuse logs of another forget split: their per-sample forget truth ratios must cover this split's QA."""
    tr = logs.get("forget_truth_ratio")
    if not isinstance(tr, dict) or not tr.get("value_by_index"):
        raise DareUError(f"{what} hold no per-sample forget_truth_ratio; forget quality needs it "
                         "(evaluate the retain model with dareu eval, or pass open-unlearning's TOFU_EVAL.json)")
    theirs = list(tr["value_by_index"])
    numeric = all(k.isdigit() for k in theirs) and not all(k.isdigit() for k in forget_ids)
    if len(theirs) != len(forget_ids) or (not numeric and set(theirs) != set(forget_ids)):
        raise DareUError(f"{what} are for another split: they cover {len(theirs)} forget QA (e.g. {theirs[0]!r}) "
                         f"but {split} has {len(forget_ids)}; use the retain model (or its logs) of the same split")


def cache_valid(folder: Path, model_key: str, cfg_values: dict) -> bool:
    meta = folder / META
    if not (folder / "eval.json").is_file() or not meta.is_file():
        return False
    saved = json.loads(meta.read_text())
    return saved.get("model_key") == model_key and saved.get("config") == cfg_values


def model_key(model_dir: str | Path) -> str:
    """What identifies a model's weights: the world's stamp when present, else the weights' size and time."""
    p = Path(model_dir)
    stamp = p / "dareu_stamp.json"
    if stamp.is_file():
        return json.loads(stamp.read_text()).get("key", "")
    files = sorted(p.glob("*.safetensors")) or sorted(p.glob("*.bin"))
    return ";".join(f"{f.name}:{f.stat().st_size}:{int(f.stat().st_mtime)}" for f in files) or str(p.resolve())


def check_retain_model(model_dir: str | Path, split: str, retain_split: str) -> None:
    """A retain model trained on another retain split (its world stamp says so) is the wrong reference."""
    stamp = Path(model_dir) / "dareu_stamp.json"
    if not stamp.is_file():
        return
    trained = json.loads(stamp.read_text()).get("splits")
    if trained is not None and list(trained) != [retain_split]:
        raise DareUError(f"retain model {model_dir} was trained on {', '.join(trained)}, not {retain_split}: "
                         f"it is no reference for {split}; use the retain model of {split} (retain-{split})")
