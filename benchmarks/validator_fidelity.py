"""How the validator-condition numbers change now that they follow the published validator (issue 12).

For the demo bundle (``make demo`` builds it; this script runs the demo's phases itself if it is missing) on the
demo run's test split: MCC and accuracy per challenge level under the previous, description-based transforms and
under :func:`streetvision.validator.challenges` (the published arithmetic, JPEG wire included), and the simulated
validator stream (labels 50/50, levels as published, (0.5 MCC(100) + 0.5 acc(10))^3 per step).

    .venv/bin/python benchmarks/validator_fidelity.py [--steps 1000]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _previous_transforms import previous_challenge  # noqa: E402
from _report import report  # noqa: E402

from streetvision import Predictor  # noqa: E402
from streetvision.data.splits import load_splits  # noqa: E402
from streetvision.eval.evaluate import load_labelled_images  # noqa: E402
from streetvision.metrics.classification import metrics_from_decisions  # noqa: E402
from streetvision.validator.challenges import LEVELS, challenge  # noqa: E402
from streetvision.validator.stream import simulate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEMO_RUN = ROOT / "outputs" / "stage1_ultimate" / "runs" / "demo"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    bundle = DEMO_RUN / "export" / "bundle"
    if not (bundle / "bundle.json").is_file():
        subprocess.run([sys.executable, "-m", "streetvision.cli", "run", "run_id=demo",
                        "pipeline.phases=[phase4,phase1,phase2,phase5,phase6]"], check=True, cwd=ROOT)
    splits = load_splits(DEMO_RUN / "splits.json")
    images, labels, _ = load_labelled_images(list(zip(splits.paths("test"), splits.labels("test"))))
    predictor = Predictor.from_bundle(bundle)
    rows = []
    for level in LEVELS:
        for name, make in (("previous", lambda im, rng, lv=level: previous_challenge(im, lv, rng)),
                           ("published", lambda im, rng, lv=level: challenge(im, rng, level=lv)[0])):
            distorted = [make(im, np.random.default_rng([args.seed, i, level])) for i, im in enumerate(images)]
            m = metrics_from_decisions(labels, predictor.scores(distorted) > 0.5)
            rows.append({"level": level, "transforms": name, "images": len(labels), "mcc": m["mcc"],
                         "accuracy": m["accuracy"], "reward": m["reward"]})
    stream = simulate(predictor.scores, images, labels, args.steps, args.seed)["summary"]
    ci = stream["mean_reward_ci"]
    rows.append({"level": "stream", "transforms": "published", "images": len(labels), "mcc": stream["mcc"],
                 "accuracy": stream["accuracy"], "reward": stream["mean_reward"]})
    notes = (f"Demo bundle on the demo run's test split ({len(labels)} images, P(roadwork) "
             f"{labels.mean():.2f}). reward = (0.5 MCC + 0.5 accuracy)^3 at the split's own balance. Stream: "
             f"{stream['steps']} challenges, labels 50/50, levels as published: mean reward "
             f"{stream['mean_reward']:.3f} [{ci['low']:.3f}, {ci['high']:.3f}] ({ci['method']}), p5 "
             f"{stream['p5']:.3f}, p50 {stream['p50']:.3f}, p95 {stream['p95']:.3f}; by level "
             f"{stream['mean_reward_by_level']}.")
    report("validator_fidelity", rows, notes)


if __name__ == "__main__":
    main()
