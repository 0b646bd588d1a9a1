"""The label history under any interleaving of set_label, relabel, clear and undo.

A model of the rules runs beside the store: every set_label (a first label, a relabel,
a clear) appends one row; an undo appends one row, a copy of the label before the
newest change still in effect, or nothing when there is nothing left to undo. The
history must be the model's row for row (complete, in order, nothing rewritten), and
the current label the newest row.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.project import Project
from tests.store_fixtures import defect_mask, encoded, part_image

N_IMAGES = 3
VERDICTS = ["ok", "scratch", "dent", None]  # None: clear the label

operations = st.lists(
    st.one_of(
        st.tuples(st.just("set"), st.integers(0, N_IMAGES - 1), st.sampled_from(VERDICTS), st.booleans()),
        st.tuples(st.just("undo"), st.integers(0, N_IMAGES - 1), st.none(), st.booleans()),
    ),
    max_size=20,
)


class Model:
    """What the history of one image must be: (verdict, has mask, undoes a row?) per row."""

    def __init__(self) -> None:
        self.rows: list[tuple[str | None, bool, bool]] = []
        self.changes: list[tuple[str | None, bool]] = []  # changes still in effect, oldest first

    def set(self, verdict: str | None, masked: bool) -> None:
        row = (verdict, masked and verdict not in (None, "ok"))
        self.rows.append((*row, False))
        self.changes.append(row)

    def undo(self) -> None:
        if not self.changes:
            return  # nothing to undo: no row
        self.changes.pop()
        before = self.changes[-1] if self.changes else (None, False)
        self.rows.append((*before, True))

    @property
    def current(self) -> str | None:
        return self.rows[-1][0] if self.rows else None


@settings(max_examples=40, deadline=None)
@given(operations)
def test_history_is_complete_and_current_is_the_newest(ops):
    with tempfile.TemporaryDirectory() as tmp:
        with Project.create(Path(tmp) / "p") as project:
            ids = [project.add_image_bytes(encoded(part_image(900 + i)), f"p{i}.png")[0].id for i in range(N_IMAGES)]
            models = [Model() for _ in ids]
            for op, index, verdict, masked in ops:
                if op == "set":
                    mask = defect_mask() if masked else None
                    project.set_label(ids[index], verdict, mask=mask, author="prop")
                    models[index].set(verdict, masked)
                else:
                    project.undo_label(ids[index])
                    models[index].undo()

            for image_id, model in zip(ids, models):
                history = project.label_history(image_id)
                got = [(row.verdict, row.mask_path is not None) for row in history]
                assert got == [(verdict, masked) for verdict, masked, _ in model.rows]
                assert [row.id for row in history] == sorted(row.id for row in history)
                current = project.label(image_id)
                assert (current.verdict if current else None) == model.current
                for row in history:  # every mask a row names is on disk, the size of its image
                    if row.mask_path is not None:
                        assert project.load_mask(row).shape == (48, 64)
            counts = project.label_counts()
            expected: dict[str, int] = {}
            for model in models:
                if model.current is not None:
                    expected[model.current] = expected.get(model.current, 0) + 1
            assert {k: v for k, v in counts.items() if k != "unlabeled" and v} == expected
            assert counts["unlabeled"] == sum(model.current is None for model in models)


def test_a_relabel_keeps_the_old_label_in_the_history():
    with tempfile.TemporaryDirectory() as tmp, Project.create(Path(tmp) / "p") as project:
        image_id = project.add_image_bytes(encoded(part_image(950)), "p.png")[0].id
        project.set_label(image_id, "scratch", mask=defect_mask(), author="anna")
        project.set_label(image_id, "ok", author="ben")
        history = project.label_history(image_id)
        assert [(r.verdict, r.author) for r in history] == [("scratch", "anna"), ("ok", "ben")]
        assert history[0].mask_path is not None and np.count_nonzero(project.load_mask(history[0])) > 0
        assert project.label(image_id).verdict == "ok"
