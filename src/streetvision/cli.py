"""Command line: argument parsing only; each command calls into the library.

    streetvision run [KEY=VALUE ...]           run pipeline phases (Hydra override syntax)
    streetvision config [KEY=VALUE ...]        print the resolved config
    streetvision data synth --out DIR ...      write synthetic street scenes as a folder dataset
    streetvision verify BUNDLE                 check a bundle (one line per check)
    streetvision predict BUNDLE PATH...        score images, CSV or JSONL
    streetvision export RUN_DIR                rebuild a run's bundle (phase 6 alone)
    streetvision publish RUN --repo-id O/N --hotkey KEY   upload the Hugging Face export (--dry-run DIR first)
    streetvision evaluate BUNDLE --run DIR     clean + validator-condition metrics with CIs, HTML report
    streetvision simulate BUNDLE --folder DIR  replay a validator stream, report the reward distribution
    streetvision compare A B --out DIR         two evaluations (or runs) on the same images, paired differences
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.text import Text

from streetvision.errors import StreetVisionError

# what `pip install 'streetvision[train]'` adds to the serving install (pyproject.toml's train extra)
TRAIN_ONLY_MODULES = frozenset({"hydra", "omegaconf", "lightning", "peft", "sklearn", "scipy", "cv2", "onnx",
                                "imagehash", "matplotlib", "jinja2"})

console = Console(stderr=False)
err_console = Console(stderr=True, soft_wrap=True)


def stream_steps(text: str) -> int:
    """argparse type of ``simulate --n``: 1 to MAX_STREAM_STEPS challenges."""
    from streetvision.validator.stream import MAX_STREAM_STEPS

    value = positive_int(text)
    if value > MAX_STREAM_STEPS:
        raise argparse.ArgumentTypeError(f"at most {MAX_STREAM_STEPS:,} challenges (the validator scores the last "
                                         f"100), got {value:,}")
    return value


def _int_at_least(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got '{text}'") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
    return value


def probability(text: str) -> float:
    """argparse type: a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got '{text}'") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value:g}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (a bad value is an argument error, exit 2, before any work)."""
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _int_at_least(text, 0)


def cmd_run(args: argparse.Namespace) -> int:
    """Compose the config and run the pipeline."""
    from omegaconf import OmegaConf

    from streetvision.config import load_config
    from streetvision.pipeline.artifacts import default_run_id
    from streetvision.pipeline.runner import run_pipeline

    cfg = load_config(args.overrides)
    if cfg.run_id is None:
        OmegaConf.update(cfg, "run_id", default_run_id())
    run_pipeline(cfg, console)
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    """Print the resolved config."""
    from omegaconf import OmegaConf

    from streetvision.config import load_config

    console.print(OmegaConf.to_yaml(load_config(args.overrides), resolve=True), markup=False, highlight=False)
    return 0


def cmd_data_synth(args: argparse.Namespace) -> int:
    """Write a synthetic folder dataset."""
    from streetvision.data.synthetic import DOMAINS, write_dataset
    from streetvision.errors import ConfigError
    from streetvision.io.outputs import output_dir

    if args.domain not in DOMAINS:
        raise ConfigError(f"Unknown domain '{args.domain}'. Valid choices: {', '.join(DOMAINS)}.",
                          "pass --domain source or --domain target.")
    start = time.perf_counter()
    with output_dir(args.out, "data synth", force=args.force) as out:
        rows = write_dataset(out, n=args.n, domain=args.domain, seed=args.seed, size=args.size,
                             labeled=not args.unlabeled)
    seconds = time.perf_counter() - start
    positives = sum(label for _, label in rows)
    console.print(f"wrote {len(rows)} images to {args.out} ({positives} roadwork, {len(rows) - positives} "
                  f"no_roadwork) in {seconds:.1f}s ({len(rows) / max(seconds, 1e-9):.0f} img/s)")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Verify a bundle: one line per check; exit 1 on any failure."""
    from streetvision.bundle.verify import verify_bundle

    checks = verify_bundle(args.bundle)
    for check in checks:
        mark = Text("PASS ", style="green") if check.ok else Text("FAIL ", style="bold red")
        console.print(mark + Text(f"{check.name}: {check.detail}"), soft_wrap=True)
    return 0 if all(c.ok for c in checks) else 1


def cmd_predict(args: argparse.Namespace) -> int:
    """Score image files / folders with a bundle; write CSV or JSONL; report unreadable files."""
    from streetvision.bundle.predict_files import predict_files

    return predict_files(args.bundle, args.paths, args.out, args.format, args.backend, args.batch_size, console,
                         err_console, force=args.force, workers=args.workers, full_decode=args.full_decode)


def cmd_export(args: argparse.Namespace) -> int:
    """Rerun phase 6 alone for an existing run directory; ``--format hf --out DIR`` also writes the Hugging Face
    folder there (parity-checked against the bundle)."""
    from streetvision.bundle.hf_format import check_saved_exportable
    from streetvision.errors import UsageError
    from streetvision.io.outputs import check_output_dir, output_dir
    from streetvision.pipeline.artifacts import ArtifactSchema, load_run_config
    from streetvision.pipeline.runner import check_upstream_unchanged, run_pipeline

    if args.format == "hf" and not args.out:
        raise UsageError("--format hf needs --out DIR.", "e.g. streetvision export RUN --format hf --out my_model")
    if args.format == "bundle" and args.out:
        raise UsageError("--out applies to --format hf only: the bundle is rebuilt in place, at RUN/export/bundle.",
                         "drop --out, or add --format hf to also write the Hugging Face folder there.")
    cfg = load_run_config(Path(args.run_dir), ["pipeline.phases=[phase6]", "pipeline.force=true", *args.overrides])
    artifacts = ArtifactSchema.from_config(cfg)
    if args.format == "hf":
        check_output_dir(args.out, "export --format hf", protected=[args.run_dir], force=args.force)
        check_saved_exportable(artifacts.phase1_model_dir)
    check_upstream_unchanged(cfg, artifacts, "phase6")
    run_pipeline(cfg, console)
    if args.format == "hf":
        from streetvision.bundle.hf_export import check_hf_parity, write_hf

        bundle = artifacts.bundle_dir
        with output_dir(args.out, "export --format hf", protected=[args.run_dir], force=args.force) as out:
            write_hf(bundle, out)
        console.print(f"wrote {out}: {check_hf_parity(bundle, out)}", markup=False, highlight=False)
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    """Verify a bundle, fill its model card and upload the Hugging Face export in one commit (or write the tree)."""
    from streetvision.bundle.publish import publish

    dry_run = Path(args.dry_run) if args.dry_run else None
    done = publish(Path(args.run_or_bundle), args.repo_id, args.hotkey, args.version, args.private, dry_run,
                   args.model_name, force=args.force)
    console.print(f"hugging face export: {done.parity}", markup=False, highlight=False, soft_wrap=True)
    for rel, size, sha in done.files:
        console.print(f"{sha}  {size:>12,d}  {rel}", markup=False, highlight=False, soft_wrap=True)
    card = done.card
    what = f"{card['model_name']} {card['version']}, submitted_by {card['submitted_by']}"
    if done.commit_url is None:
        console.print(f"dry run: wrote {len(done.files)} files to {dry_run} ({what}); nothing was uploaded.",
                      markup=False, highlight=False, soft_wrap=True)
    else:
        console.print(f"published {what} to https://huggingface.co/{args.repo_id} in one commit: {done.commit_url}\n"
                      f"miner.env: MODEL_URL=https://huggingface.co/{args.repo_id}", markup=False, highlight=False,
                      soft_wrap=True)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Evaluate a bundle on a run's test split, a folder, a CSV or synthetic scenes."""
    from streetvision.bundle.schema import load_index
    from streetvision.data.sources import list_csv, list_folder
    from streetvision.data.splits import load_splits
    from streetvision.errors import ConfigError
    from streetvision.eval.run_evaluation import evaluate_to_dir, print_table
    from streetvision.io.outputs import check_output_dir, output_dir

    bundle = Path(args.bundle)
    given = [x for x in (args.run, args.folder, args.csv, args.synthetic) if x]
    if len(given) != 1:
        raise ConfigError("Pass exactly one data source: --run RUN_DIR, --folder DIR, --csv FILE or --synthetic N.",
                          "e.g. streetvision evaluate BUNDLE --folder ../shared/data/roadwork_real")
    inputs = [bundle, *(x for x in (args.run, args.folder, args.csv) if x)]
    check_output_dir(args.out, "evaluate", protected=inputs, force=args.force)
    class_names = load_index(bundle)["class_names"]
    if args.run:
        splits = load_splits(Path(args.run) / "splits.json")
        samples, what = list(zip(splits.paths("test"), splits.labels("test"))), f"test split of {args.run}"
    elif args.folder:
        listing = list_folder(Path(args.folder), class_names)
        samples, what = [(s.path, s.label) for s in listing.samples], f"folder {args.folder}"
    elif args.csv:
        listing = list_csv(Path(args.csv), class_names)
        samples, what = [(s.path, s.label) for s in listing.samples], f"csv {args.csv}"
    with output_dir(args.out, "evaluate", protected=inputs, force=args.force) as out:
        if args.synthetic:
            from streetvision.data.synthetic import write_dataset

            samples = write_dataset(out / "synthetic_images", n=args.synthetic, domain=args.domain,
                                    seed=args.seed + 7)
            what = f"{args.synthetic} synthetic {args.domain} scenes"
        summary, intervals, paths = evaluate_to_dir(bundle, samples, out, args.seed, args.resamples, what,
                                                    args.backend, console=console)
    print_table(summary, intervals, console, paths[-1])
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    """Replay a validator stream over a labelled folder and print the per-step reward distribution."""
    from streetvision.bundle.predictor import Predictor
    from streetvision.bundle.schema import load_index
    from streetvision.data.sources import list_folder
    from streetvision.eval.evaluate import file_images
    from streetvision.io import atomic_write_csv, atomic_write_json
    from streetvision.io.outputs import check_output_dir, output_dir
    from streetvision.validator.stream import simulate

    bundle = Path(args.bundle)
    if args.out:
        check_output_dir(args.out, "simulate", protected=[bundle, args.folder, *([args.generated] if args.generated
                                                                                 else [])], force=args.force)
    class_names = load_index(bundle)["class_names"]
    samples = [(s.path, s.label) for s in list_folder(Path(args.folder), class_names).samples]
    generated = ([(s.path, s.label) for s in list_folder(Path(args.generated), class_names).samples]
                 if args.generated else [])
    predictor = Predictor.from_bundle(bundle, backend=args.backend)
    images, labels, skipped = file_images(samples + generated, console)
    for row in skipped:
        err_console.print(f"skipped {row['path']}: {row['reason']}", markup=False, highlight=False)
    kinds = None
    if generated:
        kind_of = {path: "generated" for path, _ in generated}
        kinds = [kind_of.get(Path(path), "real") for path in images.paths]
    result = simulate(predictor.scores, images, labels, args.n, args.seed, args.prior, console=console, kinds=kinds,
                      fake_prob=args.fake_prob)
    s = result["summary"]
    ci = s["mean_reward_ci"]
    console.print(f"{s['steps']} challenges over {len(images)} images (P(roadwork) {s['prior_roadwork']:g}, levels "
                  f"0-3 at {s['level_probs']}): mean reward {s['mean_reward']:.3f} [{ci['low']:.3f}, "
                  f"{ci['high']:.3f}] ({ci['method']}); p5 {s['p5']:.3f}, p50 {s['p50']:.3f}, p95 {s['p95']:.3f}; "
                  f"MCC {s['mcc']:.3f}, accuracy {s['accuracy']:.3f}", markup=False, highlight=False)
    console.print("mean reward by level: " + ", ".join(
        f"{lv}: {v:.3f}" if v is not None else f"{lv}: -" for lv, v in s["mean_reward_by_level"].items()),
        markup=False, highlight=False)
    if "mean_reward_by_kind" in s:
        console.print(f"generated images drawn with P = {s['fake_prob']:g}; mean reward by kind: " + ", ".join(
            f"{k}: {v:.3f}" if v is not None else f"{k}: -" for k, v in s["mean_reward_by_kind"].items()),
            markup=False, highlight=False)
    if args.out:
        protected = [bundle, args.folder, *([args.generated] if args.generated else [])]
        with output_dir(args.out, "simulate", protected=protected, force=args.force) as out:
            generated_folder = {"generated": args.generated} if args.generated else {}
            atomic_write_json(out / "stream_summary.json", {"bundle": str(bundle), "folder": args.folder,
                                                            **generated_folder, **s})
            atomic_write_csv(out / "stream_steps.csv", list(result["steps"][0]),
                             [list(r.values()) for r in result["steps"]])
        console.print(f"wrote {out / 'stream_summary.json'} and {out / 'stream_steps.csv'}", markup=False)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Compare two evaluations (or runs) of the same images: paired differences B - A and the report."""
    from rich.table import Table

    from streetvision.eval.compare import COMPARED, compare, write_comparison
    from streetvision.io.outputs import check_output_dir, output_dir

    check_output_dir(args.out, "compare", protected=[args.a, args.b], force=args.force)
    result = compare(Path(args.a), Path(args.b), args.resamples, args.seed)
    with output_dir(args.out, "compare", protected=[args.a, args.b], force=args.force) as out:
        paths = write_comparison(result, out)
    table = Table(title=f"B - A on {result['images']} images (95% paired BCa intervals; reward = (0.5 MCC + 0.5 "
                        f"acc)^3)")
    for col in ("condition", *(f"{k} B - A" for k in COMPARED), "reward favours"):
        table.add_column(col, justify="left" if col in ("condition", "reward favours") else "right")
    for name, row in result["conditions"].items():
        cells = [f"{d['estimate']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"
                 for d in (row["differences"][k] for k in COMPARED)]
        table.add_row(name, *cells, row["verdict"])
    console.print(table)
    h = result["headline"]
    console.print(f"validator mix at the deployment prior: reward B - A {h['estimate']:+.3f} [{h['low']:+.3f}, "
                  f"{h['high']:+.3f}], B better in {h['share_above_zero']:.0%} of resamples; favours "
                  f"{h['verdict']}", markup=False, highlight=False)
    console.print(f"report: {paths[-1]}", markup=False, highlight=False, soft_wrap=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(prog="streetvision", description="Train, check and serve roadwork classifiers "
                                     "for NATIX StreetVision (subnet 72). `streetvision COMMAND --help` for a "
                                     "command's options.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks (or set STREETVISION_DEBUG=1)")
    parser.add_argument("--verbose", action="store_true",
                        help="show third-party output (Lightning banners and tips, library warnings, progress bars)")
    sub = parser.add_subparsers(dest="command", required=True, title="commands", metavar="COMMAND")

    run = sub.add_parser("run", help="run pipeline phases; overrides use Hydra syntax, e.g. "
                                     "pipeline.phases=[phase1,phase2]")
    run.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides (streetvision config "
                     "prints the resolved config)")
    run.set_defaults(func=cmd_run)

    cfg = sub.add_parser("config", help="print the resolved config")
    cfg.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides to resolve")
    cfg.set_defaults(func=cmd_config)

    verify = sub.add_parser("verify", help="check a bundle: schema, checksums, loading, probe outputs")
    verify.add_argument("bundle", help="a bundle directory (a run's export/bundle)")
    verify.set_defaults(func=cmd_verify)

    predict = sub.add_parser("predict", help="score images (files or folders, recursive) with a bundle")
    predict.add_argument("bundle", help="a bundle directory (a run's export/bundle)")
    predict.add_argument("paths", nargs="+", help="image files or folders (searched recursively)")
    predict.add_argument("--out", help="output file (default: stdout)")
    predict.add_argument("--format", choices=["csv", "jsonl"], default="csv", help="output format (default csv)")
    predict.add_argument("--backend", choices=["torch", "onnx"], default="torch",
                         help="PyTorch or the bundle's ONNX model on ONNX Runtime (default torch)")
    predict.add_argument("--batch-size", type=positive_int, default=32, help="images per batch (default 32)")
    predict.add_argument("--force", action="store_true", help="replace a previous output of this command there")
    predict.add_argument("--workers", type=non_negative_int, default=None,
                         help="decoding processes (default: one per core but one, at most 8; 0: decode here)")
    predict.add_argument("--full-decode", action="store_true",
                         help="decode large JPEGs at full size: exactly Predictor(Image.open(f)), 2-3x slower")
    predict.set_defaults(func=cmd_predict)

    evaluate = sub.add_parser("evaluate", help="evaluate a bundle: clean + validator conditions, CIs, HTML report")
    evaluate.add_argument("bundle", help="a bundle directory (a run's export/bundle)")
    evaluate.add_argument("--run", help="use this run directory's test split")
    evaluate.add_argument("--folder", help="one sub-folder per class")
    evaluate.add_argument("--csv", help="path,label manifest")
    evaluate.add_argument("--synthetic", type=positive_int, help="generate N synthetic scenes")
    evaluate.add_argument("--domain", default="source", help="with --synthetic: source or target scenes")
    evaluate.add_argument("--out", default="evaluation", help="output folder (default: evaluation)")
    evaluate.add_argument("--resamples", type=positive_int, default=1000, help="bootstrap resamples (default 1000)")
    evaluate.add_argument("--seed", type=int, default=0, help="seeds the validator challenges and the bootstrap")
    evaluate.add_argument("--backend", choices=["torch", "onnx"], default="torch",
                          help="PyTorch or the bundle's ONNX model (default torch)")
    evaluate.add_argument("--force", action="store_true", help="replace a previous output of this command there")
    evaluate.set_defaults(func=cmd_evaluate)

    simulate = sub.add_parser("simulate", help="replay a validator stream over a labelled folder: per-step reward "
                                               "distribution (labels 50/50, challenge levels as published)")
    simulate.add_argument("bundle", help="a bundle directory (a run's export/bundle)")
    simulate.add_argument("--folder", required=True, help="one sub-folder per class (real photos)")
    simulate.add_argument("--generated", help="a second folder, of generated images (one sub-folder per class): "
                                              "each challenge then draws one with probability --fake-prob")
    simulate.add_argument("--fake-prob", type=probability, default=0.5,
                          help="P(generated image) per challenge (validator: 0.5)")
    simulate.add_argument("--n", type=stream_steps, default=1000, help="challenges to replay (default 1000)")
    simulate.add_argument("--seed", type=int, default=0, help="seeds the stream's draws and challenges")
    simulate.add_argument("--prior", type=float, default=0.5, help="P(roadwork) of the stream (validator: 0.5)")
    simulate.add_argument("--backend", choices=["torch", "onnx"], default="torch",
                          help="PyTorch or the bundle's ONNX model (default torch)")
    simulate.add_argument("--out", help="folder for stream_summary.json and stream_steps.csv")
    simulate.add_argument("--force", action="store_true", help="replace a previous output of this command there")
    simulate.set_defaults(func=cmd_simulate)

    comp = sub.add_parser("compare", help="two evaluations (or runs) of the same images: paired differences B - A "
                                          "of reward, MCC and accuracy with BCa intervals, HTML report")
    comp.add_argument("a", help="evaluation directory (with predictions.csv) or run directory of model A")
    comp.add_argument("b", help="evaluation directory or run directory of model B")
    comp.add_argument("--out", required=True, help="folder for comparison.json and report.html")
    comp.add_argument("--resamples", type=positive_int, default=1000, help="bootstrap resamples (default 1000)")
    comp.add_argument("--seed", type=int, default=0, help="seeds the bootstrap")
    comp.add_argument("--force", action="store_true", help="replace a previous output of this command there")
    comp.set_defaults(func=cmd_compare)

    export = sub.add_parser("export", help="rerun phase 6 (the bundle) for RUN_DIR")
    export.add_argument("run_dir", help="a run directory")
    export.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides for phase 6")
    export.add_argument("--format", choices=["bundle", "hf"], default="bundle",
                        help="hf: also write the Hugging Face folder the NATIX miner serves (needs --out)")
    export.add_argument("--out", help="output folder for --format hf")
    export.add_argument("--force", action="store_true", help="replace a previous output of this command there")
    export.set_defaults(func=cmd_export)

    publish = sub.add_parser("publish", help="verify a run's bundle, fill model_card.json and upload its Hugging "
                                             "Face export to the Hub in one commit (the repo then holds exactly "
                                             "that tree, plus .gitattributes)")
    publish.add_argument("run_or_bundle", help="a run directory or its export/bundle")
    publish.add_argument("--repo-id", required=True, help="ORG/NAME of the Hub model repo (created if needed)")
    publish.add_argument("--hotkey", required=True, help="the miner's hotkey SS58 address (model_card submitted_by)")
    publish.add_argument("--version", help="model_card version X.Y.Z (default: the bundle's card)")
    publish.add_argument("--model-name", help="model_card model_name (default: the bundle's card)")
    publish.add_argument("--private", action="store_true", help="create the repo private")
    publish.add_argument("--dry-run", metavar="DIR", help="write the exact tree that would be uploaded to DIR (new "
                                                          "or empty) and print each file; upload nothing")
    publish.add_argument("--force", action="store_true", help="replace a previous output of this command there")
    publish.set_defaults(func=cmd_publish)

    data = sub.add_parser("data", help="data utilities")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    synth = data_sub.add_parser("synth", help="write synthetic street scenes as a folder dataset + manifest.csv")
    synth.add_argument("--out", required=True, help="a new folder for the dataset")
    synth.add_argument("--n", type=positive_int, default=400, help="scenes to write (default 400)")
    synth.add_argument("--domain", default="source",
                       help="source (daylight, standard camera) or target (night / fog, wide-angle)")
    synth.add_argument("--seed", type=int, default=0, help="scene seed")
    synth.add_argument("--size", type=positive_int, default=224, help="image side in pixels (default 224)")
    synth.add_argument("--unlabeled", action="store_true", help="flat folder, no class sub-folders")
    synth.add_argument("--force", action="store_true", help="replace a previous output of this command there")
    synth.set_defaults(func=cmd_data_synth)
    return parser


class Terminated(BaseException):
    """SIGTERM (``kill``, a scheduler's stop): raised in the main thread so that the running phase ends at once,
    as Ctrl-C does (Lightning alone would only note the signal and train on)."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    """Entry point: run a command; report StreetVisionError as one paragraph and a non-zero exit."""
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = args.debug or os.environ.get("STREETVISION_DEBUG") == "1"
    if not args.verbose:
        from streetvision.console import quiet_third_party

        quiet_third_party()
    func: Callable[[argparse.Namespace], int] = args.func
    in_main_thread = threading.current_thread() is threading.main_thread()  # signals can only be set there
    previous_sigterm = signal.signal(signal.SIGTERM, _raise_terminated) if in_main_thread else None
    try:
        return func(args)
    except StreetVisionError as exc:
        if debug:
            raise
        text = f"{exc.kind}: {exc.message}"
        if exc.fix:
            text += f"\nFix: {exc.fix}"
        err_console.print(Text(f"streetvision {text}", style="bold red"), soft_wrap=True)
        return exc.exit_code
    except ModuleNotFoundError as exc:  # a training command in the serving install (pip install streetvision)
        if debug or (exc.name or "").split(".")[0] not in TRAIN_ONLY_MODULES:
            raise
        err_console.print(Text(f"streetvision usage error: `streetvision {args.command}` needs {exc.name}, which "
                               f"comes with the training extra; this install serves models only (predict, verify, "
                               f"publish).\nFix: pip install 'streetvision[train]'.", style="bold red"),
                          soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        err_console.print("interrupted; committed phases are intact (a phase is committed by its manifest).")
        return 130
    except Terminated:
        err_console.print("terminated (SIGTERM); committed phases are intact (a phase is committed by its manifest); "
                          "rerun the same command to resume.")
        return 143
    except OSError as exc:  # the file system refused (full disk, read-only, permissions): one paragraph too
        if debug:
            raise
        err_console.print(Text(f"streetvision file system error: {file_system_error(exc)}", style="bold red"),
                          soft_wrap=True)
        return 1
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous_sigterm)


def file_system_error(exc: OSError) -> str:
    """What the file system refused (naming the path when the error has one) and a fix that fits the errno."""
    import errno

    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    where = " -> ".join(f"'{p}'" for p in paths)
    text = f"{where}: {exc.strerror or exc}" if where else str(exc.strerror or exc)
    disk = f"the file system holding {where}" if where else "the output file system"
    fixes = {
        errno.ENOSPC: f"free space on {disk} (df -h shows it), then rerun the same command: committed phases are "
                      f"kept and an interrupted training resumes from its last checkpoint.",
        errno.EDQUOT: f"free space within your disk quota on {disk}, then rerun the same command.",
        errno.EROFS: f"{disk} is read-only: write somewhere else (output_root=, --out) or remount it writable.",
        errno.EACCES: "give yourself permission to read or write that path, or use another one.",
        errno.EPERM: "give yourself permission to read or write that path, or use another one.",
    }
    fix = fixes.get(exc.errno or -1, "check that the path exists, is writable and has free space")
    return f"{text}\nFix: {fix.rstrip('.')}. (--debug shows the traceback.)"


if __name__ == "__main__":
    sys.exit(main())
