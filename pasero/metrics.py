"""The validation metrics a best checkpoint can be chosen by, and which way is better: shared by
training (early stopping) and checkpoint selection, without importing either."""

BEST_METRICS = {"loss": "min", "nll": "min", "ppl": "min", "bleu": "max", "chrf": "max"}


def lower_is_better(metric: str | None) -> bool:
    return BEST_METRICS.get(metric or "nll", "min") == "min"
