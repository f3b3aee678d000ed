"""Peak memory of one Hessian-vector product relative to one gradient on a GPT-2-small-shaped
language model, for each product mode of flatscope's HessianOperator.

The model is GPT-2 small's shape (vocabulary 50257, width 768, 12 heads) with fewer layers
(``--layers``, default 4, to fit a small machine), random weights, on one batch of random token
ids (``--batch`` sequences of ``--seq-len`` tokens) under the ``causal_lm`` loss. Each of

- one gradient as a training step takes it (``loss.backward()`` into the parameters' ``.grad``),
  the unit of the ratios,
- one gradient by the operator (``op.gradient()``: ``torch.func.grad`` into a flat vector),
- one HVP by reverse-over-reverse (``hvp="double_backward"``),
- one HVP by forward-over-reverse (``hvp="forward"``),
- one generalized Gauss-Newton product (``GGNOperator``) with the output Hessian of the
  cross-entropy by autograd, and with its closed form on logits chunks
  (``causal_lm_output_hessian``, :mod:`flatscope.operators.output_hessian`),

runs in its own subprocess (one thread), after the operator is built, and reports its CPU seconds
and the memory it added at its peak (RSS on the CPU, ``torch.cuda.max_memory_allocated`` with
``--device cuda``; see ``benchmarks/_peak.py``). The table gives both ratios to the gradient.
The size of one float32 logits tensor (batch x seq_len x vocabulary) is printed for scale: the
cross-entropy part of the graph holds several tensors of that size.

    python benchmarks/memory_lm.py [--layers 4] [--batch 4] [--seq-len 64] [--device cpu]

Needs the transformers extra (``pip install "flatscope[transformers]"``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _peak import MIB, in_subprocess, measure  # noqa: E402

VOCAB, WIDTH, HEADS = 50257, 768, 12
MODES = (
    "backward",
    "gradient",
    "double_backward",
    "forward",
    "double_backward_lean",
    "forward_lean",
    "ggn_autograd",
    "ggn_closed_form",
)
LABELS = {
    "backward": "gradient, loss.backward()",
    "gradient": "gradient, op.gradient()",
    "double_backward": "HVP, hvp=double_backward",
    "forward": "HVP, hvp=forward",
    "double_backward_lean": "HVP, double_backward, lean CE",
    "forward_lean": "HVP, forward, lean CE",
    "ggn_autograd": "GGN, autograd H_out",
    "ggn_closed_form": "GGN, closed-form CE H_out",
}


def _operator(args: argparse.Namespace, mode: str):
    from transformers import GPT2Config, GPT2LMHeadModel

    from flatscope.models.hf import CausalLMLogits
    from flatscope.models.losses import build_loss
    from flatscope.operators import GGNOperator, HessianOperator, causal_lm_output_hessian

    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=VOCAB,
        n_embd=WIDTH,
        n_head=HEADS,
        n_layer=args.layers,
        n_positions=max(args.seq_len, 64),
    )
    device = torch.device(args.device)
    model = CausalLMLogits(GPT2LMHeadModel(config).eval()).to(device)
    ids = torch.randint(
        0, VOCAB, (args.batch, args.seq_len), generator=torch.Generator().manual_seed(1)
    )
    lean = mode.endswith("_lean")
    loss, data = build_loss(f"causal_lm:lean={str(lean).lower()}"), [(ids, ids)]
    if mode.startswith("ggn"):
        closed = causal_lm_output_hessian() if mode == "ggn_closed_form" else None
        return GGNOperator(model, loss, data, device=device, output_hessian=closed)
    hvp = mode.removesuffix("_lean")
    hvp = hvp if hvp in ("double_backward", "forward") else "double_backward"
    return HessianOperator(model, loss, data, device=device, hvp=hvp)


def worker(args: argparse.Namespace) -> None:
    """Measure one of MODES in this process and print the result as one JSON line."""
    torch.set_num_threads(1)
    mode = args.worker
    op = _operator(args, mode)
    if mode == "backward":
        (ids, labels), model = op.data[0], op.model

        def backward() -> None:
            op.loss_fn(model(ids.to(op.device)), labels.to(op.device)).backward()

        result = measure(backward, op.device)
    elif mode == "gradient":
        result = measure(op.gradient, op.device)
    else:
        v = torch.randn(op.shape[0], generator=torch.Generator().manual_seed(2)).to(op.device)
        result = measure(lambda: op @ v, op.device)
        # forward modes fall back when a rule is missing
        result["hvp_mode_used"] = getattr(op, "hvp_mode", getattr(op, "jacobian_mode", None))
    result["parameters"] = op.shape[0]
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    common = [
        f"--layers={args.layers}",
        f"--batch={args.batch}",
        f"--seq-len={args.seq_len}",
        f"--device={args.device}",
    ]
    results = {mode: in_subprocess(__file__, f"--worker={mode}", *common) for mode in MODES}
    logits_mib = args.batch * args.seq_len * VOCAB * 4 / MIB
    first = next((r for r in results.values() if "parameters" in r), {})
    print(
        f"GPT-2-shaped LM: vocabulary {VOCAB}, width {WIDTH}, {args.layers} layers, "
        f"{first.get('parameters', '?')} parameters "
        f"({4 * first.get('parameters', 0) / MIB:.0f} MiB in float32); batch {args.batch} x "
        f"{args.seq_len} tokens; one logits tensor {logits_mib:.0f} MiB; device {args.device}"
    )
    print(f"{'product':<30} {'CPU s':>8} {'peak MiB':>9} {'time/grad':>10} {'memory/grad':>12}")
    base = results["backward"]
    for mode in MODES:
        result = results[mode]
        if "error" in result:
            print(f"{LABELS[mode]:<30} failed: {result['error']}")
            continue
        label = LABELS[mode]
        wanted = mode.removesuffix("_lean")
        if result.get("hvp_mode_used", wanted) != wanted and wanted in (
            "double_backward",
            "forward",
        ):
            label += f" (ran {result['hvp_mode_used']})"
        if mode.startswith("ggn") and result.get("hvp_mode_used") != "forward":
            label += f" (ran {result['hvp_mode_used']})"
        ratios = ("", "")
        if "error" not in base:
            ratios = (
                f"{result['seconds'] / base['seconds']:.2f}",
                f"{result['peak_mib'] / base['peak_mib']:.2f}",
            )
        note = "" if result["how"] in ("rss", "cuda max_memory_allocated") else " (upper bound)"
        print(
            f"{label:<30} {result['seconds']:>8.2f} {result['peak_mib']:>9.0f} "
            f"{ratios[0]:>10} {ratios[1]:>12}{note}"
        )


if __name__ == "__main__":
    main()
