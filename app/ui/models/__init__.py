"""The Models workspace: model versions and their reports (on screen and as PDF)."""
