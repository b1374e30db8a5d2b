"""One definition of a training's parameters (`trainers.spec.TrainParams`): the CLI's flags, the
HTTP body's `params` and the trainer's spec come from it, and a wrong value is named the same way
on every surface."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ray_app.api.models import TrainingRequest
from ray_app.cli import build_parser
from ray_app.cli_training import training_body
from trainers.spec import SpecError, TrainParams


def cli_body(*flags: str) -> dict:
    return training_body(build_parser().parse_args(["train", "clinical", "--type", "ner", *flags]))


def test_every_parameter_goes_from_a_cli_flag_through_the_body_to_the_trainer():
    body = cli_body(
        "--warmup", "0.2", "--bf16", "off", "--few-shot", "on", "--max-length", "64", "--average-last", "0.25",
        "--seed", "3", "--split-seed", "7",
    )  # fmt: skip
    assert body["params"] == {
        "warmup": 0.2,
        "bf16": False,
        "few_shot": "on",
        "max_length": 64,
        "average_last": 0.25,
        "seed": 3,
    }
    assert body["selection"]["split_seed"] == 7
    given = TrainingRequest.model_validate(body).params.model_dump(exclude_none=True)
    params = TrainParams.parse(given)
    assert params.model_fields_set == set(body["params"])
    assert (params.warmup, params.bf16, params.max_length, params.epochs) == (0.2, False, 64, 5)
    assert cli_body()["params"] == {}  # nothing given: the recipe decides
    flags = {a.dest for a in build_parser()._subparsers._group_actions[0].choices["train"]._actions}
    assert set(TrainParams.model_fields) <= flags


@pytest.mark.parametrize(
    "params, message",
    [
        ({"epochs": 0}, "parameter epochs=0 must be an integer >= 1"),
        ({"dropout": 1.5}, "parameter dropout=1.5 must be a number in [0, 1)"),
        ({"learning_rate": 0}, "parameter learning_rate=0.0 must be a number > 0"),
        ({"max_length": 8}, "parameter max_length=8 must be an integer in [16, 512]"),
        ({"warmup": 1}, "parameter warmup=1.0 must be a number in [0, 1)"),
        ({"momentum": 0.9}, "unknown parameter(s): momentum"),
    ],
)
def test_a_wrong_parameter_is_named_with_its_rule(params, message):
    given = TrainingRequest.model_validate({"types": ["ner"], "params": params}).params.model_dump(exclude_none=True)
    with pytest.raises(SpecError) as wrong:
        TrainParams.parse(given)
    assert str(wrong.value) == message


def test_the_api_documents_each_parameters_range_and_the_cli_refuses_a_wrong_switch(capsys):
    schema = TrainingRequest.model_json_schema()["$defs"]["TrainingParamsIn"]["properties"]
    assert (schema["dropout"]["minimum"], schema["dropout"]["exclusiveMaximum"]) == (0, 1)
    assert schema["epochs"]["minimum"] == 1 and "passes over" in schema["epochs"]["description"]
    with pytest.raises(ValidationError, match="params.batch_size"):  # a wrong type: the body's own check
        TrainingRequest.model_validate({"types": ["ner"], "params": {"batch_size": 2.5}})
    with pytest.raises(SystemExit):
        cli_body("--bf16", "maybe")
    assert "'maybe': say on or off" in capsys.readouterr().err
