"""An experiment from file to results folder: load and validate the config (``config``), expand
it into runs (``plan``: recipes × sweep points × seeds, ``sweeps``, the recipe ``rules``), train
the runs that are not already complete through an executor (``runner``), with a live display
(``progress``), and describe a plan without training (``validate``)."""
