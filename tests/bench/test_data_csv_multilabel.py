"""csv_multilabel: ChestX-ray14 (joined names), CheXpert (1/0/-1/blank + uncertainty policy), RFMiD (0/1),
with and without a YAML hierarchy and templates."""

import numpy as np
import pytest
from PIL import Image

from bench.data import DataConfigError, build_dataset
from bench.data.problems import DataValidationError


def png(path, value=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((6, 6), value, dtype=np.uint8)).save(path)


HIERARCHY = """\
levels: [category, disease]
category:
  Abnormal: [Cardiomegaly, Effusion, Edema]
  Normal: [No Finding]
templates:
  category: "A {labels} chest X-ray."
  disease: "Findings: {labels}."
"""

NIH = """\
Image Index,Finding Labels,Patient ID
a.png,Effusion|Cardiomegaly,p1
b.png,No Finding,p1
c.png,Edema,p2
"""


@pytest.fixture
def nih(tmp_path):
    (tmp_path / "labels.csv").write_text(NIH)
    (tmp_path / "h.yaml").write_text(HIERARCHY)
    for n in "abc":
        png(tmp_path / f"{n}.png")
    return tmp_path


def test_chestxray14_with_hierarchy(nih):
    ds = build_dataset(
        {"format": "csv_multilabel", "path": str(nih / "labels.csv"), "hierarchy": str(nih / "h.yaml"),
         "patient_column": "Patient ID", "resolution": 64, "levels": None}
    )
    assert ds.levels == ("category", "disease")
    assert ds.vocab["category"] == ("Abnormal", "Normal")
    assert ds.vocab["disease"] == ("Cardiomegaly", "Effusion", "Edema", "No Finding")  # first appearance in the mappings
    # labels joined in vocabulary order, not table order
    assert ds.texts("disease") == ["Findings: Cardiomegaly, Effusion.", "Findings: No Finding.", "Findings: Edema."]
    assert ds.texts("category") == ["A Abnormal chest X-ray.", "A Normal chest X-ray.", "A Abnormal chest X-ray."]
    assert ds[0].labels == {"disease": ("Cardiomegaly", "Effusion"), "category": ("Abnormal",)}
    np.testing.assert_array_equal(ds.multi_hot("disease"), [[1, 1, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]])
    np.testing.assert_array_equal(ds.multi_hot("category"), [[1, 0], [0, 1], [1, 0]])
    assert list(ds.text_ids("category")) == [0, 1, 0]
    assert ds.task_specs["disease_multilabel"].classes == ds.vocab["disease"]
    np.testing.assert_array_equal(ds.task_targets("disease_multilabel"), ds.multi_hot("disease"))
    assert [s.id for s in ds] == ["a.png", "b.png", "c.png"]
    assert ds[0].image == str(nih / "a.png") and ds.image(0).shape == (6, 6, 3)
    assert [s.patient_id for s in ds] == ["p1", "p1", "p2"]
    # no split column: drawn, grouped by patient
    assert ds[0].split == ds[1].split


def test_config_templates_override_yaml(nih):
    ds = build_dataset(
        {"format": "csv_multilabel", "path": str(nih / "labels.csv"), "hierarchy": str(nih / "h.yaml"),
         "templates": {"disease": "an x-ray with {labels}"}}
    )
    assert ds.texts("disease")[0] == "an x-ray with Cardiomegaly, Effusion"
    assert ds.texts("category")[0] == "A Abnormal chest X-ray."


def test_template_errors(nih):
    base = {"format": "csv_multilabel", "path": str(nih / "labels.csv"), "hierarchy": str(nih / "h.yaml")}
    with pytest.raises(DataConfigError, match=r"data.templates.disease.*\{labels\}"):
        build_dataset({**base, "templates": {"disease": "with {label}"}})
    with pytest.raises(DataConfigError, match="unknown level"):
        build_dataset({**base, "templates": {"series": "{labels}"}})


def test_without_hierarchy_one_level(nih):
    ds = build_dataset({"format": "csv_multilabel", "path": str(nih / "labels.csv")})
    assert ds.levels == ("finding",)
    assert ds.vocab["finding"] == ("Cardiomegaly", "Edema", "Effusion", "No Finding")  # sorted
    assert ds.texts("finding")[0] == "Cardiomegaly, Effusion"
    assert "finding_multilabel" in ds.task_specs


def test_unknown_label_against_hierarchy_names_file_row_field(nih):
    (nih / "labels.csv").write_text(NIH + "d.png,Hernia|Effusion,p3\ne.png,Mass,p4\n")
    with pytest.raises(DataValidationError) as e:
        build_dataset({"format": "csv_multilabel", "path": str(nih / "labels.csv"), "hierarchy": str(nih / "h.yaml")})
    probs = e.value.problems
    assert [(p.line, p.row, p.field) for p in probs] == [(5, 4, "Finding Labels"), (6, 5, "Finding Labels")]
    assert "unknown label 'Hernia'" in probs[0].message and "h.yaml" in probs[0].message
    assert "labels.csv, line 5, row 4 [Finding Labels]" in str(e.value)


CHEXPERT = """\
Path,Sex,Age,No Finding,Cardiomegaly,Edema,Pleural Effusion
train/p1/s1/view1.png,F,60,,1,-1,
train/p1/s2/view1.png,M,71,1,0,,0
train/p2/s1/view1.png,F,45,,-1,1,1
"""


@pytest.fixture
def chexpert(tmp_path):
    (tmp_path / "train.csv").write_text(CHEXPERT)
    return tmp_path


def test_chexpert_needs_uncertainty_policy(chexpert):
    with pytest.raises(DataConfigError) as e:
        build_dataset({"format": "csv_multilabel", "path": str(chexpert / "train.csv"), "check_images": False})
    msg = str(e.value)
    assert "data.uncertain" in msg and "positive|negative|ignore" in msg and "train.csv" in msg
    assert "line 2" in msg and "'Edema'" in msg and "2 uncertain" in msg
    with pytest.raises(DataConfigError, match="allowed"):
        build_dataset({"format": "csv_multilabel", "path": str(chexpert / "train.csv"), "uncertain": "maybe"})


@pytest.mark.parametrize(
    "policy, labels0, labels2, ignored",
    [
        ("positive", ("Cardiomegaly", "Edema"), ("Cardiomegaly", "Edema", "Pleural Effusion"), None),
        ("negative", ("Cardiomegaly",), ("Edema", "Pleural Effusion"), None),
        ("ignore", ("Cardiomegaly",), ("Edema", "Pleural Effusion"), 2),
    ],
)
def test_chexpert_policies(chexpert, policy, labels0, labels2, ignored):
    ds = build_dataset(
        {"format": "csv_multilabel", "path": str(chexpert / "train.csv"), "uncertain": policy, "check_images": False,
         "templates": {"finding": "Findings: {labels}"}}
    )
    # auto label columns: the 1/0/-1/blank ones (not Sex, Age)
    assert ds.vocab["finding"] == ("No Finding", "Cardiomegaly", "Edema", "Pleural Effusion")
    assert ds[0].labels["finding"] == labels0
    assert ds[1].labels["finding"] == ("No Finding",)
    assert ds[2].labels["finding"] == labels2
    assert ds.texts("finding")[0] == "Findings: " + ", ".join(labels0)
    assert ds.stats["uncertain_values"] == 2
    assert ds.stats.get("uncertain_ignored") == ignored
    assert ds.task_targets("finding_multilabel")[0].tolist() == [int(c in labels0) for c in ds.vocab["finding"]]
    assert ds[0].image == str(chexpert / "train/p1/s1/view1.png")


def test_bad_flag_value_names_row_and_column(chexpert):
    (chexpert / "train.csv").write_text(CHEXPERT + "train/p3/s1/view1.png,M,50,,2,0,yes\n")
    with pytest.raises(DataValidationError) as e:
        build_dataset({"format": "csv_multilabel", "path": str(chexpert / "train.csv"), "uncertain": "negative",
                       "label_columns": ["No Finding", "Cardiomegaly", "Edema", "Pleural Effusion"], "check_images": False})
    probs = e.value.problems
    assert [(p.line, p.field) for p in probs] == [(5, "Cardiomegaly"), (5, "Pleural Effusion")]
    assert "'2'" in probs[0].message and "1, 0, -1" in probs[0].message


RFMID = """\
ID,Disease_Risk,DR,ARMD,MH,Split
1,1,1,0,0,train
2,0,0,0,0,val
3,1,0,1,1,test
"""


@pytest.fixture
def rfmid(tmp_path):
    (tmp_path / "rfmid.csv").write_text(RFMID)
    for i in (1, 2, 3):
        png(tmp_path / "img" / f"{i}.png", i)
    return tmp_path


def test_rfmid_01_columns_with_split_column(rfmid):
    base = {"format": "csv_multilabel", "path": str(rfmid / "rfmid.csv"), "image_column": "ID", "image_suffix": ".png",
            "image_root": str(rfmid / "img"), "label_columns": ["DR", "ARMD", "MH"], "split_column": "Split"}
    ds = build_dataset({**base, "empty_labels": "text"})
    assert [s.split for s in ds] == ["train", "val", "test"]
    assert ds.texts("finding") == ["DR", "no finding", "ARMD, MH"]
    assert ds[1].labels["finding"] == ()
    assert ds.task_targets("finding_multilabel").tolist() == [[1, 0, 0], [0, 0, 0], [0, 1, 1]]
    assert int(ds.image(2)[0, 0, 0]) == 3
    ds = build_dataset({**base, "empty_labels": "missing"})
    assert ds.texts("finding")[1] is None and list(ds.present("finding")) == [True, False, True]
    ds = build_dataset({**base, "empty_labels": "text", "empty_text": "a healthy retina", "templates": {"finding": "Fundus: {labels}"}})
    assert ds.texts("finding")[1] == "Fundus: a healthy retina"


def test_rfmid_auto_columns(rfmid):
    ds = build_dataset({"format": "csv_multilabel", "path": str(rfmid / "rfmid.csv"), "image_column": "ID",
                        "image_suffix": ".png", "image_root": str(rfmid / "img"), "split_column": "Split",
                        "empty_labels": "missing"})
    # ID (1, 2, 3) is the image column; every other 0/1 column is a label
    assert ds.vocab["finding"] == ("Disease_Risk", "DR", "ARMD", "MH")
    assert ds[1].labels["finding"] == ()  # row 2 is all zero -> empty set ...


def test_empty_label_set_is_an_error_by_default(rfmid):
    with pytest.raises(DataValidationError) as e:
        build_dataset({"format": "csv_multilabel", "path": str(rfmid / "rfmid.csv"), "image_column": "ID",
                       "image_suffix": ".png", "image_root": str(rfmid / "img"), "label_columns": ["DR", "ARMD", "MH"]})
    (p,) = e.value.problems
    assert p.file == str(rfmid / "rfmid.csv") and p.line == 3 and p.row == 2
    assert p.field == "label_columns" and "empty label set" in p.message and "data.empty_labels" in p.message


def test_bad_split_value_and_options(rfmid):
    (rfmid / "rfmid.csv").write_text(RFMID.replace("val\n", "holdout\n"))
    with pytest.raises(DataValidationError, match=r"line 3, row 2 \[Split\]: split value 'holdout'"):
        build_dataset({"format": "csv_multilabel", "path": str(rfmid / "rfmid.csv"), "image_column": "ID",
                       "split_column": "Split", "empty_labels": "missing", "check_images": False})
    with pytest.raises(DataConfigError, match="data.patient_column='PID' is not a column"):
        build_dataset({"format": "csv_multilabel", "path": str(rfmid / "rfmid.csv"), "image_column": "ID", "patient_column": "PID"})
    with pytest.raises(DataConfigError, match="data.image_column"):
        build_dataset({"format": "csv_multilabel", "path": str(rfmid / "rfmid.csv")})
    with pytest.raises(DataConfigError, match="data.empty_labels"):
        build_dataset({"format": "csv_multilabel", "path": str(rfmid / "rfmid.csv"), "image_column": "ID", "empty_labels": "skip"})


def test_label_column_not_in_hierarchy(rfmid):
    (rfmid / "h.yaml").write_text("levels: [group, finding]\ngroup:\n  retina: [DR, ARMD]\n")
    with pytest.raises(DataValidationError) as e:
        build_dataset({"format": "csv_multilabel", "path": str(rfmid / "rfmid.csv"), "image_column": "ID",
                       "label_columns": ["DR", "ARMD", "MH"], "hierarchy": str(rfmid / "h.yaml"), "empty_labels": "missing",
                       "on_bad_sample": "skip", "check_images": False})
    (p,) = e.value.problems  # a column problem cannot be skipped
    assert p.field == "MH" and p.file == str(rfmid / "rfmid.csv") and not p.skippable


def test_hierarchy_file_errors(tmp_path, nih):
    bad = tmp_path / "bad.yaml"
    bad.write_text("levels: [category, disease]\ncategory: [a, b]\n")
    with pytest.raises(DataConfigError, match=r"bad.yaml \[category\]"):
        build_dataset({"format": "csv_multilabel", "path": str(nih / "labels.csv"), "hierarchy": str(bad)})
    bad.write_text("levels: [category, disease]\ncategory: {A: [x]}\ndisease: [y]\n")
    with pytest.raises(DataConfigError, match=r"\['x'\] are not in the fine list"):
        build_dataset({"format": "csv_multilabel", "path": str(nih / "labels.csv"), "hierarchy": str(bad)})
    bad.write_text("levels: [disease]\nlevles: 1\n")
    with pytest.raises(DataConfigError, match="unknown key"):
        build_dataset({"format": "csv_multilabel", "path": str(nih / "labels.csv"), "hierarchy": str(bad)})


def test_split_column_named_split_is_used_by_default(rfmid):
    (rfmid / "rfmid.csv").write_text(RFMID.replace(",Split", ",split"))
    ds = build_dataset({"format": "csv_multilabel", "path": str(rfmid / "rfmid.csv"), "image_column": "ID",
                        "empty_labels": "missing", "check_images": False})
    assert [s.split for s in ds] == ["train", "val", "test"]
    assert "split" not in ds.vocab["finding"]
