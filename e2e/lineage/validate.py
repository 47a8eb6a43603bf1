"""Validates OpenLineage run events with the official client (openlineage-python).

Usage: validate.py EVENTS.json   (a JSON list of RunEvent objects)

Each event is structured into the client's attrs model (openlineage.client.event_v2.RunEvent,
with the facet classes of openlineage.client.facet_v2 picked by facet key), which runs the
client's validators (UUID runId, ISO 8601 times with a time, URLs), then serialised back with
openlineage.client.serde.Serde. The result must equal the input: a field the model does not know
is an error (attrs rejects unknown arguments), a field it drops or changes is a difference, and a
facet's _schemaURL must be the one the client's class declares. Empty objects are ignored on both
sides, and so are empty lists (the client writes `facets: {}` and `fields: []` for absent ones). Exits 1 on the first failure.
"""

import json
import sys
import typing

import attr
from openlineage.client import event_v2
from openlineage.client.facet_v2 import (
    error_message_run,
    job_type_job,
    nominal_time_run,
    output_statistics_output_dataset,
    parent_run,
    schema_dataset,
)
from openlineage.client.generated import base
from openlineage.client.serde import Serde

RUN_FACETS = {
    "nominalTime": nominal_time_run.NominalTimeRunFacet,
    "parent": parent_run.ParentRunFacet,
    "errorMessage": error_message_run.ErrorMessageRunFacet,
}
JOB_FACETS = {"jobType": job_type_job.JobTypeJobFacet}
DATASET_FACETS = {"schema": schema_dataset.SchemaDatasetFacet}
OUTPUT_FACETS = {"outputStatistics": output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet}
FACETS_BY_VALUE_TYPE = {
    base.RunFacet: RUN_FACETS,
    base.JobFacet: JOB_FACETS,
    base.DatasetFacet: DATASET_FACETS,
    base.OutputDatasetFacet: OUTPUT_FACETS,
    base.InputDatasetFacet: {},
}


class Invalid(Exception):
    pass


def hints(cls):
    return typing.get_type_hints(cls)


def structure(cls, data, path):
    """An instance of the attrs class `cls` from `data`, refusing unknown keys."""
    if not isinstance(data, dict):
        raise Invalid(f"{path}: expected an object for {cls.__name__}, got {data!r}")
    types = hints(cls)
    fields = {f.name: f for f in attr.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        field = fields.get(key)
        if field is None:
            raise Invalid(f"{path}.{key}: {cls.__name__} has no such field")
        if not field.init:
            continue  # schemaURL / _schemaURL: set by the class, compared on the way back
        kwargs[field.alias] = convert(types[field.name], value, f"{path}.{key}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as error:
        raise Invalid(f"{path}: {cls.__name__}: {error}") from error


def convert(hint, value, path):
    if value is None:
        return None
    origin = typing.get_origin(hint)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return convert(args[0], value, path)
    if origin is list:
        return [convert(args[0], v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        value_type = args[1]
        known = FACETS_BY_VALUE_TYPE.get(value_type)
        if known is None:
            raise Invalid(f"{path}: unexpected map of {value_type}")
        out = {}
        for key, facet in value.items():
            if key not in known:
                raise Invalid(f"{path}.{key}: not a facet this validator knows")
            out[key] = structure(known[key], facet, f"{path}.{key}")
        return out
    if isinstance(hint, type) and attr.has(hint):
        return structure(hint, value, path)
    if isinstance(hint, type) and issubclass(hint, base.EventType):
        return hint(value)
    return value


def prune(value):
    if isinstance(value, dict):
        pruned = {k: prune(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v not in ({}, [], None)}
    if isinstance(value, list):
        return [prune(v) for v in value]
    return value


def diff(a, b, path="$"):
    if type(a) is not type(b):
        return f"{path}: {a!r} != {b!r}"
    if isinstance(a, dict):
        for key in sorted(set(a) | set(b)):
            if key not in b:
                return f"{path}.{key}: lost by the client model ({a[key]!r})"
            if key not in a:
                return f"{path}.{key}: added by the client model ({b[key]!r})"
            d = diff(a[key], b[key], f"{path}.{key}")
            if d:
                return d
        return None
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} items != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            d = diff(x, y, f"{path}[{i}]")
            if d:
                return d
        return None
    return None if a == b else f"{path}: {a!r} != {b!r}"


def main():
    with open(sys.argv[1]) as f:
        events = json.load(f)
    for i, event in enumerate(events):
        try:
            model = structure(event_v2.RunEvent, event, f"event[{i}]")
        except (Invalid, ValueError, TypeError) as error:
            print(f"INVALID {error}")
            return 1
        back = Serde.to_dict(model)
        d = diff(prune(event), prune(back))
        if d:
            print(f"INVALID event[{i}] ({event.get('eventType')} {event.get('job', {}).get('name')}): {d}")
            return 1
    print(f"validated {len(events)} events with openlineage-python")
    return 0


if __name__ == "__main__":
    sys.exit(main())
