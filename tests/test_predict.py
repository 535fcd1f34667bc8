"""`tuneflow predict` on one image, a folder and a zip, with a run folder, a model version or `current`.

That predict gives the same probabilities as evaluation is checked on a trained run in test_flow.py; that it reads
a raw photo (EXIF-rotated, WebP, CMYK, 16-bit, ...) as preparation and training do is checked here.
"""

from __future__ import annotations

import io
import shutil
import zipfile

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tuneflow.cli import main
from tuneflow.dataset.archive import IMAGE_SUFFIXES
from tuneflow.evaluation.predict import decode_or_reason, list_images, predict_encoded, read_encoded
from tuneflow.registry.versions import point_current_at, store_version

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
    import tuneflow.training.model

    real_load = tuneflow.training.model.load_classifier

    def load_once(folder):
        key = tuneflow.training.model.find_model_folder(folder).resolve()
        if key not in loaded_models:
            loaded_models[key] = real_load(folder)
        return loaded_models[key]

    monkeypatch.setattr(tuneflow.training.model, "load_classifier", load_once)


def read_csv(text: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(text))


def test_one_image_prints_the_notebook_list_matching_the_batch_rows(tiny_model, photos, capsys):
    import tuneflow.training.model

    _, folder, _ = photos
    model, classes = tuneflow.training.model.load_classifier(tiny_model)
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
    import tuneflow.training.model

    model, classes = tuneflow.training.model.load_classifier(tiny_model)
    names = list_images(folder).names
    one_pass = predict_encoded(model, classes, read_encoded(folder, names))
    in_twos = predict_encoded(model, classes, read_encoded(folder, names), chunk=2)
    pd.testing.assert_frame_equal(one_pass.table, in_twos.table, rtol=1e-5)
    assert [u.name for u in in_twos.unreadable] == ["pizza/broken.jpg"]


def test_current_and_model_versions(tiny_model, photos, tmp_path, capsys):
    _, folder, _ = photos
    # Sorted, and never the fixture's deliberately broken.jpg: glob's order is the file system's.
    image = str(sorted(p for p in (folder / "pizza").glob("*.jpg") if p.name != "broken.jpg")[0])
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


# --- raw photos are read as preparation reads them ------------------------------------------------------------

EXIF_ORIENTATION = 0x0112
# Orientation 6: a viewer turns the stored pixels 90 degrees clockwise to show them, so a phone held in portrait
# stores them turned 90 degrees anticlockwise (PIL's ROTATE_90); 8 is the other way round.
STORED_TURN = {6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}
VIEWER_TURN = {6: Image.Transpose.ROTATE_270, 8: Image.Transpose.ROTATE_90}
# Turning a photo a quarter changes most of its pixels: the drawn 32-px photos differ from themselves turned by
# 30-57 grey levels on average. Two JPEG generations at quality 95 (the phone's, then preparation's) cost 3-7.
SIDEWAYS_MIN_DIFF = 20
REENCODED_MAX_DIFF = 8


def encode(image: Image.Image, format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format, **options)
    return buffer.getvalue()


def exif_rotated_jpeg(upright: Image.Image, orientation: int) -> bytes:
    """The photo as a phone held in portrait writes it: pixels stored turned, and the EXIF tag to turn them back."""
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    return encode(upright.transpose(STORED_TURN[orientation]), "JPEG", quality=95, exif=exif)


def turned_by_hand(rotated_jpeg: bytes, orientation: int) -> bytes:
    """The same stored pixels turned upright without EXIF's help, as a lossless WebP: the upright copy."""
    with Image.open(io.BytesIO(rotated_jpeg)) as stored:
        return encode(stored.transpose(VIEWER_TURN[orientation]), "WEBP", lossless=True)


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(int) - b.astype(int)).mean())


def decode_ignoring_exif(encoded: bytes) -> np.ndarray:
    """What predict did before: TensorFlow straight on the file's bytes, which never reads EXIF."""
    import tensorflow as tf

    from tuneflow.imaging.decoding import decode_image

    return decode_image(tf.constant(encoded), 32).numpy()


@pytest.fixture(scope="module")
def val_photo(tiny_dataset):
    """A validation photo of the tiny dataset, upright, as evaluation predicts it."""
    return sorted((tiny_dataset.root / "val").rglob("*.jpg"))[0]


def test_folder_and_zip_list_every_format_preparation_reads(tmp_path):
    folder = tmp_path / "photos"
    (folder / "trip").mkdir(parents=True)
    photos = [f"trip/photo{suffix.upper() if i % 2 else suffix}" for i, suffix in enumerate(sorted(IMAGE_SUFFIXES))]
    photos += ["trip/IMG_0001.HEIC"]  # listed, to be named unreadable with the fix, not ignored as "not an image"
    for name in photos + ["notes.txt", "trip/clip.mov"]:
        (folder / name).write_bytes(b"whatever")
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for name in photos + ["notes.txt", "trip/clip.mov"]:
            zipped.writestr(f"photos/{name}", b"whatever")
    assert {".webp", ".tif", ".tiff", ".jfif"} <= IMAGE_SUFFIXES  # what preparation converts; predict reads them too
    listing = list_images(folder)
    assert listing.names == sorted(photos) and listing.ignored == ["notes.txt", "trip/clip.mov"]
    zipped_listing = list_images(archive)
    assert sorted(zipped_listing.names) == sorted(f"photos/{name}" for name in photos)
    assert sorted(zipped_listing.ignored) == ["photos/notes.txt", "photos/trip/clip.mov"]


def test_prepared_photos_decode_exactly_as_training_decodes_them(tiny_dataset):
    """Evaluation reads prepared files: they pass the check as they are and decode to the very same pixels."""
    files = sorted(tiny_dataset.root.rglob("*.jpg"))
    assert len(files) == 30
    for file in files:
        encoded = file.read_bytes()
        assert np.array_equal(decode_or_reason(encoded, 32), decode_ignoring_exif(encoded)), file


def test_evaluation_through_the_decoded_store_gives_the_per_photo_probabilities(tiny_model, tmp_path):
    """Evaluation reads photos as training does (decoded in parallel into the decoded store, read back batched)
    where it decoded them one by one in Python: at every decode plan the probabilities stay those of the
    per-photo path, which `tuneflow predict` still takes."""
    import tuneflow.training.model
    from tuneflow.evaluation.evaluate import predict_prepared
    from tuneflow.imaging.decoding import plan_decodes, read_image_header

    model, classes = tuneflow.training.model.load_classifier(tiny_model)
    shapes = [(512, 384, "JPEG"), (384, 512, "JPEG"), (512, 341, "JPEG"), (200, 150, "JPEG"), (60, 40, "JPEG"),
              (90, 70, "PNG"), (32, 32, "JPEG")]
    names = []
    for number in range(40):  # more than one batch of 32
        width, height, fmt = shapes[number % len(shapes)]
        coarse = np.random.default_rng(number).integers(0, 256, (height // 8 + 1, width // 8 + 1, 3), "uint8")
        name = f"val/{classes[number % len(classes)]}/{number:02d}.{fmt.lower()}"
        (tmp_path / "dataset" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(coarse).resize((width, height), Image.BILINEAR).save(tmp_path / "dataset" / name, fmt)
        names.append(name)
    plans = set(plan_decodes([read_image_header(str(tmp_path / "dataset" / name)) for name in names], 32))
    assert {(plan.ratio, plan.resize) for plan in plans} >= {(8, "antialias"), (4, "bilinear"), (1, "area"),
                                                             (1, "bilinear")}

    per_photo = predict_encoded(model, classes, read_encoded(tmp_path / "dataset", names))
    batched = predict_prepared(model, classes, tmp_path / "dataset", names, tmp_path / "decoded")
    assert not per_photo.unreadable and list(batched["path"]) == names
    columns = [f"p_{name}" for name in classes]
    np.testing.assert_array_equal(batched[columns].to_numpy(), per_photo.table[columns].to_numpy())
    assert list(batched["predicted_class"]) == list(per_photo.table["predicted_class"])
    assert list(batched["true_class"]) == [name.split("/")[1] for name in names]
    assert (batched["correct"] == (batched["true_class"] == batched["predicted_class"])).all()


@pytest.mark.parametrize("orientation", [6, 8])
def test_an_exif_rotated_jpeg_decodes_upright(val_photo, orientation):
    upright = decode_or_reason(val_photo.read_bytes(), 32)
    with Image.open(val_photo) as photo:
        rotated = exif_rotated_jpeg(photo.convert("RGB"), orientation)
    decoded = decode_or_reason(rotated, 32)
    # Not vacuous: the pixels as stored are far from the upright photo (what predict used to decode).
    assert mean_abs_diff(decode_ignoring_exif(rotated), upright) > SIDEWAYS_MIN_DIFF
    assert mean_abs_diff(decoded, upright) < REENCODED_MAX_DIFF
    # Turned exactly as turning the stored pixels by hand does (both reach the decoder re-encoded the same way).
    assert np.array_equal(decoded, decode_or_reason(turned_by_hand(rotated, orientation), 32))


SIXTEEN_BIT = np.repeat([[200 * 256] * 32 + [50 * 256] * 32], 64, axis=0).astype(np.uint16)  # 200 | 50 in 8 bits
RAW_FORMATS = {
    "16-bit PNG": (lambda: encode(Image.fromarray(SIXTEEN_BIT), "PNG"), (200, 200, 200), (50, 50, 50)),
    "16-bit TIFF": (lambda: encode(Image.fromarray(SIXTEEN_BIT), "TIFF"), (200, 200, 200), (50, 50, 50)),
    "CMYK JPEG": (lambda: encode(Image.new("CMYK", (64, 64), (0, 255, 255, 0)), "JPEG", quality=95), (255, 0, 0),
                  (255, 0, 0)),
    "grayscale JPEG": (lambda: encode(Image.new("L", (64, 64), 120), "JPEG", quality=95), (120,) * 3, (120,) * 3),
    "transparent PNG": (lambda: encode(Image.new("RGBA", (64, 64), (0, 0, 0, 0)), "PNG"), (255,) * 3, (255,) * 3),
    "WebP": (lambda: encode(Image.new("RGB", (64, 64), (10, 120, 200)), "WEBP"), (10, 120, 200), (10, 120, 200)),
}


@pytest.mark.parametrize("kind", RAW_FORMATS)
def test_other_formats_and_modes_decode_to_sensible_rgb(kind):
    make, left, right = RAW_FORMATS[kind]
    decoded = decode_or_reason(make(), 32)
    assert not isinstance(decoded, str), decoded
    assert decoded.shape == (32, 32, 3) and decoded.dtype == np.uint8
    # Within a few levels: JPEG's colour conversion; a transparent area is white, as preparation makes it.
    np.testing.assert_allclose(decoded[:, :12].reshape(-1, 3).mean(0), left, atol=3)
    np.testing.assert_allclose(decoded[:, -12:].reshape(-1, 3).mean(0), right, atol=3)


def test_heic_and_text_files_are_named_with_the_reason(tiny_model, val_photo, tmp_path, capsys):
    folder = tmp_path / "phone"
    folder.mkdir()
    shutil.copy(val_photo, folder / "dinner.jpg")
    (folder / "IMG_0001.HEIC").write_bytes(b"\x00\x00\x00\x18ftypheic" + bytes(40))
    (folder / "menu.jpg").write_text("not a photo, whatever its name says")
    assert main(["predict", str(tiny_model), str(folder)]) == 0
    err = capsys.readouterr().err
    assert "cannot read 'IMG_0001.HEIC' as an image: HEIC (iPhone) images cannot be read; export them as JPEG" in err
    assert "cannot read 'menu.jpg' as an image: not an image file (it starts with b'not a photo,')" in err
    assert "predicted 1 images; 2 could not be read" in err
    heic = folder / "IMG_0001.HEIC"
    assert main(["predict", str(tiny_model), str(heic)]) == 2
    assert f"cannot read {str(heic)!r} as an image: HEIC (iPhone) images cannot be read; export them as JPEG" in (
        capsys.readouterr().err
    )


def test_an_exif_rotated_jpeg_and_a_webp_get_the_probabilities_of_their_prepared_copies(
    tiny_model, tiny_dataset, val_photo, tmp_path, monkeypatch, capsys
):
    """The issue's case end to end: a photo taken in portrait, and a WebP, through `tuneflow predict`.

    The reference is the row evaluation writes in predictions.csv for the same files put in a dataset.zip and
    prepared as a retrain run prepares them, so the probabilities must agree to float noise (1e-5), not to a
    re-encoding tolerance. (Against the original photo's own row they cannot agree closely: preparation
    re-encodes a converted photo at JPEG quality 95, a few grey levels on these 32-px photos, which moves the
    untrained tiny model's probabilities by up to ~0.1, as much as turning the photo sideways does.)
    """
    import tuneflow.training.model
    import tuneflow.evaluation.evaluate as evaluate
    from tuneflow.config import DataSettings
    from tuneflow.evaluation.metrics import read_predictions
    from tuneflow.dataset.prepare import prepare_dataset

    monkeypatch.setattr(evaluate, "load_classifier", tuneflow.training.model.load_classifier)  # the load-once one above
    label = val_photo.parent.name
    with Image.open(val_photo) as photo:
        portrait = exif_rotated_jpeg(photo.convert("RGB"), 6)
    upright = turned_by_hand(portrait, 6)
    archive = tmp_path / "dataset.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for file in sorted(tiny_dataset.root.rglob("*.jpg")):  # already split: train/<class>/, val/<class>/
            zipped.write(file, file.relative_to(tiny_dataset.root).as_posix())
        zipped.writestr(f"val/{label}/portrait.jpg", portrait)
        zipped.writestr(f"val/{label}/upright.webp", upright)
    dataset = prepare_dataset(archive, tmp_path / "run" / "dataset", DataSettings(), seed=0)
    predictions = evaluate.predict_folder_split(tiny_model, dataset.root, tmp_path / "decoded")
    predictions.to_csv(tmp_path / "run" / "predictions.csv", index=False)
    evaluated = read_predictions(tmp_path / "run" / "predictions.csv").set_index("path")
    prepared = {"portrait.jpg": f"val/{label}/portrait.jpg", "upright.webp": f"val/{label}/upright.jpg"}
    assert set(prepared.values()) <= set(evaluated.index)
    # Not vacuous: preparation turned the portrait upright, far from the pixels as the phone stored them.
    upright_pixels = decode_ignoring_exif((dataset.root / prepared["portrait.jpg"]).read_bytes())
    assert mean_abs_diff(decode_ignoring_exif(portrait), upright_pixels) > SIDEWAYS_MIN_DIFF

    phone = tmp_path / "phone"
    phone.mkdir()
    (phone / "portrait.jpg").write_bytes(portrait)
    (phone / "upright.webp").write_bytes(upright)
    assert main(["predict", str(tiny_model), str(phone), "-o", str(tmp_path / "phone.csv")]) == 0
    assert "could not be read" not in capsys.readouterr().err
    predicted = pd.read_csv(tmp_path / "phone.csv").set_index("path")
    columns = [f"p_{name}" for name in ("apple_pie", "pizza", "sashimi")]
    for raw, prepared_name in prepared.items():
        assert raw in predicted.index, f"{raw} was not predicted: {list(predicted.index)}"
        np.testing.assert_allclose(predicted.loc[raw, columns].to_numpy(float),
                                   evaluated.loc[prepared_name, columns].to_numpy(float), atol=1e-5, rtol=0,
                                   err_msg=raw)
    np.testing.assert_allclose(predicted.loc["portrait.jpg", columns].to_numpy(float),
                               predicted.loc["upright.webp", columns].to_numpy(float), atol=1e-5, rtol=0)
    # One photo alone prints the notebook's list with the same numbers.
    assert main(["predict", str(tiny_model), str(phone / "portrait.jpg")]) == 0
    printed = dict(eval(capsys.readouterr().out.strip()))
    for name, column in zip(("apple_pie", "pizza", "sashimi"), columns):
        assert printed[name] == pytest.approx(evaluated.loc[prepared["portrait.jpg"], column], rel=1e-3, abs=1e-6)
