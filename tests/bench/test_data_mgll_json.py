"""mgll_json: the MGLL release's list layout (fundus and MIDRC) and the third-party manifest JSON."""

import json

import numpy as np
import pytest
from PIL import Image

from bench.data import DataConfigError, build_dataset
from bench.data.problems import DataValidationError

PROMPT = "This is a fundus image of "


def npz(path, value=0, shape=(8, 8, 3)):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, image=np.full(shape, value, dtype=np.uint8))


def png(path, value=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, dtype=np.uint8)).save(path)


def write_json(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


FUNDUS_TRAIN_A = [
    {"ImageID": "/All_data/DS1/a.png", "Disease": "Abnormal, Mild NPDR", "Description": "Only microaneurysms observed"},
    {"ImageID": "/All_data/DS1/b.jpg", "Disease": "Normal, Healthy", "Description": "Clear optic disk boundaries, Normal fundus color"},
]
FUNDUS_TRAIN_B = [
    {"ImageID": "/All_data/DS2/c.png", "Disease": "Abnormal, Mild NPDR, DME", "Description": "Only microaneurysms observed"},
]
FUNDUS_VAL = [
    {"ImageID": "/All_data/DS2/d.png", "Disease": "Normal, Healthy", "Description": "Clear optic disk boundaries"},
]


@pytest.fixture
def fundus_dir(tmp_path):
    d = tmp_path / "data"
    write_json(d / "json" / "train_a.json", FUNDUS_TRAIN_A)
    write_json(d / "json" / "train_b.json", FUNDUS_TRAIN_B)
    write_json(d / "json" / "val.json", FUNDUS_VAL)
    (d / "2level_multi_disease_list_train.txt").write_text("/json/train_a.json\n/json/train_b.json\n")
    (d / "2level_multi_disease_list_val.txt").write_text("/json/val.json\n")
    for k, name in enumerate(["DS1/a", "DS1/b", "DS2/c", "DS2/d"]):
        npz(d / "All_data_npz" / f"{name}.npz", value=10 * k)
    return d


def test_fundus_list_round_trip(fundus_dir):
    ds = build_dataset(
        {"format": "mgll_json", "path": str(fundus_dir), "list": "2level_multi_disease_list", "resolution": 64, "levels": None}
    )
    assert ds.levels == ("disease", "description")
    assert [s.id for s in ds] == [r["ImageID"] for r in FUNDUS_TRAIN_A + FUNDUS_TRAIN_B + FUNDUS_VAL]
    assert [s.split for s in ds] == ["train", "train", "train", "val"]
    assert ds.texts("disease") == [PROMPT + r["Disease"] for r in FUNDUS_TRAIN_A + FUNDUS_TRAIN_B + FUNDUS_VAL]
    assert ds.texts("description")[0] == "Only microaneurysms observed"
    assert ds[0].labels["disease"] == ("Abnormal", "Mild NPDR")
    assert ds[2].labels["disease"] == ("Abnormal", "Mild NPDR", "DME")
    assert ds[1].labels["description"] == ("Clear optic disk boundaries, Normal fundus color",)
    assert ds.vocab["disease"] == ("Abnormal", "DME", "Healthy", "Mild NPDR", "Normal")
    np.testing.assert_array_equal(
        ds.multi_hot("disease"), [[1, 0, 0, 1, 0], [0, 0, 1, 0, 1], [1, 1, 0, 1, 0], [0, 0, 1, 0, 1]]
    )
    # identical Description strings share an id; identical Disease strings too
    assert list(ds.text_ids("description")) == [0, 1, 0, 2]
    assert list(ds.text_ids("disease")) == [0, 1, 2, 1]
    # the release's npz rule: data_dir + '/All_data_npz' + splitext(ImageID[9:])[0] + '.npz'
    assert ds[1].image == str(fundus_dir) + "/All_data_npz/DS1/b.npz"
    assert ds.image(2).shape == (8, 8, 3) and int(ds.image(2)[0, 0, 0]) == 20
    assert ds.split("val")[0].id == "/All_data/DS2/d.png"


def test_description_labels_comma(fundus_dir):
    ds = build_dataset(
        {"format": "mgll_json", "path": str(fundus_dir), "list": "2level_multi_disease_list", "description_labels": "comma"}
    )
    assert ds[1].labels["description"] == ("Clear optic disk boundaries", "Normal fundus color")


def test_repeated_image_ids_get_suffixes(fundus_dir):
    write_json(fundus_dir / "json" / "train_b.json", FUNDUS_TRAIN_B + [dict(FUNDUS_TRAIN_B[0], Disease="Abnormal, DME")])
    ds = build_dataset({"format": "mgll_json", "path": str(fundus_dir), "list": "2level_multi_disease_list"})
    assert [s.id for s in ds][2:4] == ["/All_data/DS2/c.png", "/All_data/DS2/c.png#2"]
    assert ds[3].image == ds[2].image


def test_keyword_list_single_level(tmp_path):
    d = tmp_path / "d"
    write_json(d / "k.json", [{"ImageID": "/All_data/X/a.png", "Keyword": "glaucoma"}])
    write_json(d / "kv.json", [{"ImageID": "/All_data/X/b.png", "Keyword": "cataract, myopia"}])
    (d / "original_list_train.txt").write_text("/k.json\n")
    (d / "original_list_val.txt").write_text("kv.json\n")  # no leading slash is fine too
    npz(d / "All_data_npz/X/a.npz")
    npz(d / "All_data_npz/X/b.npz")
    ds = build_dataset({"format": "mgll_json", "path": str(d), "list": "original_list"})
    assert ds.levels == ("disease",)
    assert ds.texts("disease") == [PROMPT + "glaucoma", PROMPT + "cataract, myopia"]
    assert ds[1].labels["disease"] == ("cataract", "myopia")


def test_midrc_list(tmp_path):
    d = tmp_path / "midrc"
    img = tmp_path / "imgs" / "x1.png"
    png(img)
    png(tmp_path / "imgs" / "x2.png", 50)
    rec = {"ImageID": str(img), "modality": "CR", "study_description_0": "XR Port Chest 1V", "series_description": "CXR AP Grid"}
    write_json(d / "tr.json", [rec])
    write_json(d / "va.json", [{"ImageID": "../imgs/x2.png", "modality": "DX", "study_description_0": "XR Chest 2V",
                                "series_description": "PA"}])
    (d / "MIDRC_list_train.txt").write_text("/tr.json\n")
    (d / "MIDRC_list_val.txt").write_text("/va.json\n")
    ds = build_dataset({"format": "mgll_json", "path": str(d), "list": "MIDRC_list", "resolution": 32})
    assert ds.levels == ("modality", "study", "series")
    assert ds.texts("modality") == ["This is a CR image.", "This is a DX image."]
    assert ds.texts("study") == ["XR Port Chest 1V", "XR Chest 2V"]
    assert ds.texts("series") == ["CXR AP Grid", "PA"]
    assert ds[0].labels == {"modality": ("CR",), "study": ("XR Port Chest 1V",), "series": ("CXR AP Grid",)}
    assert ds[0].image == str(img)  # verbatim
    assert int(ds.image(1)[0, 0, 0]) == 50  # relative ids are taken from the data dir
    assert [s.split for s in ds] == ["train", "val"]


def test_manifest_json(tmp_path):
    png(tmp_path / "imgs" / "a.png")
    png(tmp_path / "imgs" / "b.png")
    npz(tmp_path / "imgs" / "c.npz")
    manifest = {
        "train": [
            {"image_path": "imgs/a.png", "annotations": [
                {"Disease": "Abnormal, Glaucoma", "Description": "Enlarged cup"},
                {"Disease": "Abnormal, AMD", "Description": "Drusen near the macula"},
            ]},
            {"id": "bee", "path": "imgs/b.png", "disease": "Normal, Healthy", "description": "Clear disc"},
        ],
        "splits": {"validation": [{"ImageID": str(tmp_path / "imgs" / "c.npz"), "Disease": "Normal", "Description": "ok"}]},
    }
    write_json(tmp_path / "manifest.json", manifest)
    ds = build_dataset({"format": "mgll_json", "path": str(tmp_path / "manifest.json"), "resolution": 64})
    assert ds.levels == ("disease", "description")
    assert [s.id for s in ds] == ["imgs/a.png#0", "imgs/a.png#1", "bee", str(tmp_path / "imgs" / "c.npz")]
    assert [s.split for s in ds] == ["train", "train", "train", "val"]
    assert ds.texts("disease")[:3] == [PROMPT + "Abnormal, Glaucoma", PROMPT + "Abnormal, AMD", PROMPT + "Normal, Healthy"]
    assert ds.texts("description")[1] == "Drusen near the macula"
    assert ds[0].image == ds[1].image == str(tmp_path / "imgs" / "a.png")
    assert ds[1].labels["disease"] == ("Abnormal", "AMD")
    assert ds.image(3).shape == (8, 8, 3)


def test_manifest_missing_fields_reported_together(tmp_path):
    png(tmp_path / "a.png")
    manifest = {
        "train": [
            {"image": "a.png", "Description": "x"},                       # no Disease
            {"Disease": "Normal", "Description": "y"},                     # no image field
            {"image": "a.png", "annotations": [{"Disease": "Normal"}]},   # no Description
        ],
        "validation": [],
    }
    write_json(tmp_path / "m.json", manifest)
    with pytest.raises(DataValidationError) as e:
        build_dataset({"format": "mgll_json", "path": str(tmp_path / "m.json")})
    probs = e.value.problems
    assert len(probs) == 3
    assert all(p.file == str(tmp_path / "m.json") for p in probs)
    assert [p.record for p in probs] == [0, 1, 2]
    assert probs[0].field == "Disease" and "Disease" in str(e.value)
    assert "image_path" in probs[1].field
    assert probs[2].field == "annotations[0].Description"


def test_manifest_needs_both_splits(tmp_path):
    write_json(tmp_path / "m.json", {"train": []})
    with pytest.raises(DataConfigError, match="validation"):
        build_dataset({"format": "mgll_json", "path": str(tmp_path / "m.json")})


def test_list_record_missing_field_names_file_record_field(fundus_dir):
    bad = [dict(FUNDUS_TRAIN_B[0]), {"ImageID": "/All_data/DS2/e.png", "Disease": "Normal"}]
    del bad[0]["Description"]
    write_json(fundus_dir / "json" / "train_b.json", bad)
    with pytest.raises(DataValidationError) as e:
        build_dataset({"format": "mgll_json", "path": str(fundus_dir), "list": "2level_multi_disease_list"})
    probs = e.value.problems
    assert [(p.record, p.field) for p in probs] == [(0, "Description"), (1, "Description")]
    assert all(p.file.endswith("train_b.json") for p in probs)
    assert "train_b.json, record 1 [Description]: missing field 'Description'" in str(e.value)


def test_list_options_errors(fundus_dir, tmp_path):
    with pytest.raises(DataConfigError, match="data.schema"):
        build_dataset({"format": "mgll_json", "path": str(fundus_dir), "list": "my_list"})
    with pytest.raises(DataConfigError, match="data.list"):
        build_dataset({"format": "mgll_json", "path": str(fundus_dir)})
    with pytest.raises(DataConfigError, match=r"data.lst is not an option of data.format=mgll_json \(did you mean data.list\?\)"):
        build_dataset({"format": "mgll_json", "path": str(fundus_dir), "list": "2level_list", "lst": 1})
    with pytest.raises(DataConfigError, match="2level_list_train.txt"):
        build_dataset({"format": "mgll_json", "path": str(fundus_dir), "list": "2level_list"})
    with pytest.raises(DataConfigError, match="image_rule"):
        build_dataset({"format": "mgll_json", "path": str(fundus_dir), "list": "2level_multi_disease_list", "image_rule": "zip"})


def test_custom_list_name_with_schema_and_listed_file_missing(fundus_dir):
    (fundus_dir / "mine_train.txt").write_text("/json/train_a.json\n/json/nope.json\n")
    (fundus_dir / "mine_val.txt").write_text("/json/val.json\n")
    with pytest.raises(DataValidationError) as e:
        build_dataset({"format": "mgll_json", "path": str(fundus_dir), "list": "mine", "schema": "fundus"})
    (p,) = e.value.problems
    assert p.file.endswith("mine_train.txt") and p.line == 2 and "nope.json" in p.message


def test_missing_npz_names_json_record_and_path(fundus_dir):
    (fundus_dir / "All_data_npz" / "DS2" / "c.npz").unlink()
    with pytest.raises(DataValidationError) as e:
        build_dataset({"format": "mgll_json", "path": str(fundus_dir), "list": "2level_multi_disease_list"})
    (p,) = e.value.problems
    assert p.file.endswith("train_b.json") and p.record == 0 and p.field == "ImageID"
    assert p.message == f"image file not found: {fundus_dir}/All_data_npz/DS2/c.npz"


def test_image_root_replaces_data_dir(fundus_dir, tmp_path):
    (fundus_dir / "All_data_npz").rename(tmp_path / "All_data_npz")
    ds = build_dataset({"format": "mgll_json", "path": str(fundus_dir), "list": "2level_multi_disease_list",
                        "image_root": str(tmp_path)})
    assert ds[0].image == f"{tmp_path}/All_data_npz/DS1/a.npz"
