"""Figures of an experiment (``plots``, from the data reduced over seeds in ``plot_data``) and
the self-contained ``report.html`` (``page``), built from run folders alone; importing it loads
no torch (the page's advice section does, through ``analysis.advice``)."""
