"""One way to get a block's settings for a run: the named document (or the defaults), flow overrides on top.

Every flow and deployment reads its settings through `load_block`: without a name no API call is made
(tests, notebooks and `python -m flows...` work offline), a missing document or a bad override is one
ConfigError line naming it, and an override reaches into a nested stage settings by a dotted path
(`keyframes.sample_fps`).
"""

from __future__ import annotations

import os
from typing import Any, TypeVar

from prefect.blocks.core import Block
from pydantic import ValidationError

from core.block_names import names_to_try
from core.errors import ConfigError

B = TypeVar("B", bound=Block)


def _set(data: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for part in parents:
        data = data[part]
    if leaf not in data:
        raise KeyError(f"no setting {path!r}")
    data[leaf] = value


def _load_document(block_type: type[B], name: str, env: str | None) -> B:
    """The saved document `name`; a shipped name also finds a server's pre-rename `default` document."""
    for candidate in names_to_try(name):
        try:
            return block_type.load(candidate, _sync=True)
        except ValueError as exc:  # Prefect's "unable to find block document"
            error = exc
    where = f" ({env})" if env else ""
    raise ConfigError(
        f"{block_type.get_block_type_name()} block {name!r}{where} not found "
        f"(run `python -m deployments.bootstrap`): {error}"
    ) from error


def load_block(
    block_type: type[B], name: str | None = None, *, env: str | None = None, **overrides: Any
) -> B:
    """The document `name` (else the one named by environment variable `env`, else the defaults) with
    the non-None `overrides` applied; a keyword's double underscore is a dot (`keyframes__sample_fps`)."""
    name = (name or (os.environ.get(env, "") if env else "")).strip() or None
    title = block_type.get_block_type_name()
    block = _load_document(block_type, name, env) if name else block_type()
    given = {key.replace("__", "."): value for key, value in overrides.items() if value is not None}
    if not given:
        return block
    data = block.model_dump()
    try:
        for path, value in given.items():
            _set(data, path, value)
        return block_type.model_validate(data)
    except (KeyError, TypeError, ValidationError) as exc:
        raise ConfigError(f"bad {title} settings {given}: {exc}") from exc
