"""Loss-based unlearning: the Trainer subclass, forget/retain pairing, reference model, LoRA, run folder.

Pieces the RL learner reuses:
    make_reference(model) -> RefModel          # frozen copy, or the same peft model with adapters disabled
    build_unlearn_data(data, tok, split, retain_split="auto", templates="idk"|path|None) -> UnlearnData
        .batches(batch_size, seed) -> endless {"forget": {..., "template": {...}}, "retain": {...}}
    load_run_config(method, overrides, config=None, flags=None), run_unlearn(cfg, out, ...)

Heavy libraries (transformers, peft) are imported by the submodules that need them, not here.
"""

from dareu.unlearn.config import DataSettings, LoraSettings, TrainSettings, load_run_config, run_config_class
from dareu.unlearn.data import UnlearnCollator, UnlearnData, build_unlearn_data, load_templates
from dareu.unlearn.reference import RefModel, is_peft, make_reference
from dareu.unlearn.run import check_run, run_unlearn

__all__ = [
           "DataSettings",
           "LoraSettings",
           "RefModel",
           "TrainSettings",
           "UnlearnCollator",
           "UnlearnData",
           "build_unlearn_data",
           "check_run",
           "is_peft",
           "load_run_config",
           "load_templates",
           "make_reference",
           "run_config_class",
           "run_unlearn",
]
