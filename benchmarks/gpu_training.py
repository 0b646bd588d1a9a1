"""Retraining on a GPU server: the CUDA paths of the trainer, run for real, against the CPU.

    python benchmarks/gpu_training.py --work DIR [--ok 400] [--per-defect 60] [--epochs E]

On one project of generated parts (the demo's generator, a larger draw) and one
held-out folder of fresh generated parts the trainer never sees, it runs the shipped
commands one after the other:

1. `lineside train --device cpu`  (the CPU recipe: frozen prefix cached, the rest trains);
2. `lineside train --device cuda` (a GPU fine-tunes the whole network by default);
3. `torchrun --standalone --nproc_per_node N -m training.distributed --device cuda`
   (NCCL across the machine's GPUs; one GPU still runs the whole DDP path);

then `lineside evaluate --json` of each new model on the held-out folder. It writes
`benchmarks/results/gpu_training.md`: wall time of each retrain (the ratio against the
CPU run of the same process tree on the same machine), the device the trainer named,
epochs run, and catch / false reject at the stored threshold with AUROC on the held-out
parts. Needs a CUDA GPU for rows 2 and 3 (it says so and writes the CPU row alone
where there is none). Generated parts only: the real datasets' figures are the CPU
benchmarks' (detection.py), this one checks that the GPU paths train a model as good.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.machine import load_average, machine_lines  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "gpu_training.md"
STEP_TIMEOUT_S = 900


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "app", *args]


def _run(cmd: list[str], log: Path) -> tuple[int, float, list[dict]]:
    """Run *cmd*, keep its output in *log*, return exit code, seconds and JSON events."""
    t0 = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=out, text=True, timeout=STEP_TIMEOUT_S)
    elapsed = time.monotonic() - t0
    log.write_text(log.read_text() + proc.stdout)
    events = []
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return proc.returncode, elapsed, events


def build(work: Path, n_ok: int, per_defect: int) -> tuple[Path, Path]:
    from app.core.importer import import_folder
    from app.core.project import Project
    from app.core.synthetic import write_demo_dataset

    base, held_out, drawn = work / "base", work / "held-out", work / "drawn"
    for path in (base, held_out, drawn):
        shutil.rmtree(path, ignore_errors=True)
    write_demo_dataset(drawn, n_ok, per_defect, seed=11)
    write_demo_dataset(held_out, max(1, n_ok // 2), max(1, per_defect // 2), seed=12)
    with Project.create(base, name="GPU benchmark parts") as project:
        report = import_folder(project, drawn)
    print(f"project: {report.added} labeled images; held-out folder of fresh parts: {held_out}", flush=True)
    return base, held_out


def one_run(name: str, base: Path, held_out: Path, work: Path, train_cmd: list[str]) -> dict:
    project = work / name
    shutil.rmtree(project, ignore_errors=True)
    shutil.copytree(base, project)
    cmd = [a.replace("PROJECT", str(project)) for a in train_cmd]
    print(f"{name}: {' '.join('python' if a == sys.executable else 'DIR' if os.path.isabs(a) else a for a in cmd)}", flush=True)
    rc, elapsed, events = _run(cmd, work / f"{name}.train.log")
    row = {"name": name, "rc": rc, "wall_s": elapsed}
    start = next((e for e in events if e.get("event") == "start"), {})
    done = next((e for e in events if e.get("event") == "done"), None)
    epochs = [e for e in events if e.get("event") == "epoch"]
    steps = [e for e in events if e.get("event") == "progress" and e.get("phase") == "train" and "elapsed_s" in e]
    row.update(device=start.get("device", "?"), epochs=len(epochs), n_train=start.get("n_train"))
    if steps and epochs:
        # Where the trainer's own time goes: loading (to the first step), backprop (to the last
        # epoch's validation), and after it (anomaly comparison, export + parity, threshold).
        row.update(first_step_s=steps[0]["elapsed_s"], backprop_end_s=epochs[-1]["elapsed_s"])
    if rc != 0 or done is None:
        row["error"] = (work / f"{name}.train.log").read_text()[-600:]
        print(f"{name}: failed (exit {rc})\n{row['error']}", flush=True)
        return row
    row.update(trainer_s=done["elapsed_s"], version=done["version"], mode=done.get("mode"),
               val_auroc=done["metrics"].get("auroc"))
    rc, _, _ = _run(_cli("evaluate", str(project), str(held_out), "--model", done["version"], "--json"), work / f"{name}.eval.log")
    text = (work / f"{name}.eval.log").read_text()
    try:
        result = json.loads(text[text.index("{"):])
        row.update(catch=result["catch_rate"], catch_ci=result.get("catch_rate_ci"), n_defect=result["n_defect"],
                   fr=result["false_reject_rate"], fr_ci=result.get("false_reject_rate_ci"), n_ok=result["n_ok"],
                   auroc=result["auroc"])
    except (ValueError, KeyError) as exc:
        row["error"] = f"evaluate: {exc}: {text[-400:]}"
    print(f"{name}: {json.dumps({k: v for k, v in row.items() if k != 'error'}, default=str)}", flush=True)
    return row


def _pct(rate, ci) -> str:
    if rate is None:
        return "-"
    text = f"{rate:.1%}"
    return text + (f" ({ci[0]:.1%}-{ci[1]:.1%})" if ci else "")


def write_results(rows: list[dict], lines: list[str], gpu: str, n_ok: int, per_defect: int) -> None:
    cpu = next((r for r in rows if r["name"] == "cpu" and "trainer_s" in r), None)
    out = ["# Retraining on a GPU: the CUDA paths against the CPU", "", *lines, f"- GPU: {gpu}", "",
           f"One project of generated parts ({n_ok} OK and {per_defect} of each generated defect, the demo's generator "
           "with another seed), copied for each run; each model judged by `lineside evaluate --json` on a folder of "
           "fresh generated parts it never saw, at the threshold it stored. Retrain = the command's wall time "
           "(process start, data loading, backprop, export with its parity check, threshold); ratio against the "
           "CPU run on this machine, in this process tree.", "",
           "The trainer's own time split (from its progress events): *load* = start to the first backprop step "
           "(decoding, letterboxing, caching the frozen prefix on a CPU); *backprop* = to the last epoch's "
           "validation; *after* = the rest (the anomaly model fit for auto's comparison, export with its parity "
           "check, threshold, report).", "",
           "| Run | device (as the trainer named it) | mode | epochs | retrain | vs CPU | load / backprop / after | "
           "caught (95 % CI) | false reject | AUROC held-out | val AUROC |",
           "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "trainer_s" not in r:
            out.append(f"| {r['name']} | {r.get('device', '?')} | - | - | failed (exit {r['rc']}) | | | | | | |")
            continue
        ratio = f"{cpu['wall_s'] / r['wall_s']:.1f}x" if cpu else "-"
        split = "-"
        if "first_step_s" in r:
            split = (f"{r['first_step_s']:.0f} / {r['backprop_end_s'] - r['first_step_s']:.0f} / "
                     f"{r['trainer_s'] - r['backprop_end_s']:.0f} s")
        out.append(f"| {r['name']} | {r['device']} | {r.get('mode') or '-'} | {r['epochs']} | {r['wall_s']:.0f} s | "
                   f"{ratio} | {split} | "
                   f"{_pct(r.get('catch'), r.get('catch_ci'))} of {r.get('n_defect', '?')} | "
                   f"{_pct(r.get('fr'), r.get('fr_ci'))} of {r.get('n_ok', '?')} | "
                   f"{r.get('auroc') or 0:.4f} | {r.get('val_auroc') or 0:.4f} |")
    failures = [r for r in rows if r.get("error")]
    if failures:
        out += ["", "## Failures", ""]
        for r in failures:
            out += [f"- {r['name']}:", "", "```", r["error"].strip(), "```"]
    RESULTS.write_text("\n".join(out) + "\n")
    print(RESULTS.read_text(), flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, required=True, help="scratch folder (projects, logs)")
    p.add_argument("--ok", type=int, default=400)
    p.add_argument("--per-defect", type=int, default=60)
    p.add_argument("--epochs", type=int, default=None, help="default: the trainer's own")
    p.add_argument("--skip-cpu", action="store_true")
    args = p.parse_args()
    load_at_start = load_average()
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    gpu = f"{gpus} x {torch.cuda.get_device_name(0)}" if gpus else "none"
    args.work.mkdir(parents=True, exist_ok=True)
    base, held_out = build(args.work, args.ok, args.per_defect)
    extra = ["--epochs", str(args.epochs)] if args.epochs else []
    runs = [] if args.skip_cpu else [("cpu", _cli("train", "PROJECT", "--device", "cpu", "--progress", "json", *extra))]
    if gpus:
        runs.append(("cuda", _cli("train", "PROJECT", "--device", "cuda", "--progress", "json", *extra)))
        runs.append((f"cuda-ddp-{gpus}", [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                          "--nproc_per_node", str(gpus), "-m", "training.distributed", "PROJECT",
                                          "--device", "cuda", "--progress", "json", *extra]))
    else:
        print("no CUDA GPU here: only the CPU row is measured", flush=True)
    rows = [one_run(name, base, held_out, args.work, cmd) for name, cmd in runs]
    write_results(rows, machine_lines("benchmarks/gpu_training.py", ("torch", "onnxruntime"), load_at_start),
                  gpu, args.ok, args.per_defect)
    return 0 if all("trainer_s" in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
