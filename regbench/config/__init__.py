"""The config's vocabulary: the typed schema (``schema``: pydantic models every component's
parameters build on) and the YAML reader and writer (``yaml_io``). Loading an experiment file and
resolving it against the registries is a stage of its own: ``regbench.experiment.config``."""
