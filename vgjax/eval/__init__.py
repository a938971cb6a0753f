"""Evaluation: descriptors -> k-NN search -> recall@N, per dataset and per query domain.

    from vgjax.eval import evaluate, Describer
    result = evaluate(split, describe, cfg.test, cfg.data, out_dir=..., name=...)

- `evaluate.py`: `evaluate()` (one split, one set of test settings), `evaluate_protocols()`
  (one result per protocol of a benchmark, `vgjax.data.readers`) and `EvalResult`;
- `evaluators.py`: the named evaluation entries of `config.evals` (validation, final test,
  multi-scale test, ...) that training and `python -m vgjax.eval` run;
- `methods.py`: test methods and multi-scale combinations; `extract.py`: batched
  descriptors; `store.py`: descriptor stores; `search.py`: k-NN, PCA, recalls;
  `report.py`: tables, results.json, predictions and pictures.
"""
from vgjax.eval.evaluate import (EvalResult, evaluate, evaluate_protocols, fit_pca,
                                 query_domains)
from vgjax.eval.extract import Describer, extract_descriptors
from vgjax.eval.methods import ViewPlan
from vgjax.eval.recalls import compute_recalls, recalls_from_predictions
from vgjax.eval.store import DescriptorStore, store_factory

__all__ = ["Describer", "DescriptorStore", "EvalResult", "ViewPlan", "compute_recalls",
           "evaluate", "evaluate_protocols", "extract_descriptors", "fit_pca", "query_domains",
           "recalls_from_predictions", "store_factory"]
