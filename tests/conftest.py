"""Shared test settings: one intra-op thread per worker so parallel workers do not contend."""

import torch

torch.set_num_threads(1)
