"""Figures of an experiment (``plots``, from the data reduced over seeds in ``plot_data``) and
the self-contained ``report.html`` (``page``), built from run folders alone; no torch."""
