"""``hf:PATH`` models: tiny GPT-2 and LLaMA folders made here from configs (random weights, no
download), analysed through the command line; products against the dense float64 Hessian;
per-layer parameter selection; float32 analysis of bfloat16 weights; remote code only on request.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

transformers = pytest.importorskip("transformers")

from flatscope.cli import main  # noqa: E402
from flatscope.data import load_data  # noqa: E402
from flatscope.models import build_model, model_spec  # noqa: E402
from flatscope.models.losses import build_loss  # noqa: E402
from flatscope.models.specs import SpecError  # noqa: E402
from flatscope.operators import HessianOperator  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
VOCAB = 11
TEXT = "the cat sat on the mat and the dog sat on the log " * 6
WORDS = sorted(set(TEXT.split()))


def save_gpt2(folder: Path, dtype: torch.dtype = torch.float32) -> Path:
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=VOCAB, n_positions=8, n_embd=4, n_layer=1, n_head=2, bos_token_id=0,
        eos_token_id=0,
    )  # fmt: skip
    transformers.GPT2LMHeadModel(config).to(dtype).save_pretrained(folder)
    return folder


def save_tokenizer(folder: Path) -> None:
    """A word-level tokenizer over TEXT's words (ids 1..len(WORDS)), saved like a model's."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocabulary = {"[UNK]": 0, **{word: i + 1 for i, word in enumerate(WORDS)}}
    tokenizer = Tokenizer(models.WordLevel(vocabulary, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]")
    fast.save_pretrained(folder)


def save_llama(folder: Path) -> Path:
    torch.manual_seed(1)
    config = transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=4, intermediate_size=6, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=16,
        bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    transformers.LlamaForCausalLM(config).save_pretrained(folder)
    save_tokenizer(folder)
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf")
    ids = np.random.default_rng(0).integers(1, VOCAB, size=(6, 7))
    ids[1, 5:] = 0  # right padding (pad_id 0)
    ids[4, 3:] = 0
    np.save(root / "ids.npy", ids)
    (root / "text.txt").write_text(TEXT)
    return {
        "gpt2": save_gpt2(root / "gpt2"),
        "llama": save_llama(root / "llama"),
        "ids": root / "ids.npy",
        "text": root / "text.txt",
    }


def reference_loss(model, batches):
    """The mean next-token loss over all batches, written independently of ``causal_lm``:
    log-softmax of the HF model's own logits, gathered, masked, averaged per batch and weighted
    by the batch's number of sequences (the operator's convention)."""
    raw = model.wrapped
    names = [name for name, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    total = sum(len(x) for x, _ in batches)

    def loss(weights: torch.Tensor) -> torch.Tensor:
        pieces = torch.split(weights, [s.numel() for s in shapes])
        tensors = {n: w.view(s) for n, w, s in zip(names, pieces, shapes, strict=True)}
        value = 0
        for inputs, labels in batches:
            logits = torch.func.functional_call(raw, tensors, (inputs,)).logits
            log_p = torch.log_softmax(logits[:, :-1], dim=-1)
            target = labels[:, 1:]
            real = target != -100
            picked = log_p.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            value = value - (picked * real).sum() / real.sum() * len(inputs)
        return value / total

    return loss


def dense_hessian(model, batches) -> torch.Tensor:
    """torch.autograd.functional.hessian of the reference loss (math attention kernel: the
    fused kernels have no second derivatives)."""
    weights = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    with sdpa_kernel(SDPBackend.MATH):
        return torch.autograd.functional.hessian(
            reference_loss(model, batches), weights, vectorize=True
        )


@pytest.mark.parametrize(
    ("hvp", "loss"),
    [
        ("double_backward", "causal_lm"),
        ("forward", "causal_lm"),
        ("double_backward", "causal_lm:lean=true"),
        ("batched_double_backward", "causal_lm:lean=true"),
        ("forward", "causal_lm:lean=true"),
    ],
)
def test_gpt2_products_are_the_dense_float64_hessian(folders, hvp, loss):
    model = build_model(f"hf:{folders['gpt2']},dtype=float64")
    batches = load_data(f"tokens:{folders['ids']},pad_id=0", batch_size=4).batches()
    assert [len(x) for x, _ in batches] == [4, 2]  # unequal batches, padded rows in both
    op = HessianOperator(model, build_loss(loss), batches, hvp=hvp)
    H = dense_hessian(model, batches)
    assert op.shape == H.shape == (328, 328)  # lm_head is tied to wte: one parameter
    V = torch.randn(328, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(op @ V, H @ V, rtol=1e-10, atol=1e-12)
    weights = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    torch.testing.assert_close(op.loss(), float(reference_loss(model, batches)(weights)))


def flatscope_command(*argv: str) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "flatscope", *argv],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def block_hessian(H: torch.Tensor, model, prefix: str) -> tuple[torch.Tensor, list[str]]:
    names, index, start = [], [], 0
    for name, p in model.named_parameters():
        if name.startswith(prefix):
            names.append(name)
            index += range(start, start + p.numel())
        start += p.numel()
    index = torch.tensor(index)
    return H[index][:, index], names


def check_report_against_dense(report: dict, H_block: torch.Tensor, names: list[str]) -> None:
    """Per-block names are the layer's; each top Ritz value lies within its residual of an
    eigenvalue of the dense block; the trace lies within 4 standard errors."""
    trace = report["metrics"]["hessian_trace"]
    assert list(trace["per_block"]) == names
    exact = torch.linalg.eigvalsh((H_block + H_block.T) / 2)
    top = report["metrics"]["top_eigenvalues"]
    for value, residual in zip(top["values"], top["residuals"], strict=True):
        assert float((exact - value).abs().min()) <= residual + 1e-9
    assert abs(trace["value"] - float(H_block.trace())) <= 4 * trace["stderr"]


ANALYSIS = [
    "--loss", "causal_lm", "--dtype", "float64", "--metrics", "trace,eigenvalues",
    "--num-matvecs", "8", "--top-k", "2", "--eig-tol", "1e-6", "--eig-max-matvecs", "40",
    "--subset", "all", "--quiet", "--no-figures",
]  # fmt: skip


def test_gpt2_folder_through_the_command_line(folders, tmp_path):
    """`flatscope analyze FOLDER --model hf:FOLDER` in a subprocess, one transformer layer."""
    gpt2, out = folders["gpt2"], tmp_path / "out"
    running = flatscope_command(
        "analyze", str(gpt2), "--model", f"hf:{gpt2}", "--data",
        f"tokens:{folders['ids']},pad_id=0", "--params", "transformer.h.0.*", "--out", str(out),
        *ANALYSIS,
    )  # fmt: skip
    model = build_model(f"hf:{gpt2},dtype=float64")
    batches = load_data(f"tokens:{folders['ids']},pad_id=0").batches()
    H_block, names = block_hessian(dense_hessian(model, batches), model, "transformer.h.0.")
    stdout, stderr = running.communicate(timeout=600)
    assert running.returncode == 0, stderr
    assert "model hf:path=" in stdout and "dtype=float32" in stdout
    report = json.loads((out / "report.json").read_text())
    assert report["checkpoint"]["layout"] == "safetensors-folder"
    assert report["model"] == f"hf:path={gpt2},dtype=float32"
    assert report["data"]["num_samples"] == 6
    check_report_against_dense(report, H_block, names)


def test_llama_layer_on_a_text_file_in_process(folders, tmp_path):
    """The LLaMA weights file as CKPT, a text file tokenized by the folder's tokenizer,
    `--params 'model.layers.0.*'`."""
    llama, out = folders["llama"], tmp_path / "out"
    data = f"text:{folders['text']},tokenizer={llama},seq_len=8,stride=6"
    argv = [
        "analyze", str(llama / "model.safetensors"), "--model", f"hf:{llama}", "--data", data,
        "--params", "model.layers.0.*", "--out", str(out), *ANALYSIS,
    ]  # fmt: skip
    assert main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    model = build_model(f"hf:{llama},dtype=float64")
    batches = load_data(data).batches()
    assert report["data"]["num_samples"] == len(batches[0][0]) == 12  # 78 tokens, windows of 8
    H_block, names = block_hessian(dense_hessian(model, batches), model, "model.layers.0.")
    assert names and all(".layers.0." in name for name in names)
    check_report_against_dense(report, H_block, names)


def test_text_windows_follow_seq_len_and_stride(folders):
    bundle = load_data(f"text:{folders['text']},tokenizer={folders['llama']},seq_len=5,stride=3")
    inputs, labels = bundle.dataset.tensors
    stream = [WORDS.index(word) + 1 for word in TEXT.split()]
    assert inputs.tolist() == [stream[s : s + 5] for s in range(0, len(stream) - 4, 3)]
    assert torch.equal(inputs, labels)


def test_bfloat16_weights_are_analysed_in_float32_unless_asked(tmp_path):
    folder = save_gpt2(tmp_path / "bf16", torch.bfloat16)
    stored = build_model(f"hf:{folder},dtype=auto")
    default = build_model(f"hf:{folder}")
    assert {p.dtype for p in stored.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in default.parameters()} == {torch.float32}
    for p, q in zip(stored.parameters(), default.parameters(), strict=True):
        assert torch.equal(p.float(), q)
    assert model_spec(f"hf:{folder}").endswith(",dtype=float32")


def test_wrapper_keeps_names_and_ties(folders):
    model = build_model(f"hf:{folders['gpt2']}")
    names = [name for name, _ in model.named_parameters()]
    assert names == [name for name, _ in model.wrapped.named_parameters()]
    assert "lm_head.weight" in model.state_dict()  # the tied alias, as in the HF state_dict
    assert model.lm_head.weight is model.transformer.wte.weight
    model.train()
    assert model.wrapped.training and model.transformer.training
    model.eval()
    assert not model.wrapped.training


def test_token_ids_outside_the_vocabulary_are_a_clear_error(folders):
    model = build_model(f"hf:{folders['gpt2']}")
    with pytest.raises(ValueError, match=r"token ids must lie in 0..10"):
        model(torch.tensor([[1, 2, VOCAB]]))


def test_trust_remote_code_is_not_a_spec_value(folders):
    with pytest.raises(SpecError, match="trust_remote_code is set by flatscope, not the spec"):
        build_model(f"hf:{folders['gpt2']},trust_remote_code=true")


def remote_code_folder(folder: Path, marker: Path) -> Path:
    """A folder whose config asks for its own Python code, which would create ``marker``."""
    folder.mkdir()
    code = f"open({str(marker)!r}, 'w').close()\n"
    (folder / "configuration_evil.py").write_text(code)
    (folder / "modeling_evil.py").write_text(code)
    config = {
        "model_type": "evil",
        "architectures": ["EvilModel"],
        "auto_map": {
            "AutoConfig": "configuration_evil.EvilConfig",
            "AutoModelForCausalLM": "modeling_evil.EvilModel",
        },
    }
    (folder / "config.json").write_text(json.dumps(config))
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(1)}, str(folder / "model.safetensors"))
    return folder


def test_remote_code_does_not_run_without_the_flag(tmp_path, folders, capsys):
    marker = tmp_path / "code-ran"
    folder = remote_code_folder(tmp_path / "evil", marker)
    argv = [
        "analyze", str(folder), "--model", f"hf:{folder}", "--data", f"tokens:{folders['ids']}",
        "--loss", "causal_lm", "--out", str(tmp_path / "out"),
    ]  # fmt: skip
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert "pass --trust-remote-code" in error and error.count("\n") == 1
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


def test_the_flag_reaches_from_pretrained(folders, tmp_path, monkeypatch):
    seen = []
    load = transformers.AutoModelForCausalLM.from_pretrained

    def recording(*args, **kwargs):
        seen.append(kwargs["trust_remote_code"])
        return load(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", recording)
    gpt2 = folders["gpt2"]
    argv = ["analyze", str(gpt2), "--model", f"hf:{gpt2}", "--data", f"tokens:{folders['ids']}",
            "--loss", "causal_lm", "--metrics", "trace", "--num-matvecs", "4", "--quiet",
            "--no-figures"]  # fmt: skip
    assert main([*argv, "--out", str(tmp_path / "a")]) == 0
    assert main([*argv, "--out", str(tmp_path / "b"), "--trust-remote-code"]) == 0
    assert seen == [False, True]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda folder: None, "holds no config.json"),
        (lambda folder: (folder / "config.json").write_text("{}"), "holds no .safetensors"),
    ],
)
def test_folders_that_cannot_be_models_exit_2(tmp_path, folders, capsys, make, message):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "pytorch_model.bin").write_bytes(b"\x80")
    make(folder)
    ckpt = folders["gpt2"] / "model.safetensors"
    argv = ["analyze", str(ckpt), "--model", f"hf:{folder}", "--data", f"tokens:{folders['ids']}",
            "--loss", "causal_lm", "--out", str(tmp_path / "out")]  # fmt: skip
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_without_transformers_the_error_says_how_to_install(folders, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(SpecError, match=r'pip install "flatscope\[transformers\]"'):
        build_model(f"hf:{folders['gpt2']}")
