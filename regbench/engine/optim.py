"""torch.optim without torch's compiler stack: the same update, 1.7–3 s less start-up.

torch.optim.Optimizer wraps ``add_param_group``, ``zero_grad``, ``state_dict`` and
``load_state_dict`` in ``torch._disable_dynamo``, and every ``step`` in a wrapper that breaks a
``torch.compile`` graph; each wrapper imports ``torch._dynamo`` when it is first called (sympy,
torch.fx, the inductor config: 1.7 s on 2 cores, measured in benchmarks/startup.py). An eager
training loop that never compiles uses none of it. So, while ``torch._dynamo`` has not been
imported by anyone:

- the four methods get their own function as the "already disabled" version their wrapper
  caches on first use (what ``torch._dynamo.disable`` would return is only different inside a
  compiled region, and regbench compiles nothing);
  (the four stay so for the process: code that later compiles a function calling them
  sees them traced rather than skipped);
- ``step`` calls the optimizer's own update function, unwrapped, under ``torch.no_grad()``,
  which is what the wrapper does around it when no step hook is registered (a hook, or a
  profiler, sends the call through ``optimizer.step()`` as usual).

The update is the same function on the same tensors: ``tests/test_startup.py`` checks that
parameters and optimizer state come out bit for bit equal to ``optimizer.step()`` for SGD (with
momentum and Nesterov), Adam and AdamW. Anything that does not look as expected (another torch
version) falls back to torch's own path.
"""
from __future__ import annotations

import inspect
import sys

import torch

_WRAPPED = ("add_param_group", "zero_grad", "state_dict", "load_state_dict")


def _compiler_loaded() -> bool:
    return "torch._dynamo" in sys.modules


def prepare() -> bool:
    """Let the optimizer's bookkeeping methods run without importing torch._dynamo (a no-op
    once anything has imported it); whether they now do."""
    if _compiler_loaded():
        return False
    ready = True
    for name in _WRAPPED:
        method = vars(torch.optim.Optimizer).get(name)
        inner = getattr(method, "__wrapped__", None)
        code = getattr(method, "__code__", None)
        if inner is None or code is None or not code.co_filename.endswith("_compile.py"):
            ready = False          # not torch._disable_dynamo's wrapper: leave it alone
            continue
        if getattr(inner, "__dynamo_disable", None) is None:
            inner.__dynamo_disable = inner
    return ready


def _has_step_hooks(optimizer: torch.optim.Optimizer) -> bool:
    from torch.optim import optimizer as module

    return bool(getattr(optimizer, "_optimizer_step_pre_hooks", True)
                or getattr(optimizer, "_optimizer_step_post_hooks", True)
                or getattr(module, "_global_optimizer_pre_hooks", True)
                or getattr(module, "_global_optimizer_post_hooks", True))


def eager_step(optimizer: torch.optim.Optimizer) -> None:
    """``optimizer.step()``, without importing torch._dynamo when nothing else has."""
    update = inspect.unwrap(type(optimizer).step)
    if (_compiler_loaded() or optimizer.defaults.get("differentiable")
            or torch.autograd.profiler._is_profiler_enabled or _has_step_hooks(optimizer)
            or update is type(optimizer).step):
        optimizer.step()
        return
    with torch.no_grad():
        update(optimizer)
    if getattr(optimizer.step, "_wrapped_by_lr_sched", False):
        optimizer._opt_called = True   # what a scheduler's wrapper of step() records
    if getattr(optimizer.step, "_with_counter", False):
        optimizer._step_count += 1     # the same, as older torch schedulers count it
