"""A report header shared by the tests that build reports without running an analysis."""

HEADER = {
    "checkpoint": {"path": "model.pt", "sha256": None},
    "model": "mlp",
    "data": {"spec": "digits", "num_samples": 64},
    "loss": "cross_entropy",
    "settings": {"seed": 0, "device": "cpu"},
}
