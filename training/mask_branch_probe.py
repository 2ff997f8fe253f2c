"""Where does a trained 3D model lose the contact: in the language model's seg state, or in the mask branch after it?

Three numbers per SynthContact split, all teacher-forced with the conversation the model was trained on (so the
answer text is right and only the seg path is measured), all semantic F1 per (image, object) pair:

* **mask branch**: the model's own prediction (``text_hidden_fcs`` → camera gates → SAM decoder → lifting);
* **linear probe**: a per-vertex logistic regression fitted on the *same* seg hidden states of training pairs, i.e.
  how much of the contact the state that predicts the seg token carries, readable by the simplest decoder there is;
* **lifted ground truth**: the ground-truth view masks lifted by the model's own pixel→vertex maps, the ceiling of
  any decoder that has to go through the V renders.

A mask branch far below the probe means the seg state knows the contact and the decoder does not render it (what
this was written for: the bundled tiny models, 0.30 against a probe's 0.77 on seen combinations). The probe is
fitted here, not by the code under test, and the lifted ground truth uses only the label files, so neither number
depends on what the mask branch learned.

``python -m training.mask_branch_probe --model-dir trained_models/interactvlm-tiny-synthcontact \\
trained_models/interactvlm-tiny-synthcontact-opening --eval-dir data/synthcontact_eval --output docs/mask_branch_probe.md``
"""

from __future__ import annotations

import argparse
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from datasets.collate import Collator
from model.io import load_interactvlm
from training.batches import model_inputs
from training.synthcontact_report import human_dataset
from utils.metrics import deco_prf
from utils.paths import REPO_ROOT

HUMAN_SOURCE = "synthcontact_hcontact"


@dataclass
class SegStates:
    """Teacher-forced seg hidden states of N pairs and what the mask branch made of them."""

    hidden: np.ndarray  # [N, H] input of text_hidden_fcs
    labels: np.ndarray  # [N, V_body] ground-truth vertex contact
    branch_probs: np.ndarray  # [N, V_body] the model's lifted prediction
    lifted_truth: np.ndarray  # [N, V_body] the ground-truth view masks through the model's lifting


def trained_answer_template(model_dir: Path) -> str | None:
    """The human answer template of the recipe in ``training_config.json`` (None: the dataset's default answers)."""
    path = Path(model_dir) / "training_config.json"
    if not path.is_file():
        return None
    for source in json.loads(path.read_text()).get("train", []):
        if source.get("name") == HUMAN_SOURCE and "answer_template" in source.get("options", {}):
            return source["options"]["answer_template"]
    return None


def human_pairs(model, data_dir: Path, split: str, answer_template: str | None):
    """The split's human pairs in the conversation ``model`` was trained on."""
    return human_dataset(model, data_dir, split, answer_template=answer_template, opening_turn=model.config.opening_turn,
                         opening_parts=model.config.opening_parts)


def pick(dataset, count: int, seed: int, for_training: bool) -> list[int]:
    """``count`` pair indices: for fitting the probe, a random draw over every class (``supporting`` too); for
    scoring, evenly spaced over the split without ``supporting``, as the report scores."""
    indices = [i for i, r in enumerate(dataset.records) if for_training or r.class_name != "supporting"]
    if for_training:
        return [int(i) for i in np.random.default_rng(seed).permutation(indices)[:count]]
    return indices[:: max(1, len(indices) // max(count, 1))][:count]


@torch.no_grad()
def seg_states(model, tokenizer, dataset, indices: list[int], batch_size: int = 8, desc: str = "") -> SegStates:
    """One teacher-forced forward per batch; the hidden states are taken where ``text_hidden_fcs`` reads them."""
    collate = Collator(tokenizer, model.config, training=False)
    template = model.template("human")
    grabbed: list[torch.Tensor] = []
    hook = model.text_hidden_fcs.register_forward_pre_hook(lambda _m, args: grabbed.append(args[0].detach().clone()))
    hidden, labels, branch, lifted = [], [], [], []
    try:
        for start in tqdm(range(0, len(indices), batch_size), desc=desc or "seg states", leave=False):
            batch = [dataset[i] for i in indices[start:start + batch_size]]
            grabbed.clear()
            out = model(**model_inputs(model, collate(batch)))
            if out.vertex_probs is None or len(grabbed) != 1 or len(grabbed[0]) != len(batch):
                raise RuntimeError(f"{dataset.describe()}: expected one seg token per sample in every batch")
            hidden.append(grabbed[0].float().numpy())
            branch += [model.decision_centred(p, template).float().numpy() for p in out.vertex_probs]
            truth = torch.stack([torch.as_tensor(np.asarray(s["masks"]), dtype=torch.float32).clamp(min=0) for s in batch])
            lifted.append(template.lift(torch.logit(truth.clamp(1e-4, 1 - 1e-4))).float().numpy())
            labels += [np.asarray(s["vertex_labels"], np.float32) for s in batch]
    finally:
        hook.remove()
    return SegStates(np.concatenate(hidden), np.stack(labels), np.stack(branch), np.concatenate(lifted))


def fit_linear_probe(hidden: np.ndarray, labels: np.ndarray, epochs: int = 60, seed: int = 0):
    """Per-vertex logistic regression on standardised seg states (Adam, full BCE); returns ``hidden → probs``."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(hidden).float()
    y = torch.from_numpy(labels).float()
    mean, std = x.mean(0), x.std(0) + 1e-4
    probe = torch.nn.Linear(x.shape[1], y.shape[1])
    optimiser = torch.optim.Adam(probe.parameters(), lr=1e-3)
    for _ in range(epochs):
        for batch in torch.randperm(len(x), generator=generator).split(64):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(probe((x[batch] - mean) / std), y[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()

    @torch.no_grad()
    def predict(states: np.ndarray) -> np.ndarray:
        return torch.sigmoid(probe((torch.from_numpy(states).float() - mean) / std)).numpy()

    return predict


def semantic_f1(probs: np.ndarray, labels: np.ndarray, threshold: float = 0.5) -> float:
    return float(deco_prf((probs > threshold).astype(np.float64), (labels > 0.5).astype(np.float64))["f1"].mean())


def distinct_masks(probs: np.ndarray) -> int:
    return len({row.tobytes() for row in probs > 0.5})


def run(model_dir: Path, eval_dir: Path, train_dir: Path, train_pairs: int, test_pairs: int, seed: int = 0) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model, tokenizer = load_interactvlm(model_dir, device="cpu")
    model.eval()
    answer = trained_answer_template(model_dir)
    train = human_pairs(model, train_dir, "train", answer)
    fitted = seg_states(model, tokenizer, train, pick(train, train_pairs, seed, for_training=True), desc="train")
    probe = fit_linear_probe(fitted.hidden, fitted.labels, seed=seed)
    results = {"model_dir": str(model_dir), "answer_template": answer, "train_pairs": len(fitted.labels), "splits": {}}
    for split in ("test", "test_heldout"):
        dataset = human_pairs(model, eval_dir, split, answer)
        states = seg_states(model, tokenizer, dataset, pick(dataset, test_pairs, seed, for_training=False), desc=split)
        results["splits"][split] = {
            "pairs": len(states.labels),
            "mask_branch": semantic_f1(states.branch_probs, states.labels),
            "linear_probe": semantic_f1(probe(states.hidden), states.labels),
            "lifted_truth": semantic_f1(states.lifted_truth, states.labels),
            "mask_branch_distinct": distinct_masks(states.branch_probs),
            "truth_distinct": distinct_masks(states.labels),
        }
    return results


def markdown(all_results: list[dict]) -> str:
    """One table over the models: each teacher-forced with its own training answers, probe fitted per model."""
    lines = ["Teacher-forced with each model's training answers; the probe is fitted on each model's seg states of "
             f"{all_results[0]['train_pairs']} training pairs. Semantic F1 per pair at 0.5 (`supporting` excluded).", "",
             "| model | split | pairs | mask branch | linear probe on the seg state | lifted ground-truth masks "
             "| distinct masks (branch / truth) |", "|---|---|---|---|---|---|---|"]
    for results in all_results:
        name = Path(results["model_dir"]).name
        for split, row in results["splits"].items():
            lines.append(f"| {name} | {split} | {row['pairs']} | {row['mask_branch']:.3f} | {row['linear_probe']:.3f} | "
                         f"{row['lifted_truth']:.3f} | {row['mask_branch_distinct']} / {row['truth_distinct']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, nargs="+",
                        default=[REPO_ROOT / "trained_models" / "interactvlm-tiny-synthcontact"])
    parser.add_argument("--eval-dir", type=Path, required=True, help="dataset dir holding synthcontact/ (unseen seed)")
    parser.add_argument("--train-dir", type=Path, default=REPO_ROOT / "data", help="dataset dir of the training data")
    parser.add_argument("--train-pairs", type=int, default=2400)
    parser.add_argument("--test-pairs", type=int, default=120)
    parser.add_argument("--output", type=Path, default=None, help="markdown file (a .json with the numbers beside it)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = [run(d, args.eval_dir, args.train_dir, args.train_pairs, args.test_pairs) for d in args.model_dir]
    text = markdown(results)
    print(text)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
        args.output.with_suffix(".json").write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
