"""Strict dataclass configs: dict and YAML round trips that refuse unknown or mistyped fields.

Every config in distwm subclasses :class:`ConfigBase` and is a ``@dataclass``. ``from_dict``
raises ``ValueError`` naming the bad field (with a did-you-mean) or the bad value and the type
it should have; nothing is silently dropped or coerced, except that an ``int`` is accepted
where a ``float`` is expected and a list where a tuple is expected (YAML has no tuples).

Renamed fields: a config class lists ``ALIASES = {"old_name": "new_name"}``; the old name is
accepted by the constructor, ``from_dict`` / YAML, ``replace`` and ``--set`` and stored under
the new one (``to_dict`` writes only new names). ``REMOVED = {"name": "why, and what to use"}``
refuses a name with that message instead of "unknown field". Both are inherited and merged
along the class hierarchy.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import re
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, Literal, Mapping, TypeVar, Union, get_args, get_origin

__all__ = ["ConfigBase", "check_value", "parse_override_value"]

#: a number in exponent notation without a dot (``3e-4``), which YAML 1.1 leaves a string
_YAML11_EXPONENT = re.compile(r"^[-+]?[0-9]+[eE][-+]?[0-9]+$")

C = TypeVar("C", bound="ConfigBase")


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def check_value(field: str, value: Any, tp: Any) -> Any:
    """Return ``value`` converted to ``tp`` or raise ``ValueError`` naming ``field``."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is Union or origin is types.UnionType:
        errors = []
        for arg in get_args(tp):
            if arg is type(None):
                if value is None:
                    return None
                continue
            try:
                return check_value(field, value, arg)
            except ValueError as exc:
                errors.append(str(exc))
        if len(errors) == 1:
            raise ValueError(errors[0])
        raise ValueError(f"Config field {field!r}: {value!r} is not a valid {_type_name(tp)}")
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise ValueError(
                f"Config field {field!r}: {value!r} is not one of {', '.join(map(repr, choices))}"
            )
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ValueError(
                f"Config field {field!r}: expected a {origin.__name__}, got {value!r}"
            )
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ValueError(
                    f"Config field {field!r}: expected {len(args)} items, got {len(value)}"
                )
            items = [check_value(f"{field}[{i}]", v, a) for i, (v, a) in enumerate(zip(value, args))]
        else:
            item_tp = args[0] if args else Any
            items = [check_value(f"{field}[{i}]", v, item_tp) for i, v in enumerate(value)]
        return origin(items)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ValueError(f"Config field {field!r}: expected a mapping, got {value!r}")
        return dict(value)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp) and issubclass(tp, ConfigBase):
        if isinstance(value, tp):
            return value
        if isinstance(value, Mapping):
            return tp.from_dict(value, _prefix=f"{field}.")
        raise ValueError(f"Config field {field!r}: expected a mapping for {tp.__name__}")
    if tp is float:
        if isinstance(value, str) and _YAML11_EXPONENT.match(value.strip()):
            value = float(value)  # PyYAML (YAML 1.1) reads 3e-4, without a dot, as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"Config field {field!r}: expected a float, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"Config field {field!r}: expected an int, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(f"Config field {field!r}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"Config field {field!r}: expected a string, got {value!r}")
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ValueError(f"Config field {field!r}: expected {tp.__name__}, got {value!r}")
    return value


def _takes_text(tp: Any) -> bool:
    """Whether ``tp`` accepts some string: ``str``, a ``Literal`` with a string choice, or a
    union (``Optional``) holding one."""
    if tp is str:
        return True
    if get_origin(tp) is Literal:
        return any(isinstance(choice, str) for choice in get_args(tp))
    if get_origin(tp) in (Union, types.UnionType):
        return any(_takes_text(arg) for arg in get_args(tp))
    return False


def parse_override_value(raw: str, tp: Any = Any) -> Any:
    """The value of a ``--set key=raw`` for a field of type ``tp``: ``raw`` parsed as YAML,
    except that a field taking strings keeps the text itself when YAML's value does not fit
    it (YAML reads ``off`` / ``on`` / ``yes`` / ``no`` as booleans and ``123`` as an int):
    ``autocast=off`` is ``"off"``, while ``null`` for an ``Optional[str]`` stays None.
    ``tp=Any`` (the field is not known): plain YAML."""
    import yaml

    value = yaml.safe_load(raw)
    if isinstance(value, str) and _YAML11_EXPONENT.match(value.strip()) and not _takes_text(tp):
        return float(value)  # 3e-4: YAML 1.1 needs a dot to read a number
    if isinstance(value, str) or not _takes_text(tp):
        return value
    try:
        check_value("", value, tp)
    except ValueError:
        return raw.strip()
    return value


def _literal_choices(tp: Any) -> tuple | None:
    """The allowed values of a ``Literal[...]`` or ``Optional[Literal[...]]`` type, else None."""
    if get_origin(tp) is Literal:
        return get_args(tp)
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1 and get_origin(args[0]) is Literal:
            return (*get_args(args[0]), None)
    return None


def _merged(cls: type, attr: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        out.update(klass.__dict__.get(attr, {}))
    return out


class _ConfigMeta(type):
    """Maps the old names of renamed fields (``ALIASES``) to the new ones on construction."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if kwargs:
            kwargs = cls.canonical_names(kwargs)  # type: ignore[attr-defined]
        return super().__call__(*args, **kwargs)

    @property
    def __signature__(cls) -> inspect.Signature:
        """The dataclass ``__init__``'s signature (without ``self``), not this ``__call__``'s,
        so that ``inspect.signature``, ``help()`` and IDEs show the fields."""
        init = inspect.signature(cls.__init__)  # type: ignore[misc]
        return init.replace(parameters=list(init.parameters.values())[1:])


class ConfigBase(metaclass=_ConfigMeta):
    """Mixin for ``@dataclass`` configs with strict dict/YAML round trips.

    Direct construction checks every ``Literal`` (choice) field, so that
    ``DreamerConfig(actor_grad="reinfroce")`` fails where it is written, naming the choices;
    ``from_dict``/``replace`` check every field's type.
    """

    #: ``{old field name: new field name}`` accepted everywhere a field is named
    ALIASES: ClassVar[Mapping[str, str]] = {}
    #: ``{field name: message}`` for names that are refused with an explanation
    REMOVED: ClassVar[Mapping[str, str]] = {}

    @classmethod
    def aliases(cls) -> dict[str, str]:
        """``ALIASES`` of this class and its bases."""
        return _merged(cls, "ALIASES")

    @classmethod
    def canonical_names(cls, data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
        """``data`` with old field names replaced by new ones; an old name given together
        with its new one, or a ``REMOVED`` name, raises ``ValueError``."""
        return {new: value for _, new, value in cls._canonical_items(data, prefix)}

    @classmethod
    def _canonical_items(cls, data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str, Any]]:
        """``(name as written, field name, value)`` of every entry of ``data``."""
        aliases, removed = cls.aliases(), _merged(cls, "REMOVED")
        out: list[tuple[str, str, Any]] = []
        for key, value in data.items():
            if key in removed:
                raise ValueError(f"Config field {prefix + key!r} of {cls.__name__} is not "
                                 f"accepted: {removed[key]}")
            new = aliases.get(key, key)
            if new != key and new in data:
                raise ValueError(f"Config fields {prefix + key!r} and {prefix + new!r} of "
                                 f"{cls.__name__} are the same setting ({key!r} is its old "
                                 f"name): give only {prefix + new!r}")
            out.append((key, new, value))
        return out

    def __post_init__(self) -> None:
        self.check_choices()

    def check_choices(self) -> None:
        """Raise ``ValueError`` naming the field, the bad value and the choices."""
        for name, tp in self._field_types().items():
            choices = _literal_choices(tp)
            if choices is not None and getattr(self, name) not in choices:
                raise ValueError(
                    f"{type(self).__name__}.{name} {getattr(self, name)!r} is not one of "
                    f"{', '.join(map(repr, choices))}"
                )

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]

    @classmethod
    def _field_types(cls) -> dict[str, Any]:
        cached = cls.__dict__.get("_field_types_cache")
        if cached is None:
            cached = typing.get_type_hints(cls)
            cls._field_types_cache = cached  # per class: subclasses resolve their own
        return cached

    @classmethod
    def unknown_field_error(cls, name: str, prefix: str = "") -> ValueError:
        names = cls.field_names()
        close = difflib.get_close_matches(name, names, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        return ValueError(
            f"Unknown config field {prefix + name!r} for {cls.__name__}.{hint} "
            f"Valid fields: {', '.join(names)}"
        )

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any], _prefix: str = "") -> C:
        if not isinstance(data, Mapping):
            raise ValueError(f"{cls.__name__}.from_dict expects a mapping, got {type(data).__name__}")
        types_ = cls._field_types()
        kwargs = {}
        for written, key, value in cls._canonical_items(data, _prefix):
            if key not in types_ or key not in cls.field_names():
                raise cls.unknown_field_error(written, _prefix)
            kwargs[key] = check_value(_prefix + written, value, types_[key])
        return cls(**kwargs)  # type: ignore[call-arg]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, ConfigBase):
                value = value.to_dict()
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    def to_yaml(self, path: str | Path | None = None) -> str:
        import yaml

        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_yaml(cls: type[C], path_or_text: str | Path) -> C:
        import yaml

        text = str(path_or_text)
        path = Path(text)
        if isinstance(path_or_text, Path) or (("\n" not in text) and path.suffix in (".yaml", ".yml")):
            if not path.exists():
                raise ValueError(f"Config file {str(path)!r} does not exist")
            text = path.read_text()
        data = yaml.safe_load(text) or {}
        return cls.from_dict(data)

    def replace(self: C, **overrides: Any) -> C:
        """A copy with ``overrides`` applied, each checked like ``from_dict``."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]
        types_ = self._field_types()
        for written, key, value in self._canonical_items(overrides):
            if key not in data:
                raise self.unknown_field_error(written)
            data[key] = check_value(written, value, types_[key])
        return type(self)(**data)

    @classmethod
    def field_type(cls, name: str) -> Any:
        """The type of field ``name`` (an old name of ``ALIASES`` too); ``Any`` if unknown."""
        return cls._field_types().get(cls.aliases().get(name, name), Any)

    def set_dotted(self: C, assignment: str) -> C:
        """Apply ``key=value`` (:func:`parse_override_value`: YAML, a string field keeps
        the text), as in ``--set key=value``."""
        if "=" not in assignment:
            raise ValueError(f"Bad override {assignment!r}: expected key=value")
        key, _, raw = assignment.partition("=")
        key = key.strip()
        return self.replace(**{key: parse_override_value(raw, self.field_type(key))})
