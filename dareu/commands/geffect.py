"""`dareu g-effect --world W --method NAME --out DIR`: G-effects of an objective (or DareU's RL loss) over an
unlearning run, per step, layer group, term and instance."""

from __future__ import annotations

import argparse
from pathlib import Path

from dareu.commands.common import config_epilog, console
from dareu.config import load_config, save_config
from dareu.errors import DareUError
from dareu.runs import claim_run_dir, running, set_status

EPILOG = """The run: the method's own optimizer steps from --model, G-effects measured at --steps on fixed
measuring batches (forget QA, their paired retain QA, and held-out retain QA for the retain risk).
e = <grad of the loss, grad of the answer NLL>; one SGD step of size lr changes that NLL by about -lr*e:
negative unlearning G-effect = forgetting, negative retaining G-effect = damage.
Method parameters are params.<key> (params.beta=0.2; for dareu the keys of configs/methods/dareu.yaml,
e.g. params.aux.forget_coef=0). Writes DIR/geffect.json, DIR/geffect_steps.png, DIR/geffect_layers.png.
examples:
  dareu g-effect --world W --method ga --out ge/ga --steps 0,5,10 learning_rate=1e-4
  dareu g-effect --world W --method npo --out ge/npo --layers embeddings,block_0,head --ema measure_batches=4
  dareu g-effect --world W --method dareu --attributor A --out ge/dareu --steps 0,5
  dareu g-effect --run runs/npo --out ge/npo-run --steps 0,25,50     # a finished run's checkpoints
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from dareu.geffect.config import GEffectConfig

    p.add_argument("--world", default=None, help="world folder made by `dareu prepare` (its data; its target model "
                                                 "is the default --model)")
    p.add_argument("--method", default=None, help="a registered objective (ga, npo, wga, satimp, flat, ...) or dareu "
                                                  "(the RL surrogate + auxiliary terms)")
    p.add_argument("--split", default=None, help="forget split (default: forget10)")
    p.add_argument("--model", default=None, help="model folder or run folder to start from (default: W/models/target)")
    p.add_argument("--run", default=None, help="instead of training: measure at the checkpoints of this `dareu "
                                               "unlearn` run folder (method, world, split from its config.yaml)")
    p.add_argument("--out", required=True, help="folder to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--steps", default=None, help="comma list of steps to measure at (default 0,10,20)")
    p.add_argument("--max-steps", type=int, default=None, help="length of the run (default: the last of --steps)")
    p.add_argument("--layers", default=None, help="layer groups to measure: all (default) or e.g. "
                                                  "embeddings,block_0,head")
    p.add_argument("--ema", action="store_true", help="smooth across measuring batches like the official code "
                                                      "(0.6/0.4)")
    p.add_argument("--projection-dim", type=int, default=None, help="CountSketch gradients to K numbers per group "
                                                                    "(large models); default exact")
    p.add_argument("--attributor", default=None, help="attributor folder: DareU's reward (default for dareu: the "
                                                      "fact-leakage indicator)")
    p.add_argument("--config", default=None, help="YAML of g-effect settings (keys below)")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="g-effect settings (learning_rate=1e-4) and method parameters (params.beta=0.2)")
    p.epilog = EPILOG + "\n" + config_epilog(GEffectConfig)


def split_overrides(pairs: list[str]) -> tuple[list[str], list[str]]:
    """(g-effect settings, method parameters without their `params.` prefix)."""
    ours = [p for p in pairs if not p.startswith("params.")]
    theirs = [p[len("params."):] for p in pairs if p.startswith("params.")]
    return ours, theirs


def load_geffect_config(args: argparse.Namespace):
    from dareu.geffect.config import GEffectConfig

    ours, _ = split_overrides(list(args.overrides or []))
    flags = []
    if args.steps is not None:
        flags.append(f"steps={args.steps}")
    if args.max_steps is not None:
        flags.append(f"max_steps={args.max_steps}")
    if args.layers is not None:
        flags.append(f"layers={args.layers}")
    if args.ema:
        flags.append("ema=true")
    if args.projection_dim is not None:
        flags.append(f"projection_dim={args.projection_dim}")
    return load_config(GEffectConfig, args.config, ours + flags)


def run(args: argparse.Namespace) -> int:
    import rl.geffect_loss  # noqa: F401  registers the G-effect method `dareu` (DareU's RL loss)
    from dareu.geffect.run import plan_run, run_geffect

    cfg = load_geffect_config(args)
    _, params = split_overrides(list(args.overrides or []))
    if args.run:
        from dareu.geffect.checkpoints import plan_from_run

        given = [flag for flag, value in (("--world", args.world), ("--model", args.model), ("--split", args.split),
                                          ("--max-steps", args.max_steps), ("--attributor", args.attributor)) if value]
        if given:
            raise DareUError(f"--run takes world, model and split from the run's config.yaml; drop {given[0]}")
        plan = plan_from_run(cfg, args.run, list(cfg.steps) if args.steps else None, params, args.method)
    else:
        if not args.method:
            raise DareUError("give --method NAME (an objective or dareu), or --run R to measure a finished run")
        if not args.world:
            raise DareUError("give --world W (a folder made by `dareu prepare`): its data are the forget and retain QA")
        if not Path(args.world).exists():
            raise DareUError(f"world folder {args.world} does not exist; build it with "
                             f"`dareu prepare --out {args.world}`")
        plan = plan_run(cfg, args.method, world=args.world, split=args.split or "forget10", model=args.model,
                        params=params, attributor=args.attributor)
    out, _ = claim_run_dir(args.out, "geffect", overwrite=args.overwrite)
    save_config(cfg, out / "config.yaml")
    con = console()
    with running(out):
        result = run_geffect(plan, out, log=con.print)
    set_status(out, "done", steps=[r["step"] for r in result["steps"]])
    con.print(f"wrote {out / 'geffect.json'}, {out / 'geffect_steps.png'}, {out / 'geffect_layers.png'}")
    return 0
