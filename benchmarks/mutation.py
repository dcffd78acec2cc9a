"""How many plausible one-line bugs in the core modules would the fast tests catch? (``make mutation``)

Mutation testing with mutmut 3, one module at a time, each against only the fast tests that cover it (listed in
MODULES; no test that trains a model, so each mutant costs its tests' seconds). For each module a scratch
directory ``build/mutation/<module>/`` gets a pyproject.toml that limits mutmut to that file and those tests;
mutmut copies ``src/`` there, rewrites every function of the module into its mutants, collects which tests call
which function, then runs, for each mutant, only the tests that reach it (in a process forked from one that has
already imported torch). Results go to ``benchmarks/results/mutation.json``: killed / survived / timeout / no
tests per module, the survivors with their diffs, and the equivalent mutants (EQUIVALENT) excluded from the score
with the reason each cannot change behaviour. A module not run keeps its previous entry (marked with its date).

    .venv/bin/python benchmarks/mutation.py                       # every module
    .venv/bin/python benchmarks/mutation.py metrics.classification io.atomic   # some of them

Why mutmut: it forks each mutant's test run from a process that has already imported the tests (torch,
transformers, sklearn take seconds to import; cosmic-ray and pytest-gremlins start a fresh interpreter per
mutant) and runs only the tests that call the mutated function, which is what makes ~1,000 mutants fit on 2
cores; it is maintained (3.x, 2026) and needs no service (cosmic-ray's distributed mode needs a broker).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "mutation.json"
WORK = ROOT / "build" / "mutation"

# module (under src/streetvision) -> the fast tests that cover it (paths or node-id prefixes; "-k" filters allowed)
MODULES: dict[str, list[str]] = {
    "metrics.classification": ["tests/metrics/test_metrics.py", "tests/metrics/test_calibration_selective.py"],
    "metrics.thresholds": ["tests/metrics/test_thresholds.py", "tests/metrics/test_calibration_selective.py",
                           "tests/validator/test_reward.py"],
    "metrics.calibration": ["tests/metrics/test_calibration_selective.py"],
    "metrics.selective": ["tests/metrics/test_calibration_selective.py"],
    "metrics.policy": ["tests/metrics/test_policy.py", "tests/metrics/test_calibration_selective.py",
                       "tests/bundle/test_predictor_policy.py"],
    "models.temperature": ["tests/metrics/test_calibration_selective.py"],
    "data.splits": ["tests/data/test_splits.py", "-k", "not real_data and not training_still_runs"],
    "pipeline.runner": ["tests/pipeline/test_runner.py", "tests/pipeline/test_phase_slices.py", "-k",
                        "not reruns_that_phase and not no_planned_phase"],
    "pipeline.registry": ["tests/pipeline/test_registry.py", "tests/pipeline/test_runner.py",
                          "tests/pipeline/test_phase_slices.py", "-k", "not reruns_that_phase and not no_planned_phase"],
    "io.manifest": ["tests/io/test_manifest.py", "tests/pipeline/test_runner.py"],
    "io.atomic": ["tests/io/test_atomic.py"],
    "bundle.schema": ["tests/bundle/test_schema.py"],
    "bundle.verify": ["tests/bundle/test_verify.py"],
    "bundle.predictor": ["tests/bundle/test_predictor_policy.py"],
    "validator.reward": ["tests/validator/test_reward.py"],
    "validator.prior": ["tests/validator/test_reward.py"],
    "validator.challenges": ["tests/validator/test_challenge.py"],  # test_torchvision_parity.py skips on CPU torch
    "validator.distortions": ["tests/validator/test_distortions.py"],
    "validator.stream": ["tests/validator/test_stream.py", "-k", "not simulate_command"],  # that one trains
}
# Only these functions of a module are mutated (mutmut name globs); the rest need a trained model to be tested.
ONLY = {"bundle.predictor": ["streetvision.bundle.predictor.xǁPredictorǁpredict_tensor*",
                             "streetvision.bundle.predictor.xǁPredictorǁ__call__*",
                             "streetvision.bundle.predictor.xǁPredictorǁscores*",
                             "streetvision.bundle.predictor.xǁPredictorǁpredict_batch*"]}

# Mutants that cannot change behaviour: name -> (the mutated line, as ``mutmut show`` prints it after "+", and why).
# A listed mutant whose line no longer matches (the code moved) is counted normally again.
_DTYPE = "numpy's default gives the same values here: every input is numeric and the result is compared or summed"
_SUFFIX = ("the sum of the weights of the values >= t is the same whichever order a sort leaves equal values "
           "in")
_LINUX_UTF8 = ("on Linux, the platform the project supports, Python's default text encoding is UTF-8 (PEP 538 and 540 "
               "coerce the C locale)")
_NO_NAN_LEFT = "allow_nan=False is a second guard: _json_safe has already replaced every non-finite float by None"
_ARGMAX = "labels are 0 or 1: the majority label is the same whatever the bincount's length"
_MAGIC = "the check is startswith() of magic numbers of at most 4 bytes: reading more changes nothing"
_SHORT = "a file under 8 bytes has no room for a header: refused whatever length is read"
_LBFGS_TOL = ("LBFGS stops at its gradient tolerance (1e-7), which leaves T known to about 1e-6 relative; one more "
              "iteration allowed, a float32 log T (7 digits) or another first step of the strong-Wolfe line search "
              "reach the same optimum within that, which is all a fit can promise (the tests compare it with an "
              "independent optimum)")
_NOT_JSON = "an empty or non-JSON header fails json.loads, which is caught and refused the same way"
_NONE_ACCEPTED = "with no threshold nothing is accepted: the mask is never used to index (k = 0)"
_BLOCKS = ("equal confidences are accepted or refused together (conf >= lambda), so the errors counted at each "
           "lambda do not depend on their order")
_EMPTY_UNTESTED = "the count at 0 accepted images is never tested: a certificate needs at least n_min >= 1 images"
_CASE = "numpy reads the sort kind case-insensitively: still the stable mergesort"
_DIRTY = "the status output is only tested for emptiness: bytes or str, the same answer"
_COUNTER = "only whether the count of hashes since the last save is zero is ever read"
_KEYNAME = ("the key only names the fingerprint inside the hashed slice: any fixed name gives the same "
            "up-to-date decisions")
_STABLE = "tied scores get the average rank of their whole block, so the order a sort leaves them in is irrelevant"
_INTEGERS = "Generator.integers(n) draws from [0, n) exactly as integers(0, n): the same values, the same state after"
_TORCH_F32 = "torch's default dtype is float32 (nothing in the project changes it)"
_BOTH_SIDES = "the other half of the condition still requires side > 0"
_INTERP = "interpolate reads align_corners=None as False for bilinear, without a warning"
_RATIO = "rates_from_counts, the only caller, passes float64 arrays already"
_ASTYPE_NONE = "astype(None) is astype(float64)"
_PROBS64 = ("labels are integers, so p - y is float64 whatever p's float type, and reliability, top_label and nll "
            "convert p to float64 themselves")
_RANKS = "ranks depend only on the order and the ties of the scores, which a float64 cast keeps"
_ZERO_OVER_ZERO = ("with one class the rank sum is exactly n_pos (n_pos + 1) / 2: the numerator is 0 wherever the "
                   "denominator is, so there is no division by zero to silence, only 0/0")
_NAN_ALREADY = "a one-class row is 0/0 = NaN already: the mask only restates it"
_DEN_SHAPE = ("every denominator in rates_from_counts involves the counts of its numerator, so the broadcast shape "
              "is the denominator's")
_PROMOTED = ("the logits are first divided by a float64 tensor: torch promotes them to float64, exactly as the cast "
             "would")
EQUIVALENT: dict[str, tuple[str, str]] = {
    "streetvision.metrics.classification.x_nll__mutmut_17": (
        "y = np.asarray(labels).astype(None)", "labels are 0/1: as floats they are just as true or false in np.where"),
    "streetvision.metrics.classification.x__ratio__mutmut_3": (
        "num, den = np.asarray(num, dtype=None), np.asarray(den, dtype=np.float64)", _RATIO),
    "streetvision.metrics.classification.x__ratio__mutmut_5": (
        "num, den = np.asarray(num, ), np.asarray(den, dtype=np.float64)", _RATIO),
    "streetvision.metrics.classification.x__ratio__mutmut_7": (
        "num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=None)", _RATIO),
    "streetvision.metrics.classification.x__ratio__mutmut_9": (
        "num, den = np.asarray(num, dtype=np.float64), np.asarray(den, )", _RATIO),
    "streetvision.metrics.calibration.x_reliability__mutmut_4": (
        "correct = (pred == np.asarray(labels)).astype(None)", _ASTYPE_NONE),
    "streetvision.metrics.calibration.x_calibration_metrics__mutmut_5": ("p = np.asarray(probs, dtype=None)", _PROBS64),
    "streetvision.metrics.calibration.x_calibration_metrics__mutmut_7": ("p = np.asarray(probs, )", _PROBS64),
    "streetvision.metrics.calibration.x_ece_along_last_axis__mutmut_4": (
        "correct = (pred == np.asarray(labels)).astype(None)", _ASTYPE_NONE),
    "streetvision.metrics.calibration.x_ece_along_last_axis__mutmut_23": (
        'gap = np.abs(np.einsum("...NB,...N->...B", onehot, correct - conf))',
        "einsum subscripts are only labels: upper-case letters name the same axes"),
    "streetvision.metrics.classification.x_auroc_along_last_axis__mutmut_16": (
        "n_pos, n_neg = y.sum(-1).astype(None), (~y).sum(-1).astype(np.float64)", _ASTYPE_NONE),
    "streetvision.metrics.classification.x_auroc_along_last_axis__mutmut_20": (
        "n_pos, n_neg = y.sum(-1).astype(np.float64), (~y).sum(-1).astype(None)", _ASTYPE_NONE),
    "streetvision.metrics.classification.x_auroc_along_last_axis__mutmut_10": (
        "ranks = rankdata(np.asarray(scores, dtype=None), axis=-1)", _RANKS),
    "streetvision.metrics.classification.x_auroc_along_last_axis__mutmut_12": (
        "ranks = rankdata(np.asarray(scores, ), axis=-1)", _RANKS),
    "streetvision.metrics.classification.x_auroc_along_last_axis__mutmut_26": (
        'with np.errstate(invalid="ignore", divide=None):', _ZERO_OVER_ZERO),
    "streetvision.metrics.classification.x_auroc_along_last_axis__mutmut_28": (
        'with np.errstate(invalid="ignore", ):', _ZERO_OVER_ZERO),
    "streetvision.metrics.classification.x_auroc_along_last_axis__mutmut_52": (
        "return np.where((n_pos > 0) | (n_neg > 0), value, np.nan)", _NAN_ALREADY),
    "streetvision.metrics.classification.x_auroc_along_last_axis__mutmut_53": (
        "return np.where((n_pos >= 0) & (n_neg > 0), value, np.nan)", _NAN_ALREADY),
    "streetvision.metrics.classification.x_auroc_along_last_axis__mutmut_55": (
        "return np.where((n_pos > 0) & (n_neg >= 0), value, np.nan)", _NAN_ALREADY),
    "streetvision.metrics.classification.x__ratio__mutmut_19": (
        "return np.divide(num, den, out=np.zeros(np.broadcast(None, den).shape), where=den != 0)", _DEN_SHAPE),
    "streetvision.metrics.classification.x__ratio__mutmut_21": (
        "return np.divide(num, den, out=np.zeros(np.broadcast(den).shape), where=den != 0)", _DEN_SHAPE),
    "streetvision.metrics.calibration.x_bin_index__mutmut_13": (
        'return np.clip(np.searchsorted(edges, confidence, side="right") - 1, None, n_bins - 1)',
        "a confidence is >= 0 = edges[0], so searchsorted(side='right') - 1 is never below 0"),
    "streetvision.models.temperature.x_fit_temperature__mutmut_4": (
        "z = torch.as_tensor(np.asarray(logits), dtype=None)", _PROMOTED),
    "streetvision.models.temperature.x_fit_temperature__mutmut_6": ("z = torch.as_tensor(np.asarray(logits), )", _PROMOTED),
    "streetvision.models.temperature.x_fit_temperature__mutmut_1": (
        "def fit_temperature(logits: np.ndarray, labels: np.ndarray, max_iter: int = 201) -> float:", _LBFGS_TOL),
    "streetvision.models.temperature.x_fit_temperature__mutmut_16": (
        "log_t = torch.zeros(1, dtype=None, requires_grad=True)", _LBFGS_TOL),
    "streetvision.models.temperature.x_fit_temperature__mutmut_19": (
        "log_t = torch.zeros(1, requires_grad=True)", _LBFGS_TOL),
    "streetvision.models.temperature.x_fit_temperature__mutmut_29": (
        'opt = torch.optim.LBFGS([log_t], max_iter=max_iter, line_search_fn="strong_wolfe")', _LBFGS_TOL),
    "streetvision.models.temperature.x_fit_temperature__mutmut_32": (
        'opt = torch.optim.LBFGS([log_t], lr=1.5, max_iter=max_iter, line_search_fn="strong_wolfe")', _LBFGS_TOL),
    "streetvision.validator.challenges.x_base__mutmut_24": (
        "return img if (img.size == (size, size)) and False else img.resize((size, size), Image.BILINEAR)",
        "Pillow's resize to the image's own size returns a copy: the shortcut only saves the call"),
    "streetvision.validator.challenges.x_challenge__mutmut_82": ("kind_level = int(rng.integers(highest + 1))",
                                                                _INTEGERS),
    "streetvision.validator.challenges.x_check_level_probs__mutmut_16": (
        "if len(probs) != len(LEVELS) or any(p < 0 for p in probs) or not math.isclose(sum(probs), 1.0, ):",
        "math.isclose's default rel_tol is 1e-09"),
    "streetvision.validator.challenges.x_crop_params__mutmut_11": (
        "if 0 <= side <= width and 0 < side <= height:", _BOTH_SIDES),
    "streetvision.validator.challenges.x_crop_params__mutmut_14": (
        "if 0 < side <= width and 0 <= side <= height:", _BOTH_SIDES),
    "streetvision.validator.challenges.x_crop_params__mutmut_19": (
        "return int(rng.integers(height - side + 1)), int(rng.integers(0, width - side + 1)), side, side", _INTEGERS),
    "streetvision.validator.challenges.x_crop_params__mutmut_28": (
        "return int(rng.integers(0, height - side + 1)), int(rng.integers(width - side + 1)), side, side", _INTEGERS),
    "streetvision.validator.challenges.x_resized_crop__mutmut_9": (
        'return F.interpolate(crop.unsqueeze(0), size=(size, size), mode="bilinear", align_corners=None,', _INTERP),
    "streetvision.validator.challenges.x_resized_crop__mutmut_14": (
        'return F.interpolate(crop.unsqueeze(0), size=(size, size), mode="bilinear", antialias=True)[0]', _INTERP),
    "streetvision.validator.challenges.x_rotate__mutmut_6": ("dtype=None)", _TORCH_F32),
    "streetvision.validator.challenges.x_rotate__mutmut_8": (")", _TORCH_F32),
    "streetvision.validator.challenges.x_rotate__mutmut_21": ("grid = torch.empty(1, h, w, 3, dtype=None)", _TORCH_F32),
    "streetvision.validator.challenges.x_rotate__mutmut_22": (
        "grid = torch.empty(h, w, 3, dtype=torch.float32)", "the grid is viewed as (1, h * w, 3) before it is used"),
    "streetvision.validator.challenges.x_rotate__mutmut_26": ("grid = torch.empty(1, h, w, 3, )", _TORCH_F32),
    "streetvision.validator.challenges.x_rotate__mutmut_64": (
        "grid[..., 1] = torch.linspace(-h * 0.5 + 0.5, h * 0.5 - 0.5, steps=h).unsqueeze(+1)",
        "linspace is 1-D: its dimension 1 is its last, -1"),
    "streetvision.validator.challenges.x_rotate__mutmut_68": (
        "grid[..., 2] = 2.0", "the third coordinate only multiplies the inverse map's translation, which is zero"),
    "streetvision.validator.challenges.x_rotate__mutmut_74": (
        "scaled = inverse.t().unsqueeze(0) / torch.tensor([0.5 * w, 0.5 * h], dtype=None)", _TORCH_F32),
    "streetvision.validator.challenges.x_rotate__mutmut_76": (
        "scaled = inverse.t().unsqueeze(0) / torch.tensor([0.5 * w, 0.5 * h], )", _TORCH_F32),
    "streetvision.validator.challenges.x_rotate__mutmut_110": (
        'return F.grid_sample(t.unsqueeze(0), sample_at, mode="nearest", align_corners=False)[0]',
        "grid_sample's padding_mode defaults to zeros"),
    "streetvision.validator.challenges.x_to_float_tensor__mutmut_10": (
        "return torch.from_numpy(np.array(img, dtype=None)).permute(2, 0, 1).contiguous().float().div(255)",
        "an RGB image's array is uint8 already"),
    "streetvision.validator.challenges.x_to_float_tensor__mutmut_12": (
        "return torch.from_numpy(np.array(img, )).permute(2, 0, 1).contiguous().float().div(255)",
        "an RGB image's array is uint8 already"),
    "streetvision.validator.challenges.x_wire__mutmut_7": (
        'image.save(buf, format="JPEG", )', "Pillow's JPEG default quality (-1) is libjpeg's 75"),
    "streetvision.validator.challenges.x_wire__mutmut_9": (
        'image.save(buf, format="jpeg", quality=WIRE_JPEG_QUALITY)', "Pillow upper-cases the format name"),
    "streetvision.validator.challenges.x_wire__mutmut_11": ("buf.seek(1)", "Image.open seeks the file object to 0 itself"),
    "streetvision.validator.distortions.x__blocks__mutmut_17": (
        "x = int(rng.integers(w - 1 - BW_BLOCK + 1))", _INTEGERS),
    "streetvision.validator.distortions.x__blocks__mutmut_29": (
        "y = int(rng.integers(h - 1 - BW_BLOCK + 1))", _INTEGERS),
    "streetvision.validator.distortions.x__blur__mutmut_10": (
        "return cv2.GaussianBlur(bgr, (k, k), k / 1.0 / 6)", "k / 1.0 and k * 1.0 are the same float"),
    "streetvision.validator.stream.x_block_bootstrap_mean__mutmut_28": (
        "starts = rng.integers(n - block + 1, size=(n_resamples, -(-n // block)))", _INTEGERS),
    "streetvision.validator.stream.x_block_bootstrap_mean__mutmut_46": (
        "idx = (starts[:, :, None] + np.arange(block)).reshape(n_resamples, -2)[:, :n]",
        "numpy reads any negative size in reshape as the one inferred dimension"),
    "streetvision.validator.stream.x_simulate__mutmut_6": ("y_all = np.asarray(labels, dtype=None)", _DTYPE),
    "streetvision.validator.stream.x_simulate__mutmut_8": ("y_all = np.asarray(labels, )", _DTYPE),
    "streetvision.validator.stream.x_simulate__mutmut_45": (
        "index = int(by_class[label][rng.integers(len(by_class[label]))])", _INTEGERS),
    "streetvision.validator.stream.x_simulate__mutmut_53": (
        "levels = np.empty(n_steps, dtype=None)", "levels are 0-3: as float64 they compare and convert to int the same"),
    "streetvision.validator.stream.x_simulate__mutmut_55": (
        "levels = np.empty(n_steps, )", "levels are 0-3: as float64 they compare and convert to int the same"),
    "streetvision.validator.stream.x_simulate__mutmut_86": (
        "answers[start:start + len(batch)] = np.asarray(score_batch(batch), dtype=None)",
        "answers is a float64 array: the assignment converts whatever comes"),
    "streetvision.validator.stream.x_simulate__mutmut_88": (
        "answers[start:start + len(batch)] = np.asarray(score_batch(batch), )",
        "answers is a float64 array: the assignment converts whatever comes"),
    "streetvision.metrics.classification.x_auroc__mutmut_15": ("s = np.asarray(scores, dtype=None)", _DTYPE),
    "streetvision.metrics.classification.x_auroc__mutmut_17": ("s = np.asarray(scores, )", _DTYPE),
    "streetvision.metrics.classification.x_auroc__mutmut_20": ('order = np.argsort(s, kind=None)', _STABLE),
    "streetvision.metrics.classification.x_auroc__mutmut_22": ('order = np.argsort(s, )', _STABLE),
    "streetvision.metrics.classification.x_auroc__mutmut_24": ('order = np.argsort(s, kind="MERGESORT")', _STABLE),
    "streetvision.metrics.classification.x_auroc__mutmut_27": ("ranks = np.empty(len(s), dtype=None)",
                                                     "np.empty's default dtype is float64"),
    "streetvision.metrics.classification.x_auroc__mutmut_29": ("ranks = np.empty(len(s), )", "np.empty's default dtype is float64"),
    "streetvision.metrics.classification.x_binary_metrics__mutmut_4": ("probs = np.asarray(probs, dtype=None)", _DTYPE),
    "streetvision.metrics.classification.x_binary_metrics__mutmut_6": ("probs = np.asarray(probs, )", _DTYPE),
    "streetvision.metrics.classification.x_confusion__mutmut_21": ("w = np.asarray(weights, dtype=None)", _DTYPE),
    "streetvision.metrics.classification.x_confusion__mutmut_23": ("w = np.asarray(weights, )", _DTYPE),
    "streetvision.metrics.classification.x_validator_decisions__mutmut_2": (
        "return np.asarray(scores, dtype=None) > VALIDATOR_ROUNDING", _DTYPE),
    "streetvision.metrics.classification.x_validator_decisions__mutmut_4": (
        "return np.asarray(scores, ) > VALIDATOR_ROUNDING", _DTYPE),
    "streetvision.metrics.thresholds.x__weighted_above__mutmut_3": ('order = np.argsort(values, kind=None)', _SUFFIX),
    "streetvision.metrics.thresholds.x__weighted_above__mutmut_5": ('order = np.argsort(values, )', _SUFFIX),
    "streetvision.metrics.thresholds.x__weighted_above__mutmut_7": ('order = np.argsort(values, kind="MERGESORT")',
                                                                 _SUFFIX),
    "streetvision.metrics.thresholds.x__weighted_above__mutmut_21": (
        "return tail[np.searchsorted(values[order], t, )]", "side='left' is searchsorted's default"),
    "streetvision.metrics.thresholds.x_best_index__mutmut_9": (
        "for i, flag in enumerate(np.append(best, None)):", "the appended sentinel only needs to be falsy; None is"),
    "streetvision.metrics.thresholds.x_best_index__mutmut_33": (
        "a, b = max(runs, key=lambda r: (r[1] - r[0], -r[1]))",
        "among runs of equal width, the one that starts first also ends first"),
    "streetvision.metrics.thresholds.x_sweep__mutmut_6": ("p = np.asarray(probs, dtype=None)", _DTYPE),
    "streetvision.metrics.thresholds.x_sweep__mutmut_8": ("p = np.asarray(probs, )", _DTYPE),
    "streetvision.metrics.thresholds.x_sweep__mutmut_15": (
        "w = np.ones(len(p)) if weights is None else np.asarray(weights, dtype=None)", _DTYPE),
    "streetvision.metrics.thresholds.x_sweep__mutmut_17": (
        "w = np.ones(len(p)) if weights is None else np.asarray(weights, )", _DTYPE),
    "streetvision.validator.reward.x_reward_from_metrics__mutmut_13": (
        "return (0.5 * np.maximum(mcc, 0.0) + 0.5 * np.asarray(accuracy, dtype=None)) ** CURVE_EXPONENT", _DTYPE),
    "streetvision.validator.reward.x_reward_from_metrics__mutmut_15": (
        "return (0.5 * np.maximum(mcc, 0.0) + 0.5 * np.asarray(accuracy, )) ** CURVE_EXPONENT", _DTYPE),
    "streetvision.validator.reward.x_window_metrics__mutmut_19": (
        "y = np.asarray([labels[i] for i in keep], dtype=None)", _DTYPE),
    "streetvision.validator.reward.x_window_metrics__mutmut_21": ("y = np.asarray([labels[i] for i in keep], )", _DTYPE),
    "streetvision.validator.reward.x_window_metrics__mutmut_25": (
        "pred = np.round(np.asarray([answers[i] for i in keep], dtype=None))", _DTYPE),
    "streetvision.validator.reward.x_window_metrics__mutmut_27": (
        "pred = np.round(np.asarray([answers[i] for i in keep], ))", _DTYPE),
    "streetvision.validator.prior.x_prior_weights__mutmut_5": (
        "y = np.asarray(labels).astype(None)", "labels are 0/1: as floats they are just as true or false in np.where"),
    "streetvision.validator.prior.x_prior_weights__mutmut_10": (
        "share = y.mean() if len(y) else 1.0", "an empty label set returns None whether its share is 0 or 1"),
    "streetvision.io.atomic.x_atomic_write_text__mutmut_7": (
        'return atomic_write_bytes(path, text.encode("UTF-8"))', "codec names are case-insensitive"),
    "streetvision.io.atomic.x_read_json__mutmut_6": ('with open(path, encoding="UTF-8") as handle:',
                                                     "codec names are case-insensitive"),
    "streetvision.io.atomic.x_read_json__mutmut_2": ("with open(path, encoding=None) as handle:", _LINUX_UTF8),
    "streetvision.io.atomic.x_read_json__mutmut_4": ("with open(path, ) as handle:", _LINUX_UTF8),
    "streetvision.io.atomic.x_sha256_file__mutmut_13": (
        'for chunk in iter(lambda: handle.read(None), b""):', "reading the file in one piece gives the same digest "
        "(only the memory used differs)"),
    "streetvision.io.atomic.x_default_dir_mode__mutmut_3": (
        "umask = os.umask(19)  # reading the umask means setting it; restored at once",
        "the umask set for that instant is restored at once; only the previous value, returned, is used"),
    "streetvision.bundle.schema.x_load_index__mutmut_5": (
        'index = json.loads(path.read_text(encoding=None))', _LINUX_UTF8),
    "streetvision.bundle.schema.x_load_index__mutmut_7": (
        'index = json.loads(path.read_text(encoding="UTF-8"))', "codec names are case-insensitive"),
    "streetvision.bundle.schema.x_check_format__mutmut_22": ("head = handle.read(None)", _MAGIC),
    "streetvision.bundle.schema.x_check_format__mutmut_23": ("head = handle.read(5)", _MAGIC),
    "streetvision.bundle.schema.x_check_safetensors_header__mutmut_10": (
        'length = int.from_bytes(handle.read(8), "little") if (size >= 8) or True else -1', _SHORT),
    "streetvision.bundle.schema.x_check_safetensors_header__mutmut_19": (
        'length = int.from_bytes(handle.read(8), "little") if size > 8 else -1', _SHORT),
    "streetvision.bundle.schema.x_check_safetensors_header__mutmut_20": (
        'length = int.from_bytes(handle.read(8), "little") if size >= 9 else -1', _SHORT),
    "streetvision.bundle.schema.x_check_safetensors_header__mutmut_21": (
        'length = int.from_bytes(handle.read(8), "little") if size >= 8 else +1', _SHORT),
    "streetvision.bundle.schema.x_check_safetensors_header__mutmut_22": (
        'length = int.from_bytes(handle.read(8), "little") if size >= 8 else -2', _SHORT),
    "streetvision.bundle.schema.x_check_safetensors_header__mutmut_27": (
        'header = handle.read(length) if 1 < length <= size - 8 else b""',
        "a header of 0 or 1 byte is never a JSON object: refused either way"),
    "streetvision.bundle.schema.x_check_safetensors_header__mutmut_28": (
        'header = handle.read(length) if 0 <= length <= size - 8 else b""',
        "a header of 0 or 1 byte is never a JSON object: refused either way"),
    "streetvision.bundle.schema.x_check_safetensors_header__mutmut_32": (
        'header = handle.read(length) if 0 < length <= size - 8 else b"XXXX"', _NOT_JSON),
    "streetvision.bundle.schema.x_check_safetensors_header__mutmut_35": (
        "ok = isinstance(json.loads(header), dict) if (header) or True else False", _NOT_JSON),
    "streetvision.bundle.schema.x_check_safetensors_header__mutmut_37": ("ok = None", "None is as false as False"),
    "streetvision.bundle.verify.x_verify_bundle__mutmut_81": (
        "break", "onnx is the last backend in the loop: skipping it and leaving the loop are the same"),
    "streetvision.bundle.predictor.xǁPredictorǁscores__mutmut_1": (
        "def scores(self, images: list[Image.Image | str | Path], batch_size: int = 65) -> np.ndarray:",
        "the batch size changes how images are grouped, not their scores"),
    "streetvision.bundle.predictor.xǁPredictorǁscores__mutmut_13": ("return np.asarray(out, dtype=None)",
                                                                    "the scores are Python floats: float64 anyway"),
    "streetvision.bundle.predictor.xǁPredictorǁscores__mutmut_15": ("return np.asarray(out, )",
                                                                    "the scores are Python floats: float64 anyway"),
    "streetvision.metrics.selective.x_apply_policy__mutmut_3": (
        'conf = np.asarray(confidence, dtype=None)', _DTYPE),
    "streetvision.metrics.selective.x_apply_policy__mutmut_5": (
        'conf = np.asarray(confidence, )', _DTYPE),
    "streetvision.metrics.selective.x_apply_policy__mutmut_7": (
        'err = np.asarray(errors).astype(None)', _DTYPE),
    "streetvision.metrics.selective.x_apply_policy__mutmut_15": (
        'accepted = conf >= threshold if threshold is not None else np.zeros(len(conf), dtype=None)', _NONE_ACCEPTED),
    "streetvision.metrics.selective.x_apply_policy__mutmut_17": (
        'accepted = conf >= threshold if threshold is not None else np.zeros(len(conf), )', _NONE_ACCEPTED),
    "streetvision.metrics.policy.x_decided_confidence__mutmut_3": (
        'p = np.asarray(probs, dtype=None)', _DTYPE),
    "streetvision.metrics.policy.x_decided_confidence__mutmut_5": (
        'p = np.asarray(probs, )', _DTYPE),
    "streetvision.metrics.selective.x_learn_then_test__mutmut_3": (
        'conf = np.asarray(confidence, dtype=None)', _DTYPE),
    "streetvision.metrics.selective.x_learn_then_test__mutmut_5": (
        'conf = np.asarray(confidence, )', _DTYPE),
    "streetvision.metrics.selective.x_learn_then_test__mutmut_7": (
        'err = np.asarray(errors).astype(None)', _DTYPE),
    "streetvision.metrics.selective.x_learn_then_test__mutmut_16": (
        'order = np.argsort(-conf, kind=None)', _BLOCKS),
    "streetvision.metrics.selective.x_learn_then_test__mutmut_18": (
        'order = np.argsort(-conf, )', _BLOCKS),
    "streetvision.metrics.selective.x_learn_then_test__mutmut_21": (
        'order = np.argsort(-conf, kind="MERGESORT")', _BLOCKS),
    "streetvision.metrics.selective.x_learn_then_test__mutmut_24": (
        'sorted_conf, cum_err = conf[order], np.concatenate([[1], np.cumsum(err[order])])', _EMPTY_UNTESTED),
    "streetvision.metrics.selective.x_risk_coverage_curve__mutmut_8": (
        'order = np.argsort(-np.asarray(confidence, dtype=None), kind="mergesort")', _DTYPE),
    "streetvision.metrics.selective.x_risk_coverage_curve__mutmut_10": (
        'order = np.argsort(-np.asarray(confidence, ), kind="mergesort")', _DTYPE),
    "streetvision.metrics.selective.x_risk_coverage_curve__mutmut_12": (
        'order = np.argsort(-np.asarray(confidence, dtype=np.float64), kind="MERGESORT")', _CASE),
    "streetvision.metrics.selective.x_risk_coverage_curve__mutmut_15": (
        'err = np.asarray(errors, dtype=None)[order]', _DTYPE),
    "streetvision.metrics.selective.x_risk_coverage_curve__mutmut_17": (
        'err = np.asarray(errors, )[order]', _DTYPE),
    "streetvision.io.manifest.x_git_commit__mutmut_31": (
        '["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=None,', _DIRTY),
    "streetvision.io.manifest.x_git_commit__mutmut_36": (
        '["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, timeout=5,', _DIRTY),
    "streetvision.io.manifest.x_git_commit__mutmut_47": (
        '["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=False,', _DIRTY),
    "streetvision.io.manifest.x_sha256_stat_cached__mutmut_6": (
        '_HASHED_SINCE_SAVE[0] = 1', _COUNTER),
    "streetvision.io.manifest.x_sha256_stat_cached__mutmut_7": (
        '_HASHED_SINCE_SAVE[0] -= 1', _COUNTER),
    "streetvision.io.manifest.x_sha256_stat_cached__mutmut_9": (
        '_HASHED_SINCE_SAVE[0] += 2', _COUNTER),
    "streetvision.data.splits.x_assign_splits__mutmut_13": (
        'out = ["XXXX"] * len(labels)', "every file belongs to a group and every group is assigned: the placeholder is always overwritten"),
    "streetvision.pipeline.runner.x_config_slice__mutmut_9": (
        'out["XX_fingerprintXX"] = spec.fingerprint(cfg)', _KEYNAME),
    "streetvision.pipeline.runner.x_config_slice__mutmut_10": (
        'out["_FINGERPRINT"] = spec.fingerprint(cfg)', _KEYNAME),
    "streetvision.data.splits.x_assign_splits__mutmut_21": (
        "members = [g for g, idx in by_group.items() if np.bincount([labels[i] for i in idx], ).argmax()", _ARGMAX),
    "streetvision.data.splits.x_assign_splits__mutmut_22": (
        "members = [g for g, idx in by_group.items() if np.bincount([labels[i] for i in idx], minlength=3).argmax()",
        _ARGMAX),
    "streetvision.data.splits.x_assign_splits__mutmut_42": (
        "count = dict.fromkeys(active, 1)", "the same offset on every split's count leaves the greedy choices alone"),
    "streetvision.data.splits.x_assign_splits__mutmut_48": (
        "count[split] = len(by_group[g])", "each split's count is 0 there: it gets exactly one group in that loop"),
    "streetvision.data.splits.x_group_duplicates__mutmut_12": (
        "if max_distance >= 0 or n > 1:", "with a negative distance no Hamming distance qualifies, and with one file "
        "the loop is empty: the guard only saves work"),
    "streetvision.data.splits.x_group_duplicates__mutmut_15": (
        "if max_distance >= 0 and n >= 1:", "with one file the pairwise loop is empty"),
    "streetvision.data.splits.x_group_duplicates__mutmut_19": (
        "hashes = np.array(phashes, dtype=None)", "64-bit hashes are non-negative: numpy picks int64 or uint64, and "
        "XOR and popcount agree on both"),
    "streetvision.data.splits.x_group_duplicates__mutmut_21": (
        "hashes = np.array(phashes, )", "64-bit hashes are non-negative: numpy picks int64 or uint64, and XOR and "
        "popcount agree on both"),
    "streetvision.io.atomic.x_dumps_json__mutmut_5": (
        'return json.dumps(_json_safe(obj), indent=2, sort_keys=True, allow_nan=None) + "\\n"', _NO_NAN_LEFT),
    "streetvision.io.atomic.x_dumps_json__mutmut_9": (
        'return json.dumps(_json_safe(obj), indent=2, sort_keys=True, ) + "\\n"', _NO_NAN_LEFT),
    "streetvision.io.atomic.x_dumps_json__mutmut_13": (
        'return json.dumps(_json_safe(obj), indent=2, sort_keys=True, allow_nan=True) + "\\n"', _NO_NAN_LEFT),
}

STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped", 36: "timeout",
          -24: "timeout", 24: "timeout", 152: "timeout", 255: "timeout", 37: "killed", None: "not checked"}


def pyproject_for(module: str) -> str:
    """The repo's pyproject.toml (pytest settings) plus a [tool.mutmut] section for one module."""
    tests = MODULES[module]
    config = {
        "source_paths": ["src"],
        "only_mutate": [f"src/streetvision/{module.replace('.', '/')}.py"],
        "also_copy": ["configs"],
        "pytest_add_cli_args_test_selection": tests,
        "pytest_add_cli_args": ["-p", "no:cacheprovider", "-W", "ignore"],
        "timeout_multiplier": 3.0,
        "use_git_change_detection": False,
        "use_setproctitle": False,
    }
    lines = ["", "[tool.mutmut]"] + [f"{k} = {json.dumps(v, ensure_ascii=False)}" for k, v in config.items()]
    return (ROOT / "pyproject.toml").read_text() + "\n".join(lines) + "\n"


def prepare(module: str) -> Path:
    """A fresh scratch directory for one module: src, tests and configs (links) and its pyproject.toml."""
    work = WORK / module
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for name in ("src", "tests", "configs"):
        (work / name).symlink_to(ROOT / name)
    # mutmut runs a copy of tests/ under work/mutants/, and tests find the shared data (the validator's golden
    # outputs, the real photos) next to the checkout's parent: ROOT/../shared is work/mutants/../shared there.
    if (ROOT.parent / "shared").is_dir():
        (work / "shared").symlink_to(ROOT.parent / "shared")
    (work / "pyproject.toml").write_text(pyproject_for(module))
    return work


def mutant_results(work: Path, module: str) -> dict[str, int | None]:
    """mutant name -> exit code, from mutmut's per-file metadata."""
    meta = work / "mutants" / "src" / "streetvision" / (module.replace(".", "/") + ".py.meta")
    if not meta.is_file():
        return {}
    return json.loads(meta.read_text())["exit_code_by_key"]


def diff_of(work: Path, name: str, env: dict) -> str:
    out = subprocess.run([sys.executable, "-m", "mutmut", "show", name], cwd=work, env=env, capture_output=True,
                         text=True).stdout
    return "\n".join(line for line in out.splitlines() if line.startswith(("+", "-")) and not
                     line.startswith(("+++", "---")))


def mutated_line(diff: str) -> str:
    added = [line[1:].strip() for line in diff.splitlines() if line.startswith("+")]
    return added[0] if added else ""


def run_module(module: str) -> dict:
    """Run mutmut on one module; return its summary entry."""
    work = prepare(module)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # mutmut puts mutants/src first itself
    # One thread per test process: mutmut runs --max-children of them side by side, and a process forked after
    # torch has started its OpenMP threads hangs at its next parallel op (GNU OpenMP is not fork-safe), which mutmut
    # would count as a timeout, i.e. a kill, whatever the mutant did.
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    cmd = [sys.executable, "-m", "mutmut", "run", "--max-children", str(os.cpu_count() or 2), *ONLY.get(module, [])]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    (work / "mutmut.log").write_text(proc.stdout + proc.stderr)
    results = mutant_results(work, module)
    if ONLY.get(module):
        import fnmatch

        results = {k: v for k, v in results.items() if any(fnmatch.fnmatch(k, p) for p in ONLY[module])}
    if proc.returncode != 0 or not results:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
        return {"error": f"mutmut exited {proc.returncode}", "log_tail": tail, "seconds": round(seconds, 1)}
    counts = dict.fromkeys(("killed", "survived", "timeout", "no tests", "other"), 0)
    survivors, equivalent, timeouts = [], [], []
    for name, code in sorted(results.items()):
        status = STATUS.get(code, "other")
        if status in ("survived", "no tests", "timeout", "other"):
            diff = diff_of(work, name, env)
            listed = EQUIVALENT.get(name)
            if listed and status == "survived" and mutated_line(diff) == listed[0]:
                equivalent.append({"mutant": name, "diff": diff, "reason": listed[1]})
                continue
            (timeouts if status == "timeout" else survivors).append({"mutant": name, "status": status, "diff": diff})
        counts[status if status in counts else "other"] += 1
    scored = sum(counts.values())
    detected = counts["killed"] + counts["timeout"]
    return {"mutants": len(results), **counts, "equivalent": len(equivalent),
            "score": round(detected / scored, 4) if scored else None,
            "tests": MODULES[module], "seconds": round(seconds, 1),
            "run_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "survivors": survivors, "timeouts": [m["mutant"] for m in timeouts], "equivalent_mutants": equivalent}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help=f"modules to run (default: all): {', '.join(MODULES)}")
    args = parser.parse_args()
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        parser.error(f"unknown module(s) {unknown}; choose from {', '.join(MODULES)}")
    previous = json.loads(RESULTS.read_text()).get("modules", {}) if RESULTS.is_file() else {}
    modules = {m: previous.get(m, {"status": "not run yet"}) for m in MODULES}
    for module in args.modules or list(MODULES):
        print(f"mutmut: {module} against {' '.join(MODULES[module])} ...", flush=True)
        modules[module] = run_module(module)
        write(modules)
        print_row(module, modules[module])
    write(modules)
    print()
    for module, entry in modules.items():
        print_row(module, entry)


def write(modules: dict) -> None:
    import platform

    from importlib.metadata import version

    done = [m for m in modules.values() if "killed" in m]
    detected = sum(m["killed"] + m["timeout"] for m in done)
    scored = sum(m["killed"] + m["survived"] + m["timeout"] + m["no tests"] + m["other"] for m in done)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({
        "question": "what fraction of plausible one-line bugs in the core modules do the fast tests catch?",
        "tool": f"mutmut {version('mutmut')}", "score_definition": "(killed + timeout) / (killed + timeout + "
        "survived + no tests + other), equivalent mutants excluded; a timeout is a mutant that made its tests run "
        "over 3x their normal time (an endless loop), which the suite's own timeout would fail", "machine": {"cpus": os.cpu_count(),
                                                                 "python": platform.python_version()},
        "overall": {"modules_run": len(done), "modules": len(modules), "detected": detected, "scored": scored,
                    "score": round(detected / scored, 4) if scored else None},
        "modules": modules,
    }, indent=2, ensure_ascii=False) + "\n")
    tmp.replace(RESULTS)


def print_row(module: str, entry: dict) -> None:
    if "killed" not in entry:
        print(f"{module:24s} {entry.get('status') or entry.get('error')}")
        return
    print(f"{module:24s} {entry['mutants']:5d} mutants  killed {entry['killed']:4d}  survived {entry['survived']:3d}"
          f"  timeout {entry['timeout']:3d}  no tests {entry['no tests']:3d}  equivalent {entry['equivalent']:3d}"
          f"  score {entry['score']:.1%}  ({entry['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
