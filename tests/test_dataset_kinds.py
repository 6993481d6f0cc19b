"""Every folder-layout dataset kind on a fixture in its published layout (tests/support/
dataset_layouts.py): the right images with canonical labels, races and genders; exclusions
recorded with their reasons; quarantine reasons for the corrupt file, the unknown label (and
each kind's own problems); the rest still loads."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from inference.config import ConfigError, DatasetConfig
from inference.datasets import dataset_adapter, load_label_map
from inference.datasets.base import DatasetContext
from inference.datasets.labels import load_group_maps
from tests.support.dataset_layouts import LAYOUTS, NORMING_WORKBOOK, Layout, build_raf_db


def _adapter(kind: str, location: Path, options: dict | None = None):
    cfg = DatasetConfig(name=f"my_{kind}", kind=kind, location=str(location), options=options or {})
    return dataset_adapter(cfg, DatasetContext())


def _load(layout: Layout, root: Path, options: dict | None = None):
    location = layout.build(root)
    adapter = _adapter(layout.kind, location, layout.options if options is None else options)
    assert adapter.locate() == location.resolve()
    return adapter, adapter.load(adapter.locate(), load_label_map())


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda layout: layout.kind)
def test_kind_loads_its_published_layout(layout: Layout, tmp_path):
    adapter, load = _load(layout, tmp_path)
    labels, groups = load_label_map(), load_group_maps()
    label_set = adapter.cfg.effective_label_set
    emotions = Counter(labels.canonical(label_set, img.source_label) for img in load.images)
    races = Counter(groups.canonical("race", label_set, img.race) for img in load.images if img.race)
    genders = Counter(groups.canonical("gender", label_set, img.gender) for img in load.images if img.gender)
    assert emotions == layout.emotions
    assert races == layout.races
    assert genders == layout.genders
    assert len({img.identity for img in load.images if img.identity}) == layout.identities
    assert {e.image_id: e.field for e in load.excluded} == layout.excluded
    for excluded in load.excluded:
        assert f"exclude.{excluded.field}" in excluded.reason and adapter.cfg.name in excluded.reason
    reasons = {q.image_path: q.reason for q in load.quarantined}
    assert set(reasons) == set(layout.quarantined)
    for image_id, phrase in layout.quarantined.items():
        assert phrase in reasons[image_id], reasons[image_id]
    loaded = {img.image_id for img in load.images}
    assert not loaded & (set(layout.excluded) | set(layout.quarantined))
    root = adapter.image_root(adapter.locate())
    for img in load.images:  # ids are paths under the root; hashes are of the bytes
        assert img.path == root / img.image_id and img.width > 0 and len(img.image_hash) == 64


def test_chicago_face_keeps_happy_mouth_and_joins_the_norming_workbook(tmp_path):
    layout = next(x for x in LAYOUTS if x.kind == "chicago_face")
    adapter, load = _load(layout, tmp_path)
    by_id = {img.image_id: img for img in load.images}
    closed, opened = by_id["Images/CFD/BM-201/CFD-BM-201-001-HC.jpg"], by_id["Images/CFD/BM-201/CFD-BM-201-002-HO.jpg"]
    assert (closed.source_label, closed.extra["happy_mouth"]) == ("HC", "closed")
    assert (opened.source_label, opened.extra["happy_mouth"]) == ("HO", "open")
    asian = by_id["Images/CFD/AF-200/CFD-AF-200-228-N.jpg"]
    assert asian.identity == "AF-200" and asian.age == 28.5
    assert asian.extra["norming"]["CFD U.S. Norming Data"]["Happy"] == 2.1
    assert asian.extra["subset"] == "CFD" and by_id["Images/CFD-INDIA/IM-600/CFD-IM-600-001-A.jpg"].age is None
    assert adapter.preprocessing() == {"crop": "square_center", "size": 224}
    # without the workbook the images still load, with no norming columns
    (adapter.locate() / NORMING_WORKBOOK).unlink()
    again = adapter.load(adapter.locate(), load_label_map())
    assert len(again.images) == len(load.images) and all("norming" not in i.extra for i in again.images)


def test_exclusions_default_from_the_preset_and_are_overridable(tmp_path):
    layout = next(x for x in LAYOUTS if x.kind == "radiate")
    _, default = _load(layout, tmp_path / "a")
    assert {e.value for e in default.excluded} == {"CA", "O"}
    assert all("the radiate kind's default" in e.reason for e in default.excluded)
    _, kept = _load(layout, tmp_path / "b", options={"exclude": {}})
    assert kept.excluded == [] and len(kept.images) == len(default.images) + 2  # calm and race O kept
    assert {img.race for img in kept.images} >= {"O"}


def test_caer_registers_clips_as_video(tmp_path):
    layout = next(x for x in LAYOUTS if x.kind == "caer")
    _, load = _load(layout, tmp_path)
    assert {img.media_type for img in load.images} == {"video"}
    assert all(img.extra["frame_count"] == 3 and (img.width, img.height) == (16, 12) for img in load.images)
    assert {img.extra["split"] for img in load.images} == {"train", "validation", "test"}


def test_raf_db_accepts_the_correctly_spelled_list_and_the_basic_folder(tmp_path):
    location = build_raf_db(tmp_path, list_name="list_partition_label.txt")
    adapter = _adapter("raf_db", location / "basic")
    load = adapter.load(adapter.locate(), load_label_map())
    assert len(load.images) == 4  # fear is not excluded here
    assert {img.extra["age_group"] for img in load.images} == {"20-39", "40-69", "4-19"}


def test_options_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"datasets\.my_filename_pattern\.options.*pattern: required"):
        _adapter("filename_pattern", tmp_path)
    with pytest.raises(ConfigError, match=r"datasets\.my_folders\.options\.colour: unknown key"):
        _adapter("folders", tmp_path, {"colour": "x"})
    with pytest.raises(ConfigError, match=r"needs a named group \(\?P<emotion>"):
        _adapter("filename_pattern", tmp_path, {"pattern": r"(?P<label>\w+)/.*"})
    with pytest.raises(ConfigError, match=r"datasets\.my_kdef\.location: .* is not a folder"):
        _adapter("kdef", tmp_path / "missing").locate()


def test_an_image_listed_twice_keeps_its_first_row(tmp_path):
    layout = next(x for x in LAYOUTS if x.kind == "affectnet")
    location = layout.build(tmp_path)
    validation = location / "Manually_Annotated_file_lists" / "validation.csv"
    validation.write_text(validation.read_text() + '1/a.jpg,10,10,80,80,"1.0;2.0",2,0.1,0.1\n')
    adapter = _adapter("affectnet", location)
    load = adapter.load(adapter.locate(), load_label_map())
    first = [img for img in load.images if img.image_id == "Manually_Annotated_Images/1/a.jpg"]
    assert [img.source_label for img in first] == ["1"]
    again = [q for q in load.quarantined if q.image_path == "Manually_Annotated_Images/1/a.jpg"]
    assert len(again) == 1 and again[0].row_number == 4 and again[0].source == str(validation)
    assert "listed again (training.csv row 1 lists it first)" in again[0].reason
