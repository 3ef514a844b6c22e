"""The config reference, generated from the schema: a JSON Schema for editors and docs/config.md.

Both come from the pydantic models the config is validated with (``config.schema`` for what
every experiment shares, each registry entry's ``Params`` for a dataset's, a model's and a
regularizer's own keys), so they cannot drift from what ``regbench run`` accepts. A key's
meaning is the comment written beside its field in the source (the style every config model
follows); pydantic keeps types, defaults and ranges.

The JSON Schema (draft 2020-12) refuses unknown keys everywhere the config does: a dataset or
model section is one branch per registry name (the shared keys plus that entry's own), a recipe
maps each regularizer's name to its parameters. ``python -m regbench.experiment.reference``
rewrites ``docs/config.md``, ``docs/regbench.schema.json`` and, for suite files (``regbench
suite``), ``docs/regbench-suite.schema.json`` from regbench's own registries (``--check``: exit
1 when one is out of date).
"""
from __future__ import annotations

import copy
import inspect
import io
import json
import sys
import tokenize
from pathlib import Path
from typing import Any, Optional, get_args

from pydantic import BaseModel

from regbench.config.schema import (
    SCHEDULES,
    CompareConfig,
    DatasetConfig,
    DiagnosisConfig,
    ExecutionConfig,
    ExperimentConfig,
    LoggingConfig,
    ModelConfig,
    OptimizerConfig,
    SchedulerConfig,
    SearchRange,
    SlurmConfig,
    TrainConfig,
)
from regbench.data import DATASETS
from regbench.experiment.suite_config import SuiteConfig, SuiteTask
from regbench.models import MODELS
from regbench.regularizers import REGULARIZERS
from regbench.results import write_output

SCHEMA_ID = "https://regbench.dev/schema/regbench.schema.json"
DOCS = Path("docs")
SCHEMA_FILE = "regbench.schema.json"
CONFIG_DOC = "config.md"


def field_comments(model: type[BaseModel]) -> dict[str, str]:
    """``field -> the comment beside it`` in the model's class body (empty when the source is
    not available, as for a plugin's parameters built from a function signature)."""
    comments: dict[str, str] = {}
    for cls in reversed(model.__mro__):
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)) or cls is BaseModel:
            continue
        try:
            source = inspect.getsource(cls)
        except (OSError, TypeError):
            continue
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
        line_field: dict[int, str] = {}
        for i, token in enumerate(tokens):
            if (token.type == tokenize.NAME and token.start[1] == 4 and i + 1 < len(tokens)
                    and tokens[i + 1].string == ":" and token.string in cls.__dict__.get(
                        "__annotations__", {})):
                line_field[token.start[0]] = token.string
        for token in tokens:
            if token.type == tokenize.COMMENT and token.start[0] in line_field:
                text = token.string.lstrip("#").strip()
                comments[line_field[token.start[0]]] = text
    return comments


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with every local ``$ref`` replaced by its definition (the component schemas
    are nested in one document, where their own ``$defs`` would no longer resolve)."""
    defs = schema.get("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                rest = {k: v for k, v in node.items() if k != "$ref"}
                return walk({**copy.deepcopy(defs[ref.split("/")[-1]]), **rest})
            return {k: walk(v) for k, v in node.items() if k not in ("$defs", "title")}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(schema)


def model_schema(model: type[BaseModel]) -> dict[str, Any]:
    """One model's JSON Schema, self-contained, with each key's meaning as its description."""
    schema = _inline(model.model_json_schema(by_alias=True))
    _describe(schema, model)
    return schema


SECTIONS: dict[str, type[BaseModel]] = {"train": TrainConfig, "optimizer": OptimizerConfig,
                                        "scheduler": SchedulerConfig,
                                        "execution": ExecutionConfig, "slurm": SlurmConfig}


def _describe(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """Descriptions from the source comments, into ``schema`` and its nested sections."""
    comments = field_comments(model)
    names = {info.alias or name: name for name, info in model.model_fields.items()}
    for branch in [schema, *schema.get("anyOf", [])]:
        for variant in branch.get("oneOf", []):   # a schedule: each described by its own model
            name = variant.get("properties", {}).get("name", {}).get("const")
            if name in SCHEDULES:
                _describe(variant, SCHEDULES[name])
        for key, prop in branch.get("properties", {}).items():
            if names.get(key) in comments and "description" not in prop:
                prop["description"] = comments[names[key]]
            if key in SECTIONS and key in names:
                _describe(prop, SECTIONS[key])
    if model is TrainConfig:   # `scheduler: cosine` is shorthand for `{name: cosine}`
        scheduler = schema.get("properties", {}).get("scheduler")
        if scheduler is not None and "anyOf" in scheduler:
            choices = list(get_args(SchedulerConfig.model_fields["name"].annotation))
            scheduler["anyOf"].insert(0, {"enum": choices})


def _closed(schema: dict[str, Any]) -> dict[str, Any]:
    schema = copy.deepcopy(schema)
    schema["additionalProperties"] = False
    return schema


def _component(common: type[BaseModel], registry, summary_of, plugins: bool) -> dict[str, Any]:
    """A dataset or model section: one branch per registry name, each the shared keys plus that
    entry's own, unknown keys refused."""
    shared = model_schema(common)
    branches = []
    for name, entry in registry.items():
        if entry.plugin and not plugins:
            continue
        own = model_schema(entry.Params)
        branch = _closed(shared)
        branch.pop("description", None)
        branch["properties"] = {**shared["properties"], **own.get("properties", {})}
        branch["properties"]["name"] = {"const": name, "description": summary_of(entry)}
        branch["required"] = ["name", *own.get("required", [])]
        branches.append(branch)
    return {"type": "object", "description": shared.get("description", ""),
            "properties": {"name": {"enum": [b["properties"]["name"]["const"] for b in branches],
                                    "default": shared["properties"]["name"].get("default")}},
            "anyOf": branches}


def _recipe(plugins: bool) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for name, cls in REGULARIZERS.items():
        if cls.plugin and not plugins:
            continue
        params = _closed(model_schema(cls.Params))
        params["description"] = cls.summary
        properties[name] = {"anyOf": [params, {"type": "null"}], "description": cls.summary}
    train = model_schema(TrainConfig)
    train["description"] = "this recipe's training settings, merged over the experiment's train:"
    properties["train"] = train
    return {"type": "object", "additionalProperties": False, "properties": properties,
            "description": "regularizer name -> its parameters ({} or nothing: the defaults)"}


def json_schema(plugins: bool = True) -> dict[str, Any]:
    """The JSON Schema of an experiment YAML file (with the plugins' entries when ``plugins``)."""
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID,
              "title": "regbench experiment",
              "description": "A regbench experiment (regbench run CONFIG); reference: "
                             "docs/config.md",
              **model_schema(ExperimentConfig)}
    props = schema["properties"]
    props["dataset"] = {**_component(DatasetConfig, DATASETS, lambda e: e.summary, plugins),
                        "description": "the data: a registry name and its options"}
    props["model"] = {**_component(ModelConfig, MODELS, lambda e: e.summary, plugins),
                      "description": "the network: a registry name and its options"}
    props["recipes"] = {"type": "object", "additionalProperties": _recipe(plugins),
                        "description": props["recipes"].get("description", "")}
    props["sweep"]["additionalProperties"] = {"type": "array", "minItems": 1}
    props["search"]["additionalProperties"] = model_schema(SearchRange)
    props["seeds"]["minItems"] = 1
    props["seeds"]["uniqueItems"] = True
    return schema


# --- docs/config.md --------------------------------------------------------------------------

def _type(prop: dict[str, Any]) -> str:
    if "const" in prop:
        return f"`{prop['const']}`"
    if "enum" in prop:
        return " | ".join(f"`{v}`" for v in prop["enum"])
    if "anyOf" in prop:
        kinds = [_type(p) for p in prop["anyOf"]]
        return " or ".join(k for k in kinds if k)
    kind = prop.get("type")
    if kind == "array":
        items = prop.get("prefixItems") or [prop.get("items", {})]
        inner = ", ".join(_type(i) for i in items) if prop.get("prefixItems") else \
            _type(items[0])
        return f"[{inner}]" if prop.get("prefixItems") else f"list of {inner or 'values'}"
    if kind == "object":
        return "mapping"
    return {"number": "number", "integer": "integer", "string": "string", "boolean": "bool",
            "null": "null"}.get(kind, "any")


def _range(prop: dict[str, Any]) -> str:
    parts = []
    for branch in [prop, *prop.get("anyOf", []), *prop.get("prefixItems", []),
                   *([prop["items"]] if isinstance(prop.get("items"), dict) else [])]:
        low = ("≥", branch["minimum"]) if "minimum" in branch else \
            (">", branch["exclusiveMinimum"]) if "exclusiveMinimum" in branch else None
        high = ("≤", branch["maximum"]) if "maximum" in branch else \
            ("<", branch["exclusiveMaximum"]) if "exclusiveMaximum" in branch else None
        words = " and ".join(f"{sign} {_number(value)}"
                             for sign, value in (b for b in (low, high) if b))
        if words and words not in parts:
            parts.append(words)
    return "; ".join(parts)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _default(prop: dict[str, Any], required: bool) -> str:
    if required:
        return "required"
    if "default" not in prop:
        return ""
    return f"`{json.dumps(prop['default'])}`"


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _table(schema: dict[str, Any], prefix: str, sections: dict[str, str] = {}) -> list[str]:
    """One row per key; a key that is a section of its own links to it instead of its default."""
    lines = ["| key | type | default | range | meaning |", "|---|---|---|---|---|"]
    required = set(schema.get("required", []))
    for key, prop in schema.get("properties", {}).items():
        meaning, default = prop.get("description", ""), _default(prop, key in required)
        if f"{prefix}{key}" in sections:
            anchor = sections[f"{prefix}{key}"]
            meaning = f"{meaning.rstrip('.')}; see [`{prefix}{key}`](#{anchor})".lstrip("; ")
            default = "see below" if default != "required" else default
        lines.append(f"| `{prefix}{key}` | {_cell(_type(prop))} | {_cell(default)} | "
                     f"{_cell(_range(prop))} | {_cell(meaning)} |")
    return lines


def config_markdown() -> str:
    """docs/config.md: every key of an experiment file, regbench's own registries."""
    out = ["# Config reference", "",
           "<!-- generated by `python -m regbench.experiment.reference`; do not edit -->", "",
           "Every key an experiment YAML file takes, with its type, default, range and meaning, "
           "generated from the schema `regbench run` validates with. A misspelled or unknown "
           "key is an error (exit 2) that names the file, line and key. Editors validate and "
           f"complete these files with the JSON Schema `docs/{SCHEMA_FILE}` (or "
           "`regbench schema`, which includes installed plugins): put",
           "", "```yaml", f"# yaml-language-server: $schema=../docs/{SCHEMA_FILE}", "```", "",
           "on the first line of a config (the path is relative to the YAML file).", ""]
    links = {"dataset": "dataset", "model": "model", "train": "train", "recipes": "recipes",
             "sweep": "sweep", "search": "search", "diagnosis": "diagnosis", "logging": "logging",
             "compare": "compare", "execution": "executionslurm",
             "train.optimizer": "trainoptimizer",
             "train.scheduler": "trainscheduler"}
    top = model_schema(ExperimentConfig)
    out += ["## Top level", ""] + _table(top, "", links) + [""]
    sections = [("train", TrainConfig, "train."), ("train.optimizer", OptimizerConfig,
                                                   "train.optimizer."),
                ("train.scheduler", SchedulerConfig, "train.scheduler."),
                ("diagnosis", DiagnosisConfig, "diagnosis."),
                ("logging", LoggingConfig, "logging."),
                ("compare", CompareConfig, "compare."),
                ("execution.slurm", SlurmConfig, "execution.slurm.")]
    for title, model, prefix in sections:
        schema = model_schema(model)
        out += [f"## `{title}`", ""]
        if model.__doc__:
            out += [" ".join(model.__doc__.split()), ""]
        out += _table(schema, prefix, links) + [""]
        if model is SchedulerConfig:
            out += _schedule_tables()
    out += ["A recipe may override any `train` key for itself (`recipes.<name>.train`): it is "
            "merged over the experiment's.", ""]
    for title, common, registry in (("dataset", DatasetConfig, DATASETS),
                                    ("model", ModelConfig, MODELS)):
        out += [f"## `{title}`", "", " ".join((common.__doc__ or "").split()), "",
                f"Shared by every {title}:", ""] + _table(model_schema(common), f"{title}.") + [""]
        out += _entry_tables(registry.items(), f"{title} `{{}}`", f"{title}.",
                             "No keys of its own.")
    out += ["## `recipes`", "",
            "`recipes.<name>` maps regularizer names to their parameters (`{}` or nothing: the "
            "defaults), plus an optional `train:` override. `baseline` (no regularizer) is added "
            "when absent. What each regularizer computes, exactly: the README's catalogue and "
            "`regbench list regularizers --details`.", ""]
    out += _entry_tables(REGULARIZERS.items(), "`{}`", "recipes.<name>.{}.", "No parameters.")
    out += ["## `sweep`", "",
            "`sweep.<key path>: [values]`, e.g. `recipes.l2.l2.lambda: [0.1, 1, 10]`: every "
            "value of every swept key is crossed with every seed (a grid). The key path must "
            "name an existing key.", ""]
    out += ["## `search`", "",
            "`search.<key path>: {low, high[, log][, step]}` or `{choices: [...]}`, e.g. "
            "`recipes.l2.l2.lambda: {low: 1.0e-4, high: 1.0, log: true}`: the values "
            "`regbench tune` may try (`regbench run` ignores it). A `recipes.<name>.…` path is "
            "searched for that recipe, a `train.…` path for every recipe on its own trials; "
            "`dataset.*` and `model.*` are shared by all recipes and cannot be searched. Both "
            "ends of a range and every choice must be values the key takes; an integer key is "
            "searched in integers.", ""]
    out += _table(model_schema(SearchRange), "search.<key path>.") + [""]
    return "\n".join(out).rstrip() + "\n"


def _schedule_tables() -> list[str]:
    """Each schedule's own keys, under its name."""
    out = []
    for name, model in SCHEDULES.items():
        own = model_schema(model)
        own["properties"].pop("name")
        out += [f"### `train.scheduler` `{name}`", "", " ".join((model.__doc__ or "").split()), ""]
        out += (_table(own, "train.scheduler.") if own["properties"] else ["No other keys."])
        out += [""]
    return out


def _entry_tables(entries, heading: str, prefix: str, empty: str) -> list[str]:
    """A heading, the summary and the key table of each of regbench's own registry entries
    (``heading`` and ``prefix`` take the entry's name at ``{}``)."""
    out = []
    for name, entry in entries:
        if entry.plugin:
            continue
        own = model_schema(entry.Params)
        out += [f"### {heading.format(name)}", "", _cell(entry.summary), ""]
        out += (_table(own, prefix.format(name)) if own.get("properties") else [empty]) + [""]
    return out


# --- suite files (`regbench suite`) ----------------------------------------------------------

SUITE_SCHEMA_ID = "https://regbench.dev/schema/regbench-suite.schema.json"
SUITE_SCHEMA_FILE = "regbench-suite.schema.json"


def suite_schema(plugins: bool = True) -> dict[str, Any]:
    """The JSON Schema of a suite YAML file: its tasks' sections are the experiment schema's
    (a dataset or model written beside `config:` may leave out its name: it refines the
    config's), its recipes an experiment's."""
    experiment = json_schema(plugins=plugins)["properties"]
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SUITE_SCHEMA_ID,
              "title": "regbench suite",
              "description": "A regbench suite (regbench suite SUITE); reference: "
                             "docs/config.md#suite-files-regbench-suite and docs/suite.md",
              **model_schema(SuiteConfig)}
    props = schema["properties"]
    task = model_schema(SuiteTask)
    for key in ("dataset", "model", "train", "diagnosis", "compare", "search"):
        section = copy.deepcopy(experiment[key])
        for branch in section.get("anyOf", []):      # the config may name it
            branch["required"] = [k for k in branch.get("required", []) if k != "name"]
        task["properties"][key] = {"anyOf": [section, {"type": "null"}],
                                   "description": task["properties"][key].get("description", "")}
    recipe = experiment["recipes"]["additionalProperties"]
    task["properties"]["recipes"]["additionalProperties"] = {"anyOf": [recipe, {"type": "null"}]}
    props["tasks"]["additionalProperties"] = task
    props["tasks"]["minProperties"] = 1
    props["recipes"] = {**experiment["recipes"], "description": props["recipes"]["description"]}
    props["logging"] = {**experiment["logging"], "description": props["logging"]["description"]}
    props["seeds"]["minItems"] = 1
    props["seeds"]["uniqueItems"] = True
    return schema


def suite_markdown() -> str:
    """The suite section of docs/config.md."""
    out = ["## Suite files (`regbench suite`)", "",
           "A suite file lists tasks (each an experiment's `dataset`, `model` and `train`, "
           "inline or taken from an experiment file with `config:`) and the recipes every task "
           "trains; `regbench suite SUITE.yaml` trains each task as an ordinary experiment into "
           "`OUT/<name>/tasks/<task>/` and aggregates them into `OUT/<name>/suite.csv` and "
           "`suite.html` (what each number means: [docs/suite.md](suite.md)). Errors are located "
           "as in an experiment file: `suite.yaml:14:9: tasks.digits.model.hidden: …`, or the "
           "line of the config a key came from. Editors validate suite files with "
           f"`docs/{SUITE_SCHEMA_FILE}`.", ""]
    out += _table(model_schema(SuiteConfig), "") + [""]
    out += ["### `tasks.<name>`", "", " ".join((SuiteTask.__doc__ or "").split()), ""]
    out += _table(model_schema(SuiteTask), "tasks.<name>.") + [""]
    out += ["`tasks.<name>.recipes.<recipe>` changes a shared recipe on that task only, merged "
            "over it: `{l2: {lambda: 0.1}}` (its own λ) or `{train: {epochs: 60}}`; it may not add "
            "a regularizer the shared recipe does not have (a recipe means the same method on "
            "every task). A shared recipe that cannot apply to a task (label smoothing on a "
            "regression task) is an error naming `tasks.<name>.skip`.", ""]
    return "\n".join(out)


def schema_text(plugins: bool = True, out: Optional[Path] = None) -> str:
    """The JSON Schema as text; written to ``out`` when given (atomically, or as a stream to a
    device or pipe: results.write_output)."""
    text = json.dumps(json_schema(plugins=plugins), indent=2, ensure_ascii=False) + "\n"
    if out is not None:
        write_output(Path(out), text)
    return text


def write(root: Path = Path("."), check: bool = False) -> list[str]:
    """Write (or, with ``check``, compare) the two generated files; the stale ones' names."""
    files = {root / DOCS / SCHEMA_FILE: schema_text(plugins=False),
             root / DOCS / SUITE_SCHEMA_FILE: json.dumps(suite_schema(plugins=False), indent=2,
                                                         ensure_ascii=False) + "\n",
             root / DOCS / CONFIG_DOC: config_markdown() + "\n" + suite_markdown()}
    stale = []
    for path, text in files.items():
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(str(path))
            if not check:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
    return stale


if __name__ == "__main__":
    check = "--check" in sys.argv[1:]
    changed = write(check=check)
    for name in changed:
        print(("out of date: " if check else "wrote ") + name)
    sys.exit(1 if check and changed else 0)
