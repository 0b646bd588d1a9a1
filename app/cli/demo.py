"""The demo: a project of generated parts, trained and inspected with no hardware and no data.

Runs offline on a fresh machine in a few minutes on two cores. The parts are drawn by
`app.core.synthetic`; everything after that (import, backprop, ONNX export, ONNX
Runtime verdicts) is the real product path.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from app.core.errors import LinesideError
from app.core.project import Project

DEMO_OK, DEMO_PER_DEFECT = 120, 30
DEMO_SEED = 7
DEMO_EPOCHS = 20
# Written when the demo project is created: only such a project may be rebuilt or get
# the demo's simulated inspections.
DEMO_SETTING = "demo"


def _say(line: str) -> None:
    print(line, flush=True)


def is_demo_project(project: Project) -> bool:
    return project.get_setting(DEMO_SETTING, False) is True


def ensure_demo_project(path: Path, epochs: int | None = None,
                        on_event: Callable[[dict], None] | None = None, say: Callable[[str], None] = _say) -> Path:
    """Make sure a demo project with a production model exists at *path*; build it if not."""
    path = Path(path)
    if Project.is_project(path):
        with Project.open(path) as project:
            is_demo = is_demo_project(project)
            finished = project.production_model() is not None
        if not is_demo:
            # Checked before anything else: the demo records simulated inspections.
            raise LinesideError(
                f"{path} is a Lineside project that is not a demo project; the demo would write simulated "
                "inspections into it. Choose another folder for the demo (or none, for the usual demo folder)."
            )
        if finished:
            return path
        shutil.rmtree(path)  # an unfinished demo from an interrupted first run: start it again
    elif path.exists() and not path.is_dir():
        raise LinesideError(f"{path} is a file, not a folder; choose a new or empty folder for the demo.")
    elif path.exists() and any(path.iterdir()):
        raise LinesideError(f"{path} is not empty and not a Lineside project; choose another folder for the demo.")
    try:
        from training.pipeline import train_project
    except ImportError as exc:
        raise LinesideError("The demo trains a model, and training is not installed in this edition.") from exc
    from app.core.importer import import_folder
    from app.core.synthetic import write_demo_dataset

    say(f"creating the demo project in {path}")
    project = Project.create(path, name="Demo parts")
    try:
        project.set_setting(DEMO_SETTING, True)
        with tempfile.TemporaryDirectory(prefix="lineside-demo-") as tmp:
            say(f"drawing {DEMO_OK} good parts and {DEMO_PER_DEFECT} of each defect ...")
            write_demo_dataset(Path(tmp), DEMO_OK, DEMO_PER_DEFECT, seed=DEMO_SEED)
            report = import_folder(project, Path(tmp))
        say(f"imported {report.added} labeled images ({report.masks} with painted defect regions)")
    finally:
        project.close()
    say("training (real backprop on the pretrained network) ...")
    model = train_project(path, epochs=epochs or DEMO_EPOCHS, on_event=on_event or (lambda e: None))
    with Project.open(path) as project:
        project.deploy(model.version)
    say(f"model {model.version}: catch {model.metrics['catch_rate']:.1%} at "
        f"{model.metrics['false_reject_rate']:.1%} false reject on validation; deployed to production")
    return path


def run_demo_command(directory: Path | None, epochs: int | None = None, n_fresh: int = 24,
                     prepare_only: bool = False) -> int:
    from app.cli.train_events import text_event
    from app.core.line_session import CallbackListener, LineSession
    from app.core.line_sources import SimulatedLineSource

    if directory is None:
        from app.core.userdirs import demo_project_dir

        directory = demo_project_dir()
    ensure_demo_project(directory, epochs=epochs, on_event=text_event)
    if prepare_only:
        return 0
    right = 0

    def started(version: str | None) -> None:
        _say(f"\ninspecting {n_fresh} freshly made parts with {version} (ONNX Runtime):")

    def show(results) -> None:  # acknowledged: in the project's inspection log
        nonlocal right
        for result in results:
            v, truth = result.verdicts[0], result.truth
            correct = result.passed == (truth == "ok")
            right += correct
            _say(f"{result.label:4}  {result.defect_class or '-':8}  score={result.score:.3f}  {v.latency_ms:5.1f} ms  "
                 f"(truth: {truth}{'' if correct else '  <- wrong'})")

    with Project.open(directory) as project:
        seed = int(np.random.default_rng().integers(1 << 30))
        # rate 0: the next part is made when the station is ready for it
        line = SimulatedLineSource(seed, defect_rate=0.35, rate_hz=0)
        with LineSession(project, [line], [CallbackListener(on_model=started, on_committed=show)],
                         max_parts=n_fresh) as session:
            session.wait()
    _say(f"\n{right}/{n_fresh} verdicts right. Open the app on this project with: lineside --demo")
    return 0
