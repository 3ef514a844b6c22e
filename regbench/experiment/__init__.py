"""An experiment from file to results folder: how a command runs (``launch``: the one
``Launch`` every front door builds), load and validate the config (``config``), expand it into
runs (``plan``: recipes × sweep points × seeds, ``sweeps``, the recipe ``rules``), train the
runs that are not already complete through an executor (``runner``), with a live display
(``progress``), confirm the choices on fresh seeds (``confirm``), tune every recipe with the same
budget (``tune``, over the ``search`` ranges), describe a plan without training (``validate``),
the notebook API (``api``: ``regbench.run``) and the generated config reference
(``reference``: docs/config.md and the JSON Schema)."""
