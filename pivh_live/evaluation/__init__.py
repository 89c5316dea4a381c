"""Evaluation: metrics (pure numpy), the frame/clip metric tables, plots, the HTML report
and ``evaluate`` (``pivh-live evaluate``). See docs/evaluation.md.

Submodules are imported where used: ``pivh_live.evaluation.evaluate.evaluate`` runs
the whole thing; ``pivh_live.evaluation.metrics`` is usable on its own.
"""
