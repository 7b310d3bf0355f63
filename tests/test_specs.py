"""Model specs: the built-in registry, users' specs through the `driftloop.models` entry points, prepared inputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow as pa
import pytest

from driftloop.retrain import MODELS, InputError, ModelSpec, Preprocessor, SpecError, TrainingParams, get_spec

PLUGIN = '''
from driftloop.retrain import ModelSpec, TrainingParams

def tiny_module(n_inputs, n_classes, width=3):
    import torch
    return torch.nn.Sequential(torch.nn.Linear(n_inputs, width), torch.nn.ReLU(), torch.nn.Linear(width, n_classes))

def exploding_module(n_inputs, n_classes):
    raise RuntimeError("no GPU kernel for this layer")

TINY = ModelSpec(name="tiny", module=tiny_module, module_params={"width": 5}, features=("a", "b"),
                 training=TrainingParams(epochs=2))

def make_exploding():
    return ModelSpec(name="exploding", module=exploding_module)
'''


@pytest.fixture
def plugin_path(tmp_path):
    """A tiny distribution, `tiny-models`, installed into a folder of its own: a package and its dist-info."""
    (tmp_path / "tiny_models").mkdir()
    (tmp_path / "tiny_models" / "__init__.py").write_text(PLUGIN)
    (tmp_path / "broken_models.py").write_text("import a_module_that_is_not_installed\n")
    info = tmp_path / "tiny_models-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tiny-models\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent("""
        [driftloop.models]
        tiny = tiny_models:TINY
        exploding = tiny_models:make_exploding
        broken = broken_models:SPEC
    """))
    return tmp_path


def in_subprocess(plugin_path, code: str) -> dict:
    """Run `code` (which prints JSON) in a fresh interpreter that has the plugin folder on sys.path."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_path), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_users_spec_comes_in_through_the_entry_point_group(plugin_path):
    seen = in_subprocess(plugin_path, """
        import json
        from driftloop.retrain import available_specs, get_spec, SpecError
        spec = get_spec("tiny")
        module = spec.build_module(2, 3)
        errors = {}
        for name in ("broken", "exploding", "missing"):
            try:
                get_spec(name).build_module(2, 2)
            except SpecError as error:
                errors[name] = str(error)
        print(json.dumps({"name": spec.name, "params": dict(spec.module_params), "epochs": spec.training.epochs,
                          "outputs": module[-1].out_features, "hidden": module[0].out_features,
                          "available": available_specs(), "errors": errors}))
    """)
    assert (seen["name"], seen["params"], seen["epochs"]) == ("tiny", {"width": 5}, 2)
    assert (seen["outputs"], seen["hidden"]) == (3, 5)
    assert seen["available"]["mlp"] == "built-in"
    assert seen["available"]["tiny"] == "tiny-models (tiny_models:TINY)"
    errors = seen["errors"]
    assert "'broken'" in errors["broken"] and "a_module_that_is_not_installed" in errors["broken"]
    assert "'exploding'" in errors["exploding"] and "no GPU kernel for this layer" in errors["exploding"]
    assert "'missing'" in errors["missing"] and "tiny" in errors["missing"], "an unknown name lists what exists"


def test_without_the_plugin_its_spec_is_unknown_and_the_builtins_are_listed():
    with pytest.raises(SpecError, match=r"'tiny': no such spec. Built in: \['mlp'\]"):
        get_spec("tiny")
    assert MODELS["mlp"] is get_spec("mlp")


def test_spec_and_training_parameters_are_validated_with_the_allowed_values():
    with pytest.raises(ValueError, match="'epochs' must be an integer of at least 1"):
        TrainingParams(epochs=0)
    with pytest.raises(ValueError, match="'validation_share' must be between 0 and 1"):
        TrainingParams(validation_share=1.0)
    with pytest.raises(SpecError, match="Valid values are: \\['classification'\\]"):
        ModelSpec(name="x", module=lambda n, k: None, task="ranking")
    with pytest.raises(SpecError, match="unknown training parameter"):
        get_spec("mlp").with_params(training={"epoch": 3})
    assert get_spec("mlp").with_params(training={"epochs": 3}).training.epochs == 3
    with pytest.raises(SpecError, match="returned NoneType, not a torch.nn.Module"):
        ModelSpec(name="x", module=lambda n, k: None).build_module(2, 2)


def test_preprocessing_is_one_path_for_tables_columns_records_and_matrices():
    rng = np.random.default_rng(0)
    train = pa.table({"feature.age": rng.normal(40, 10, 200), "feature.plan": rng.choice(["a", "b", "c"], 200),
                      "feature.active": rng.random(200) < 0.5, "label": ["x"] * 200})
    prep = Preprocessor.fit(train)
    assert prep.feature_names == ("active", "age", "plan") and prep.width == 1 + 1 + 3
    again = Preprocessor.from_dict(json.loads(json.dumps(prep.to_dict())))
    assert again == prep, "the fitted statistics round-trip through JSON"
    from_table = prep.transform(train)
    records = [{"age": float(a), "plan": str(p), "active": bool(v)} for a, p, v in
               zip(train["feature.age"].to_pylist(), train["feature.plan"].to_pylist(),
                   train["feature.active"].to_pylist(), strict=True)]
    assert np.array_equal(prep.transform(records), from_table)
    assert abs(from_table[:, 1].mean()) < 1e-6 and abs(from_table[:, 1].std() - 1) < 1e-4, "standardised"
    assert from_table[:, 2:].sum(axis=1).tolist() == [1.0] * 200, "one-hot"
    unseen = prep.transform([{"age": None, "plan": "premium", "active": None}])
    assert unseen.tolist() == [[0.0, 0.0, 0.0, 0.0, 0.0]], "a missing number is the mean, an unseen category zeros"

    numeric = Preprocessor.fit({"x": [1.0, 3.0], "y": [0.0, 10.0]})
    assert np.array_equal(numeric.transform(np.array([[1.0, 0.0]])), numeric.transform({"x": [1.0], "y": [0.0]}))
    with pytest.raises(InputError, match="'plan': is categorical"):
        prep.transform(np.zeros((1, 3)))


@pytest.mark.parametrize(("record", "feature", "reason"), [
    ({"age": 3.0, "plan": "a"}, "active", "is missing"),
    ({"age": 3.0, "plan": "a", "active": True, "zip": "1000"}, "zip", "is not a feature of this model"),
    ({"age": "old", "plan": "a", "active": True}, "age", "must be a number"),
    ({"age": 3.0, "plan": [1], "active": True}, "plan", "must be a category"),
], ids=["missing", "unknown", "wrong-type-number", "wrong-type-category"])
def test_a_bad_record_names_its_feature(record, feature, reason):
    prep = Preprocessor.fit({"age": [1.0, 2.0], "plan": ["a", "b"], "active": [True, False]})
    with pytest.raises(InputError) as error:
        prep.transform([{"age": 1.0, "plan": "a", "active": False}, record])
    assert (error.value.feature, error.value.row) == (feature, 1)
    assert reason in error.value.reason


def test_a_feature_the_model_needs_but_the_data_lacks_is_named():
    prep = Preprocessor.fit({"age": [1.0, 2.0], "tenure": [3.0, 4.0]})
    with pytest.raises(InputError, match="'tenure': needed by the model but not in the data"):
        prep.transform(pa.table({"feature.age": [1.0]}))
    with pytest.raises(InputError, match="'income': needed by the model"):
        Preprocessor.fit({"age": [1.0]}, features=["age", "income"])


def test_the_training_settings_name_exactly_the_training_parameters():
    from dataclasses import fields
    from typing import get_args

    from driftloop.settings import TrainingParamName

    assert set(get_args(TrainingParamName)) == {f.name for f in fields(TrainingParams)}
