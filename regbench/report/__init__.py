"""Figures of an experiment (``plots``, from the data reduced over seeds in ``plot_data``) and
the self-contained ``report.html`` (``page``), a tune folder's budgets and sensitivity plots
(``tuning``) and JUnit XML for CI systems (``junit``), built from run folders alone; importing it
loads no torch (the page's advice section does, through ``analysis.advice``)."""
