"""The PPO run: sample -> score -> update, with checkpoints, resume and the same curves as GRPO/RLOO."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import torch

from dareu.generation import left_padded
from dareu.runs import read_json, write_json
from rl.config import DareUConfig
from rl.ppo import PPO, forward_tokens
from rl.rollout import assemble, cut_after_eos


@torch.no_grad()
def sample(model, tok, prompts: list[str], cfg: DareUConfig, seed: int):
    """`num_generations` completions per prompt with HF generate; returns ids (prompt left-padded,
    completion right-padded with the mask cut after the first eos), attention mask, prompt width, texts."""
    torch.manual_seed(seed)
    dev = next(model.parameters()).device
    enc = left_padded(tok, prompts, dev)
    model.eval()
    out = model.generate(**enc, do_sample=True, temperature=cfg.temperature, top_k=0, top_p=1.0,
                         max_new_tokens=cfg.max_completion_length, num_return_sequences=cfg.num_generations,
                         pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    completions = [cut_after_eos(row, tok.eos_token_id) for row in out[:, enc["input_ids"].shape[1]:].tolist()]
    return assemble(tok, prompts, completions, cfg.num_generations, dev)


def _save(path: Path, model, tok, learner: PPO, history: list[dict]) -> None:
    """checkpoint-N: policy (save_pretrained), value head + optimizer + iteration, and the log so far."""

    tmp = path.with_name(".tmp-" + path.name)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(str(tmp / "policy"))
    torch.save(learner.state_dict(), tmp / "ppo_state.pt")
    write_json(tmp / "log_history.json", history)
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)


def _load_policy(model, path: Path, peft: bool) -> None:
    """Put a checkpoint's weights into the live policy (the optimizer keeps pointing at its parameters)."""
    from safetensors.torch import load_file

    if peft:
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, load_file(str(path / "adapter_model.safetensors")))
    else:
        from transformers import AutoModelForCausalLM

        saved = AutoModelForCausalLM.from_pretrained(str(path), dtype=next(model.parameters()).dtype)
        model.load_state_dict(saved.state_dict())


def run_ppo(cfg: DareUConfig, model, tok, forget_rows: list[dict], reward, unlearn_data, tracker, ckpt_dir: Path,
            resume: Path | None, peft_config=None):
    from dareu.modeling import device, prompt_text
    from dareu.unlearn import make_reference
    from rl.learners import AuxTerms
    from rl.train_loop import progress_line

    dev = device()
    model.to(dev)
    if peft_config is not None:
        from peft import get_peft_model

        model = get_peft_model(model, peft_config)
    ref = make_reference(model)
    aux = AuxTerms(cfg, unlearn_data, ref)

    def ref_logps(input_ids, attention_mask, n_completion):
        logits = ref({"input_ids": input_ids, "attention_mask": attention_mask}).logits
        logp = torch.log_softmax(logits[:, -n_completion - 1: -1].float(), -1)
        return logp.gather(-1, input_ids[:, -n_completion:].unsqueeze(-1)).squeeze(-1)

    learner = PPO(model, tok, ref_logps, cfg.ppo, cfg.learning_rate, cfg.max_steps, cfg.max_grad_norm,
                  aux_loss=aux if (cfg.aux.forget != "none" or cfg.aux.retain != "none") else None)
    history: list[dict] = []
    start_step = 0
    if resume is not None:
        _load_policy(model, resume / "policy", peft=peft_config is not None)
        learner.load_state_dict(torch.load(resume / "ppo_state.pt", weights_only=True))
        history = read_json(resume / "log_history.json")
        start_step = learner.iteration
        aux.skip(start_step * cfg.ppo.ppo_epochs * cfg.ppo.num_minibatches)
    elif tracker.eval_every:
        history.append({"step": 0, **tracker.evaluate_now(model, tok, 0)})

    pool = None
    if cfg.placement.rollout.count:  # rollout actors (rl/rollout.py), named after the run folder
        from rl.rollout import RolloutPool

        pool = RolloutPool.connect(ckpt_dir.parent, cfg.placement.rollout.count)
    n_prompts = cfg.batch_size // cfg.num_generations
    for step in range(start_step + 1, cfg.max_steps + 1):
        rng = random.Random(cfg.seed * 100003 + step)  # batch of step N is the same after a resume
        rows = rng.sample(forget_rows, min(n_prompts, len(forget_rows)))
        prompts = [prompt_text(tok, r["question"]) for r in rows]
        if pool is None:
            input_ids, attention_mask, n_prompt, texts = sample(model, tok, prompts, cfg, seed=cfg.seed + step)
        else:
            push_s = pool.push(model)  # the weights after the last update (or the resumed checkpoint)
            input_ids, attention_mask, n_prompt, texts = pool.sample(tok, prompts, cfg, cfg.seed + step, dev)
        questions = [r["question"] for r in rows for _ in range(cfg.num_generations)]
        owners = [r["owner"] for r in rows for _ in range(cfg.num_generations)]
        metrics: dict[str, float] = {}
        scores = reward(prompts=None, completions=texts, question=questions, owner=owners,
                        log_metric=metrics.__setitem__)
        rollout = learner.make_rollout(input_ids, attention_mask, n_prompt,
                                       torch.tensor(scores, dtype=torch.float32, device=dev))
        metrics.update(learner.update(rollout))
        metrics["reward"] = float(sum(scores) / len(scores))
        if pool is not None:
            metrics["rollout/push_seconds"] = push_s
        entry = {"step": step, **{k: v for k, v in metrics.items() if k != "time"}}
        tracker.log(step, entry)
        print(progress_line(step, cfg.max_steps, entry), flush=True)
        if tracker.due(step, last=step == cfg.max_steps):
            evaluation = tracker.evaluate_now(model, tok, step)
            entry.update(evaluation)
            print(progress_line(step, cfg.max_steps, evaluation), flush=True)
        history.append(entry)
        if cfg.save_steps and step % cfg.save_steps == 0:
            _save(ckpt_dir / f"checkpoint-{step}", model, tok, learner, history)
    return model, history


__all__ = ["forward_tokens", "run_ppo", "sample"]
