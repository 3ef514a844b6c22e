"""The gallery: published regularization findings reproduced by the configs shipped in
``gallery/configs/``. ``core`` holds the types, ``stats`` the numbers a rule reads, ``linear``
and ``networks`` the findings, ``fidelity`` the findings that regbench's regularizers behave as
their papers say, ``page`` running them and writing the page (``regbench gallery``)."""
