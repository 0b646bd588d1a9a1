"""Actions on model versions shared by the Train and Models workspaces.

Deploying goes through the core's deploy gate (app/core/golden.py via Project.deploy):
it checks who may deploy, and refuses a candidate that is worse than production on the
golden set. A refusal opens GateRefusedDialog, where an engineer may deploy anyway
with a written reason; nothing here decides who may do what on its own.
"""

from __future__ import annotations

from PySide6.QtWidgets import QMessageBox, QWidget

from app.core import golden
from app.core.errors import LinesideError
from app.core.golden import GateRefusedError
from app.ui.trust.gate_dialog import GateRefusedDialog


def show_gate_refusal(parent: QWidget, context, version: str, result: dict) -> GateRefusedDialog:
    """The refusal, window-modal without a nested event loop; kept as parent.gate_dialog."""
    dialog = GateRefusedDialog(context, version, result, parent)
    parent.gate_dialog = dialog
    dialog.open()
    return dialog


def confirm_and_deploy(parent: QWidget, context, version: str, what: str = "Deploy") -> bool:
    """Ask, then make *version* the production model. Returns True when deployed.

    The line starts judging parts with the new model at once, so this always asks.
    """
    project = context.project
    if project is None:
        return False
    try:
        model = project.model(version)
    except LinesideError as exc:
        QMessageBox.warning(parent, f"Could not deploy {version}", str(exc))
        return False
    # Asked of the core before the question, so nobody confirms what they may not do;
    # Project.deploy asks again (a role may change in between).
    refusal = context.refusal("rollback" if model.status == "retired" else "deploy")
    if refusal is not None:
        QMessageBox.warning(parent, f"Cannot deploy {version}", refusal)
        return False
    current = project.production_model()
    current_text = f"It replaces {current.version} at the line." if current is not None else "No model runs at the line yet."
    answer = QMessageBox.question(
        parent,
        f"{what} {version}?",
        f"Make {version} the production model?\n\n{current_text}\n"
        "Inspections from now on use this model.",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
        QMessageBox.StandardButton.Cancel,
    )
    if answer != QMessageBox.StandardButton.Yes:
        return False
    try:
        project.deploy(version, actor=context.person)
    except GateRefusedError as exc:
        context.models_changed.emit()  # the refusal is stored in the model's report
        show_gate_refusal(parent, context, version, exc.result)
        return False
    except LinesideError as exc:
        QMessageBox.warning(parent, f"Could not deploy {version}", str(exc))
        return False
    context.models_changed.emit()
    hint = "" if golden.golden_parts(project) else (
        " No golden set yet: Models proposes parts to make golden, so the next deploy is checked on them.")
    context.status_message.emit(f"{version} is now the production model.{hint}")
    return True
