"""`tuneflow predict` on one image, a folder and a zip, with a run folder, a model version or `current`.

That predict gives the same probabilities as evaluation is checked on a trained run in test_flow.py.
"""

from __future__ import annotations

import io
import shutil
import zipfile

import pandas as pd
import pytest

from tuneflow.cli import main
from tuneflow.predict import list_images, predict_encoded, read_encoded
from tuneflow.promotion import point_current_at, store_version

pytestmark = pytest.mark.slow  # loads a real ResNet50


@pytest.fixture(scope="module")
def photos(tiny_dataset, tmp_path_factory):
    """The tiny validation photos, plus a broken JPEG and a text file, as a folder and as a zip."""
    root = tmp_path_factory.mktemp("predict")
    folder = root / "photos"
    shutil.copytree(tiny_dataset.root / "val", folder)
    (folder / "pizza" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (folder / "notes.txt").write_text("not a photo")
    archive = root / "photos.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zipped.write(path, f"photos/{path.relative_to(folder).as_posix()}")
        zipped.writestr("__MACOSX/photos/._x.jpg", b"resource fork")
    return tiny_dataset, folder, archive


@pytest.fixture(scope="module")
def loaded_models() -> dict:
    return {}


@pytest.fixture(autouse=True)
def load_each_model_once(monkeypatch, loaded_models):
    """Loading ResNet50 takes seconds on our CPUs; these tests are about what predict does with a loaded model."""
    import tuneflow.model

    real_load = tuneflow.model.load_classifier

    def load_once(folder):
        key = tuneflow.model.find_model_folder(folder).resolve()
        if key not in loaded_models:
            loaded_models[key] = real_load(folder)
        return loaded_models[key]

    monkeypatch.setattr(tuneflow.model, "load_classifier", load_once)


def read_csv(text: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(text))


def test_one_image_prints_the_notebook_list_matching_the_batch_rows(tiny_model, photos, capsys):
    import tuneflow.model

    _, folder, _ = photos
    model, classes = tuneflow.model.load_classifier(tiny_model)
    batch = predict_encoded(model, classes, read_encoded(folder, list_images(folder).names)).table.set_index("path")
    image = "sashimi/" + sorted(p.name for p in (folder / "sashimi").iterdir())[0]
    assert main(["predict", str(tiny_model), str(folder / image)]) == 0
    printed = eval(capsys.readouterr().out.strip())  # the notebook's format: [('pizza', 0.41), ...]
    assert [p for _, p in printed] == sorted((p for _, p in printed), reverse=True)
    assert {name for name, _ in printed} == {"apple_pie", "pizza", "sashimi"}
    for name, probability in printed:
        assert probability == pytest.approx(batch.loc[image, f"p_{name}"], rel=1e-3, abs=1e-6)


def test_folder_gives_a_csv_and_reports_the_unreadable_file(tiny_model, photos, capsys):
    _, folder, _ = photos
    assert main(["predict", str(tiny_model), str(folder)]) == 0
    captured = capsys.readouterr()
    table = read_csv(captured.out)
    assert len(table) == 6  # 2 validation photos x 3 classes; the broken one is not a row
    assert {"path", "predicted_class", "confidence", "top1_class", "top3_probability", "p_pizza"} <= set(table.columns)
    assert (table["predicted_class"] == table["top1_class"]).all()
    assert "cannot read 'pizza/broken.jpg' as an image" in captured.err
    assert "ignored 1 files that are not images: notes.txt" in captured.err
    assert "predicted 6 images; 1 could not be read" in captured.err


def test_zip_gives_the_same_predictions_as_the_folder(tiny_model, photos, capsys, tmp_path):
    _, folder, archive = photos
    assert main(["predict", str(tiny_model), str(folder), "--output", str(tmp_path / "folder.csv")]) == 0
    assert main(["predict", str(tiny_model), str(archive), "-o", str(tmp_path / "zip.csv")]) == 0
    from_folder = pd.read_csv(tmp_path / "folder.csv")
    from_zip = pd.read_csv(tmp_path / "zip.csv")
    assert list(from_zip["path"]) == ["photos/" + p for p in from_folder["path"]]  # __MACOSX left out
    pd.testing.assert_frame_equal(from_zip.drop(columns="path"), from_folder.drop(columns="path"))
    assert "cannot read 'photos/pizza/broken.jpg'" in capsys.readouterr().err


def test_batches_give_the_same_answer_as_one_pass(tiny_model, photos):
    _, folder, _ = photos
    import tuneflow.model

    model, classes = tuneflow.model.load_classifier(tiny_model)
    names = list_images(folder).names
    one_pass = predict_encoded(model, classes, read_encoded(folder, names))
    in_twos = predict_encoded(model, classes, read_encoded(folder, names), chunk=2)
    pd.testing.assert_frame_equal(one_pass.table, in_twos.table, rtol=1e-5)
    assert [u.name for u in in_twos.unreadable] == ["pizza/broken.jpg"]


def test_current_and_model_versions(tiny_model, photos, tmp_path, capsys):
    _, folder, _ = photos
    image = str(next((folder / "pizza").glob("*.jpg")))
    data_root = tmp_path / "data"
    assert main(["predict", "current", image, "--data-root", str(data_root)]) == 2
    assert "no model is in use yet" in capsys.readouterr().err
    version_dir = store_version(tiny_model, data_root, "v1", {})
    point_current_at(data_root, "v1")
    assert main(["predict", str(version_dir), image]) == 0
    by_version = capsys.readouterr().out
    assert main(["predict", "current", image, "--data-root", str(data_root)]) == 0
    assert capsys.readouterr().out == by_version


def test_an_unreadable_single_image_fails_with_its_name(tiny_model, photos, capsys):
    broken = photos[1] / "pizza" / "broken.jpg"
    assert main(["predict", str(tiny_model), str(broken)]) == 2
    err = capsys.readouterr().err
    assert f"cannot read {str(broken)!r} as an image" in err and "no image" in err
