"""Reading results: statistics over seeds (``stats``), the comparison table (``compare``) and
its answer in sentences (``headline``), the overfitting rules (``diagnose``) on curves read from any CSV (``curves``), and what to try next
(``advice``). Everything here works from run folders alone, and importing it loads no torch;
only advice's catalogue suggestions read the regularizer registry (and so torch) when made."""
