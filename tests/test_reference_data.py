"""The published CIFAR-100 table shipped as package data."""

from kdbench.models import MODELS
from kdbench.reference import published


def test_published_table_names_registered_models() -> None:
    table = published()
    assert list(table.columns) == ["source", "method", "teacher", "student", "top1", "note"]
    assert len(table) > 200 and table.top1.dropna().between(0, 100).all()
    assert set(table.teacher) | set(table.student) <= set(MODELS.names())
