"""The engine: one run's training loop (``train``, the reference), runs that share data, model
and settings trained as one stacked model (``fused``), their metrics (``metrics``), executing a
task in a process (``execute``), the executors that place tasks in this process, worker
processes or Ray tasks (``executors``), the optimizer step (``optim``), a tuning trial's pruning
(``pruning``), CPU threads (``threads``) and what a run returns (``result``). It knows nothing
of config files, tables or reports: a run spec (plain data) goes in, a
:class:`~regbench.engine.result.RunResult` comes out."""
