"""The engine: one run's training loop (``train``), its metrics, executing a run in a process
(``execute``) and the executors that place runs in this process, worker processes or Ray tasks.
It knows nothing of configs files, tables or reports: a run spec (plain data) goes in, a
:class:`~regbench.engine.result.RunResult` comes out."""
