"""Run-form parameters whose choices show at once: a dropdown or a multi-select, not a "str | None" toggle.

Prefect's Run form draws a parameter typed `X | None` (schema `anyOf [X, null]`) as tabs with "None"
picked, its choices one click away; and it fills a `null` default into the form, which a schema without
null then refuses. So an optional choice is shown to the form as a plain enum of its values with "" (not
chosen) first and as its default; in Python it stays `Literal[values] | None`, and "" arrives as None, so
"not chosen: the settings block decides" means the same whether the run came from the form, a deployment
call, the upload page or Python. The values come from the registry that defines them (engines, presets,
languages), never from a second list.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, WithJsonSchema

NOT_CHOSEN = ""  # the form's empty entry; the flow sees None


def _not_chosen_is_none(value: Any) -> Any:
    return None if value == NOT_CHOSEN else value


def choice(values: Iterable[str]) -> Any:
    """`Literal[*values] | None` in Python; in the Run form a dropdown of `values`, empty by default."""
    names = tuple(values)
    return Annotated[
        Literal[names] | None,  # type: ignore[valid-type]  # the values are known when the module loads
        BeforeValidator(_not_chosen_is_none),
        WithJsonSchema({"type": "string", "enum": [NOT_CHOSEN, *names]}),
        Field(json_schema_extra={"default": NOT_CHOSEN}),
    ]


def choices(values: Iterable[str]) -> Any:
    """`list[str] | None` in Python (names the flow checks when it starts, so a saved block may add some);
    in the Run form a multi-select of `values`, none ticked by default (an empty list: not chosen)."""
    return Annotated[
        list[str] | None,
        WithJsonSchema({"type": "array", "items": {"type": "string", "enum": list(values)}}),
        Field(json_schema_extra={"default": []}),
    ]
