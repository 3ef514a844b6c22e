"""Safe YAML loading that keeps the line/column of every key, reads 1e-4 as a float,
and refuses duplicate keys and object-constructing tags.

Bounded, so a hostile or broken file gets a located error at once: at most ``MAX_BYTES`` of
text, ``MAX_DEPTH`` levels of nesting (a self-referencing alias nests without end) and
``MAX_VALUES`` values once aliases are expanded (an 839-byte "billion laughs" file expands to
billions). Merge keys (``<<: *defaults``) work as YAML defines them: keys written in the
mapping override merged ones.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from regbench.errors import ConfigError

Position = tuple[int, int]  # 1-based line, column
KeyPath = tuple[str, ...]
KEY_MARK = "\0key"  # positions[(KEY_MARK, *path)]: where the key itself is written
MAX_BYTES = 1_000_000   # a config is a page of settings; 1 MB is far beyond any real one
MAX_DEPTH = 40          # nesting levels (the deepest real config nests about 6)
MAX_VALUES = 100_000    # values after aliases are expanded (a large sweep holds a few hundred)


class _Loader(yaml.SafeLoader):
    """SafeLoader whose float resolver accepts exponents without a dot (YAML 1.2 style)."""


# PyYAML (YAML 1.1) needs a '.' in a float, so '1e-4' would stay a string.
_FLOAT = re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", re.X)
# Dates are not resolved either: `name: 2024-01-01` is a name, not a datetime.date.
# Nor are YAML 1.1's base-60 integers: `time: 1:30:00` is Slurm's time limit as text, not 5400.
_INT = re.compile(r"""^(?:[-+]?0b[0-1_]+
    |[-+]?0[0-7_]+
    |[-+]?(?:0|[1-9][0-9_]*)
    |[-+]?0x[0-9a-fA-F_]+)$""", re.X)
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers
            if tag not in ("tag:yaml.org,2002:float", "tag:yaml.org,2002:timestamp",
                           "tag:yaml.org,2002:int")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))
_Loader.add_implicit_resolver("tag:yaml.org,2002:int", _INT, list("-+0123456789"))


_PLAIN_TAGS = {"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}
# Scalars a config can hold; anything else (!!binary, !!timestamp, !!python/...) is refused.
_SCALAR_TAGS = {f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null")}


def _mark(node: yaml.Node) -> Position:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _Budget:
    """Values still allowed while expanding one document, and the mappings already merged."""

    def __init__(self) -> None:
        self.left = MAX_VALUES
        self.merged: dict[int, int] = {}   # id(mapping node) -> pairs merged into it

    def spend(self, node: yaml.Node, path: KeyPath, source: str) -> None:
        self.left -= 1
        if self.left < 0:
            line, col = _mark(node)
            raise ConfigError(f"the config expands to more than {MAX_VALUES:,} values (aliases "
                              "repeating aliases?); a config is a page of settings",
                              path=".".join(path), source=source, line=line, column=col)
        if len(path) > MAX_DEPTH:
            line, col = _mark(node)
            raise ConfigError(f"nested more than {MAX_DEPTH} levels deep (or an alias that "
                              "refers to itself)", path=".".join(path[:3]) + " …", source=source,
                              line=line, column=col)


def _to_python(node: yaml.Node, loader: _Loader, path: KeyPath,
               positions: dict[KeyPath, Position], *, source: str,
               budget: _Budget) -> Any:
    budget.spend(node, path, source)
    positions.setdefault(path, _mark(node))
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag not in _PLAIN_TAGS:
        line, col = _mark(node)
        raise ConfigError(f"tag {node.tag!r} is not allowed (safe YAML only: plain values, "
                          "lists and mappings)", path=".".join(path), source=source,
                          line=line, column=col)
    if isinstance(node, yaml.MappingNode):
        if id(node) not in budget.merged:  # an aliased node is flattened once, visited often
            explicit = sum(1 for key, _ in node.value
                           if not (isinstance(key, yaml.ScalarNode)
                                   and key.tag == "tag:yaml.org,2002:merge"))
            try:
                loader.flatten_mapping(node)  # `<<: *anchor` merges: merged pairs come first
            except yaml.constructor.ConstructorError as exc:
                mark = exc.problem_mark or node.start_mark
                raise ConfigError(f"malformed YAML: {exc.problem}", path=".".join(path),
                                  source=source, line=mark.line + 1,
                                  column=mark.column + 1) from None
            budget.merged[id(node)] = len(node.value) - explicit
        out: dict[str, Any] = {}
        merged = budget.merged[id(node)]
        written: set[str] = set()
        for index, (key_node, value_node) in enumerate(node.value):
            if not isinstance(key_node, yaml.ScalarNode):
                line, col = _mark(key_node)
                raise ConfigError("mapping keys must be plain names", path=".".join(path),
                                  source=source, line=line, column=col)
            _construct_scalar(key_node, loader, path, source)  # refuses tags
            # A key is a name, taken as written: `no:` or `1:` is a recipe called "no" or "1"
            # (YAML 1.1 would make them False and 1), `~:` an error rather than "None".
            key = key_node.value
            if not key:
                line, col = _mark(key_node)
                raise ConfigError("empty key: every key needs a name", path=".".join(path),
                                  source=source, line=line, column=col)
            child = path + (key,)
            # a key written here overrides a merged one, and of two merged maps the first
            # wins (flatten_mapping lists it last), as YAML's merge key defines; a key
            # written twice here is an error
            if index >= merged and key in written:
                line, col = _mark(key_node)
                raise ConfigError(f"duplicate key '{key}'", path=".".join(child),
                                  source=source, line=line, column=col)
            if index >= merged:
                written.add(key)
            # Scalars are located at their value (where "got ..." points), the rest at the key.
            positions[child] = (_mark(value_node) if isinstance(value_node, yaml.ScalarNode)
                                else _mark(key_node))
            positions[(KEY_MARK,) + child] = _mark(key_node)
            out[key] = _to_python(value_node, loader, child, positions, source=source,
                                  budget=budget)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(item, loader, path + (str(i),), positions, source=source,
                           budget=budget)
                for i, item in enumerate(node.value)]
    return _construct_scalar(node, loader, path, source)


def _construct_scalar(node: yaml.Node, loader: _Loader, path: KeyPath, source: str) -> Any:
    if node.tag not in _SCALAR_TAGS:
        line, col = _mark(node)
        raise ConfigError(f"tag {node.tag!r} is not allowed (safe YAML only: plain values, "
                          "lists and mappings)", path=".".join(path), source=source,
                          line=line, column=col)
    try:
        return loader.construct_object(node, deep=True)
    except (yaml.constructor.ConstructorError, ValueError, OverflowError) as exc:
        line, col = _mark(node)
        raise ConfigError(f"cannot read value {node.value!r} as {node.tag.rsplit(':', 1)[-1]}"
                          f" ({exc})", path=".".join(path), source=source, line=line,
                          column=col) from None


def parse_yaml(text: str, source: str = "<config>") -> tuple[Any, dict[KeyPath, Position]]:
    """Parse YAML text into plain Python data plus the position of every key path."""
    if len(text) > MAX_BYTES:
        raise ConfigError(f"the config is {len(text):,} characters, more than {MAX_BYTES:,}; a "
                          "config is a page of settings (data belongs in dataset files)",
                          source=source)
    try:
        loader = _Loader(text)  # the reader already refuses control characters here
    except yaml.reader.ReaderError as exc:
        line, column = _offset_position(text, exc.position)
        raise ConfigError(f"malformed YAML: {exc.reason} (character #x{exc.character:04x}); "
                          "expected a UTF-8 text file", source=source, line=line,
                          column=column) from None
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or "malformed YAML"
        raise ConfigError(f"malformed YAML: {problem}", source=source,
                          line=mark.line + 1 if mark else None,
                          column=mark.column + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"malformed YAML: {exc}", source=source) from None
    except RecursionError:
        raise ConfigError(f"nested more than {MAX_DEPTH} levels deep", source=source) from None
    finally:
        loader.dispose()
    positions: dict[KeyPath, Position] = {}
    if node is None:
        return None, positions
    return _to_python(node, _Loader(""), (), positions, source=source, budget=_Budget()), positions


def _offset_position(text: str, offset: int) -> Position:
    before = text[:offset]
    return before.count("\n") + 1, offset - (before.rfind("\n") + 1) + 1


def parse_value(text: str, source: str) -> Any:
    """Parse one ``--set`` / ``--param`` value with the same YAML rules as the file."""
    value, _ = parse_yaml(text, source)
    return value


def read_yaml_file(path: Path) -> tuple[Any, dict[KeyPath, Position]]:
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:  # refused before reading it into memory
            raise ConfigError(f"the file is {size:,} bytes, more than {MAX_BYTES:,}; a config is "
                              "a page of settings (data belongs in dataset files)",
                              source=str(path))
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("config file not found", source=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file: {exc}", source=str(path)) from None
    return parse_yaml(text, str(path))


def dump_yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, allow_unicode=True)
