"""Actions on model versions shared by the Train and Models workspaces."""

from __future__ import annotations

from PySide6.QtWidgets import QMessageBox, QWidget

from app.core.errors import LinesideError


def confirm_and_deploy(parent: QWidget, context, version: str, what: str = "Deploy") -> bool:
    """Ask, then make *version* the production model. Returns True when deployed.

    The line starts judging parts with the new model at once, so this always asks.
    """
    project = context.project
    if project is None:
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
        project.deploy(version)
    except LinesideError as exc:
        QMessageBox.warning(parent, f"Could not deploy {version}", str(exc))
        return False
    context.models_changed.emit()
    context.status_message.emit(f"{version} is now the production model.")
    return True
