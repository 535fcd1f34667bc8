"""Bad settings fail before any work starts, with a message naming the value; the CLI explains every option."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from tuneflow.cli import main
from tuneflow.cli.config_options import CONFIG_SECTIONS, NESTED_FIELDS
from tuneflow.config import DataSettings, DriveSettings, RetrainConfig, TrainingSettings


def test_image_size_resnet50_cannot_take_is_rejected():
    with pytest.raises(ValidationError, match="image_size 16 is too small: ResNet50 needs at least 32 px"):
        TrainingSettings(image_size=16)


def test_fewer_than_two_classes_is_rejected():
    with pytest.raises(ValidationError, match=r"names 1 class; a classifier needs at least 2"):
        DataSettings(classes=["pizza"])


def test_class_named_twice_is_rejected():
    with pytest.raises(ValidationError, match=r"lists \['pizza'\] more than once"):
        DataSettings(classes=["pizza", "pizza", "sashimi"])


def test_classes_left_out_are_named_once_and_not_also_chosen():
    assert DataSettings(exclude_classes=[" testpile ", ""]).exclude_classes == ["testpile"]
    assert DataSettings(exclude_classes=[]).exclude_classes is None
    with pytest.raises(ValidationError, match=r"exclude_classes lists \['testpile'\] more than once"):
        DataSettings(exclude_classes=["testpile", "testpile"])
    with pytest.raises(ValidationError, match=r"\['pizza'\] is in both classes and exclude_classes; name each class in one"):
        DataSettings(classes=["pizza", "sushi"], exclude_classes=["pizza"])


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5])
def test_val_fraction_must_leave_both_sides(fraction):
    with pytest.raises(ValidationError, match="val_fraction"):
        DataSettings(val_fraction=fraction)


def test_weights_must_be_a_known_word_or_an_existing_file(tmp_path):
    with pytest.raises(ValidationError, match="weights 'imagenett' is not a file; use \"imagenet\""):
        TrainingSettings(weights="imagenett")
    weights_file = tmp_path / "w.weights.h5"
    weights_file.write_bytes(b"x")
    assert TrainingSettings(weights=str(weights_file)).weights == str(weights_file.resolve())
    assert TrainingSettings(weights="ImageNet").weights == "imagenet"


def test_config_json_schema_describes_every_field():
    schema = RetrainConfig.model_json_schema()
    for section in ("DataSettings", "TrainingSettings", "DriveSettings", "PromotionSettings"):
        for name, field in schema["$defs"][section]["properties"].items():
            assert field.get("description"), f"{section}.{name} has no description for the Prefect form"


def test_cli_reports_invalid_settings_and_exits_2(capsys, tmp_path):
    code = main(["retrain", "--source", str(tmp_path / "d.zip"), "--image-size", "16", "--classes", "pizza"])
    error = capsys.readouterr().err
    assert code == 2
    assert "training.image_size: image_size 16 is too small" in error
    assert "data.classes: classes=['pizza'] names 1 class" in error


def test_cli_builds_the_nested_config_from_options(monkeypatch, tmp_path):
    seen = {}

    def fake_run(config):  # stands in for the flow: this test is about option parsing only
        seen["config"] = config
        raise SystemExit(0)

    monkeypatch.setattr("tuneflow.cli.commands.run_retrain", fake_run)
    with pytest.raises(SystemExit):
        main(["retrain", "--source", "a.zip", "--classes", "pizza,sashimi", "--epochs", "3", "--weights", "none",
              "--val-fraction", "0.25", "--data-root", str(tmp_path), "--exclude-classes", "testpile, stray,"])
    config = seen["config"]
    assert config.data.classes == ["pizza", "sashimi"]
    assert config.data.exclude_classes == ["testpile", "stray"]
    assert config.data.val_fraction == 0.25
    assert config.training.epochs == 3 and config.training.weights == "none"
    assert config.data_root == tmp_path
    assert config.promotion.margin == 0.0 and config.promotion.force is False


def test_cli_promotion_options(monkeypatch):
    seen = {}

    def fake_run(config):
        seen["config"] = config
        raise SystemExit(0)

    monkeypatch.setattr("tuneflow.cli.commands.run_retrain", fake_run)
    with pytest.raises(SystemExit):
        main(["retrain", "--source", "a.zip", "--margin", "0.02", "--force"])
    assert seen["config"].promotion.margin == 0.02 and seen["config"].promotion.force is True


@pytest.mark.parametrize("command", ["retrain", "predict", "sample", "demo", "gpu-check"])
def test_every_command_explains_itself(command):
    result = subprocess.run(
        [sys.executable, "-m", "tuneflow.cli", command, "--help"], capture_output=True, text=True, check=True
    )
    assert "usage: tuneflow " + command in result.stdout


def test_help_for_retrain_lists_every_setting():
    help_text = subprocess.run(
        [sys.executable, "-m", "tuneflow.cli", "retrain", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for _, section in CONFIG_SECTIONS:
        for name, field in section.model_fields.items():
            if name not in NESTED_FIELDS:
                # A switch that is on by default is turned off: --no-horizontal-flip, --no-reuse-prepared.
                on_by_default = field.annotation is bool and field.default is True
                assert ("--no-" if on_by_default else "--") + name.replace("_", "-") in help_text


def test_a_setting_on_by_default_can_be_turned_off():
    from tuneflow.cli import build_parser
    from tuneflow.cli.config_options import config_from_options

    options = build_parser().parse_args(["retrain", "--source", "x.zip", "--no-horizontal-flip", "--no-reuse-prepared"])
    config = config_from_options(options)
    assert config.training.horizontal_flip is False and config.storage.reuse_prepared is False
    defaults = config_from_options(build_parser().parse_args(["retrain", "--source", "x.zip"]))
    assert defaults.training.horizontal_flip is True and defaults.storage.reuse_prepared is True


def test_predict_names_a_missing_model(tmp_path, capsys):
    image = tmp_path / "x.jpg"
    image.write_bytes(b"not really")
    assert main(["predict", str(tmp_path), str(image)]) == 2
    assert "no model.keras with classes.json" in capsys.readouterr().err
