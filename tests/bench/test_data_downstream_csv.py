"""downstream_csv: the MGLL layout (All_csv_downstream/<name>_{Train,Val,Test}.csv) and a plain table."""

import numpy as np
import pytest
from PIL import Image

from bench.data import DataConfigError, build_dataset
from bench.data.problems import DataValidationError


def npz(path, value=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, image=np.full((4, 4, 3), value, dtype=np.uint8))


def png(path, value=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((4, 4, 3), value, dtype=np.uint8)).save(path)


def mgll_layout(root, name, header, rows_by_split):
    d = root / "All_csv_downstream"
    d.mkdir(parents=True, exist_ok=True)
    for suffix, rows in rows_by_split.items():
        (d / f"{name}_{suffix}.csv").write_text(header + "\n" + "".join(r + "\n" for r in rows))
        for r in rows:
            image_id = r.split(",")[0]
            npz(root / "All_data_npz" / (image_id[len("/All_data/"):].rsplit(".", 1)[0] + ".npz"), 7)


def test_mgll_multiclass(tmp_path):
    mgll_layout(tmp_path, "GPT_REFUGE1200", "ImageID,label", {
        "Train": ["/All_data/REFUGE/t1.jpg,0", "/All_data/REFUGE/t2.jpg,1", "/All_data/REFUGE/t3.jpg,1"],
        "Val": ["/All_data/REFUGE/v1.jpg,0"],
        "Test": ["/All_data/REFUGE/s1.jpg,1.0", "/All_data/REFUGE/s2.jpg,0"],
    })
    ds = build_dataset({"format": "downstream_csv", "path": str(tmp_path), "csv_name": "GPT_REFUGE1200",
                        "task_kind": "multiclass", "resolution": 64})
    assert ds.levels == ()
    assert [s.split for s in ds] == ["train"] * 3 + ["val"] + ["test"] * 2
    assert ds.task_specs["GPT_REFUGE1200"].kind == "multiclass"
    assert ds.task_specs["GPT_REFUGE1200"].classes == ("0", "1")
    assert ds.task_targets("GPT_REFUGE1200").tolist() == [0, 1, 1, 0, 1, 0]
    assert ds[0].image == str(tmp_path) + "/All_data_npz/REFUGE/t1.npz"
    assert int(ds.image(0)[0, 0, 0]) == 7
    assert ds.split("test").task_targets("GPT_REFUGE1200").tolist() == [1, 0]


def test_mgll_multilabel_with_zero_shot_texts(tmp_path):
    mgll_layout(tmp_path, "RFMiD", "ImageID,DR,ARMD,MH", {
        "Train": ["/All_data/R/1.png,1,0,1", "/All_data/R/2.png,0,0,0"],
        "Val": ["/All_data/R/3.png,0,1,0"],
        "Test": ["/All_data/R/4.png,1,1,0"],
    })
    ds = build_dataset({"format": "downstream_csv", "path": str(tmp_path), "csv_name": "RFMiD", "task_kind": "multilabel",
                        "task_name": "rfmid", "label_template": "a fundus photograph of {labels}"})
    assert ds.levels == ("label",)
    assert ds.vocab["label"] == ("DR", "ARMD", "MH")
    assert ds.texts("label") == ["a fundus photograph of DR, MH", None, "a fundus photograph of ARMD",
                                 "a fundus photograph of DR, ARMD"]
    np.testing.assert_array_equal(ds.multi_hot("label"), ds.task_targets("rfmid"))
    assert ds.task_targets("rfmid").tolist() == [[1, 0, 1], [0, 0, 0], [0, 1, 0], [1, 1, 0]]


def test_mgll_missing_table(tmp_path):
    mgll_layout(tmp_path, "X", "ImageID,label", {"Train": ["/All_data/a.png,0"], "Val": ["/All_data/b.png,0"]})
    with pytest.raises(DataConfigError, match="X_Test.csv"):
        build_dataset({"format": "downstream_csv", "path": str(tmp_path), "csv_name": "X", "task_kind": "multiclass"})


def test_plain_table_with_split_column_and_class_names(tmp_path):
    for n in "abcd":
        png(tmp_path / "img" / f"{n}.png")
    (tmp_path / "t.csv").write_text(
        "image,grade,split,patient\nimg/a.png,mild,train,p1\nimg/b.png,none,train,p2\nimg/c.png,2,val,p3\nimg/d.png,PDR,test,p4\n"
    )
    ds = build_dataset({"format": "downstream_csv", "path": str(tmp_path / "t.csv"), "task_kind": "multiclass",
                        "class_names": ["none", "mild", "moderate", "PDR"], "patient_column": "patient",
                        "label_template": "{labels} diabetic retinopathy"})
    assert ds.task_specs["t"].classes == ("none", "mild", "moderate", "PDR")
    assert ds.task_targets("t").tolist() == [1, 0, 2, 3]
    assert [s.split for s in ds] == ["train", "train", "val", "test"]
    assert ds.texts("label") == ["mild diabetic retinopathy", "none diabetic retinopathy",
                                 "moderate diabetic retinopathy", "PDR diabetic retinopathy"]
    assert ds[0].image == str(tmp_path / "img" / "a.png") and ds[0].patient_id == "p1"


def test_plain_table_without_split_gets_drawn_splits(tmp_path):
    png(tmp_path / "a.png")
    rows = "".join(f"x{i}.png,{i % 3}\n" for i in range(20))
    (tmp_path / "t.csv").write_text("id,y\n" + rows)
    ds = build_dataset({"format": "downstream_csv", "path": str(tmp_path / "t.csv"), "task_kind": "multiclass",
                        "check_images": False, "val_fraction": 0.2, "test_fraction": 0.2})
    assert sorted(s.split for s in ds).count("val") == 4 and sorted(s.split for s in ds).count("test") == 4
    assert ds.task_specs["t"].classes == ("0", "1", "2")


def test_bad_values_reported_with_row_and_column(tmp_path):
    (tmp_path / "t.csv").write_text("image,a,b,split\nx.png,1,0,train\ny.png,1,,train\nz.png,2,0,nope\n,0,0,val\n")
    with pytest.raises(DataValidationError) as e:
        build_dataset({"format": "downstream_csv", "path": str(tmp_path / "t.csv"), "task_kind": "multilabel",
                       "check_images": False})
    got = [(p.line, p.row, p.field) for p in e.value.problems]
    assert got == [(3, 2, "b"), (4, 3, "a"), (4, 3, "split"), (5, 4, "image")]
    assert all(p.file == str(tmp_path / "t.csv") for p in e.value.problems)
    assert "value '' in column 'b' is not 0 or 1" in str(e.value)


def test_multiclass_out_of_range_and_options(tmp_path):
    (tmp_path / "t.csv").write_text("image,y\nx.png,3\ny.png,good\n")
    with pytest.raises(DataValidationError) as e:
        build_dataset({"format": "downstream_csv", "path": str(tmp_path / "t.csv"), "task_kind": "multiclass",
                       "num_classes": 3, "check_images": False})
    assert [p.row for p in e.value.problems] == [1, 2]
    assert "[0, 3)" in e.value.problems[0].message
    with pytest.raises(DataConfigError, match="data.task_kind"):
        build_dataset({"format": "downstream_csv", "path": str(tmp_path / "t.csv")})
    with pytest.raises(DataConfigError, match="allowed"):
        build_dataset({"format": "downstream_csv", "path": str(tmp_path / "t.csv"), "task_kind": "regression"})
    with pytest.raises(DataConfigError, match="csv_name"):
        build_dataset({"format": "downstream_csv", "path": str(tmp_path), "task_kind": "multiclass"})
