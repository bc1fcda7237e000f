"""See each parameter's gradient as backward produces it, one parameter at a time.

Memory is the point. The exact G-effect needs <∇L, ∇R> for two risks (and per-instance risks). We
backward the objective once so `p.grad` holds ∇L, then backward each risk with a hook on every
parameter: the hook takes the risk's gradient for that one tensor, adds <g_risk, p.grad> to its
group's sum, and returns zeros so `p.grad` keeps ∇L. At any moment the model holds one full gradient
(∇L) plus one parameter's worth of the risk gradient — never three full copies.

With a projection (`CountSketch`) every gradient becomes K numbers per layer group the same way, so
even ∇L need not stay: large models measure in O(K · groups) extra memory.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch

Params = dict[str, tuple[torch.nn.Parameter, str]]  # name -> (parameter, layer group)


@contextlib.contextmanager
def observe_gradients(params: Params, on_grad: Callable[[str, torch.nn.Parameter, str, torch.Tensor], None]):
    """Within the block, backward calls `on_grad(name, param, group, grad)` per parameter and leaves `.grad` as
    it was (the hook hands autograd zeros to accumulate). Tied parameters fire once, with their summed gradient."""
    handles = []
    for name, (param, group) in params.items():
        def hook(grad, name=name, param=param, group=group):
            on_grad(name, param, group, grad)
            return torch.zeros_like(grad)

        handles.append(param.register_hook(hook))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _acc_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


class GroupDots:
    """Per group: <risk gradient, p.grad> and |risk gradient|², summed over the group's parameters."""

    def __init__(self):
        self.dots: dict[str, torch.Tensor] = {}
        self.sq: dict[str, torch.Tensor] = {}

    def __call__(self, name: str, param: torch.nn.Parameter, group: str, grad: torch.Tensor) -> None:
        g = grad.reshape(-1).to(_acc_dtype(grad))
        self.sq[group] = self.sq.get(group, 0) + torch.dot(g, g)
        if param.grad is not None:
            self.dots[group] = self.dots.get(group, 0) + torch.dot(g, param.grad.reshape(-1).to(g.dtype))

    def values(self, groups: list[str]) -> tuple[dict[str, float], dict[str, float]]:
        return ({g: float(self.dots.get(g, 0.0)) for g in groups}, {g: float(self.sq.get(g, 0.0)) for g in groups})


class CountSketch:
    """Random projection R^n -> R^K with E<Sa, Sb> = <a, b>: coordinate i goes to bucket h(i) with sign s(i).

    Hashes are drawn from a generator seeded by (seed, parameter index, chunk), so every gradient of
    the same parameter lands in the same buckets, and no hash table is kept (O(chunk) scratch)."""

    CHUNK = 1 << 22

    def __init__(self, dim: int, seed: int = 0):
        self.dim, self.seed = dim, seed

    def project(self, index: int, grad: torch.Tensor) -> torch.Tensor:
        flat = grad.reshape(-1)
        out = torch.zeros(self.dim, dtype=_acc_dtype(grad), device=grad.device)
        for chunk, start in enumerate(range(0, flat.numel(), self.CHUNK)):
            part = flat[start:start + self.CHUNK].to(out.dtype)
            gen = torch.Generator(device=grad.device)
            gen.manual_seed((self.seed * 1_000_003 + index * 7919 + chunk) % (2 ** 63))
            buckets = torch.randint(0, self.dim, (part.numel(),), generator=gen, device=grad.device)
            signs = torch.randint(0, 2, (part.numel(),), generator=gen, device=grad.device).to(out.dtype) * 2 - 1
            out.index_add_(0, buckets, part * signs)
        return out


class GroupSketches:
    """Per group: the CountSketch of the gradient (and its exact squared norm)."""

    def __init__(self, sketch: CountSketch, index: dict[str, int]):
        self.sketch, self.index = sketch, index
        self.vectors: dict[str, torch.Tensor] = {}
        self.sq: dict[str, torch.Tensor] = {}

    def __call__(self, name: str, param: torch.nn.Parameter, group: str, grad: torch.Tensor) -> None:
        g = grad.reshape(-1).to(_acc_dtype(grad))
        self.sq[group] = self.sq.get(group, 0) + torch.dot(g, g)
        v = self.sketch.project(self.index[name], grad)
        self.vectors[group] = self.vectors[group] + v if group in self.vectors else v

    def values(self, groups: list[str]) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        zeros = torch.zeros(self.sketch.dim, dtype=torch.float64)
        return ({g: self.vectors.get(g, zeros).detach().cpu().double() for g in groups},
                {g: float(self.sq.get(g, 0.0)) for g in groups})
