"""Environment ids, ``make``, and the fall-back to gymnax's own registry.

A factory takes the user's keyword arguments and returns ``(env, params)``. Factories
declare their keyword arguments explicitly, so an unknown one is reported by name
before anything is compiled.
"""

from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass
from typing import Any, Callable

import gymnax


@dataclass(frozen=True)
class EnvSpec:
    env_id: str
    factory: Callable[..., tuple[Any, Any]]
    description: str


_REGISTRY: dict[str, EnvSpec] = {}


def register(env_id: str, factory: Callable[..., tuple[Any, Any]], description: str = "") -> None:
    """Register ``factory(**kwargs) -> (env, params)`` under ``env_id``."""
    if env_id in _REGISTRY:
        raise ValueError(f"environment id {env_id!r} is already registered")
    _REGISTRY[env_id] = EnvSpec(env_id, factory, description)


def registered_ids() -> list[str]:
    """jaxq's own environment ids (gymnax's are reachable through ``make`` too)."""
    return sorted(_REGISTRY)


def env_specs() -> list[EnvSpec]:
    return [_REGISTRY[k] for k in registered_ids()]


def _check_kwargs(env_id: str, factory: Callable, kwargs: dict[str, Any]) -> None:
    sig = inspect.signature(factory)
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return
    accepted = [n for n, p in sig.parameters.items() if p.kind is not p.VAR_POSITIONAL]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(
            f"unknown keyword argument(s) {unknown} for {env_id!r}; accepted: {accepted}"
        )


def _unknown(env_id: str) -> ValueError:
    known = registered_ids() + list(gymnax.registered_envs)
    close = difflib.get_close_matches(env_id, known, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    return ValueError(
        f"unknown env_id {env_id!r}.{hint} jaxq ids: {registered_ids()}; gymnax ids are "
        "accepted too (gymnax.registered_envs)."
    )


def check_env(env_id: str, kwargs: dict[str, Any]) -> None:
    """What ``make`` would refuse about the id and the keyword argument names, without
    building anything (``TrainConfig`` calls it). Keyword values, and the keywords of
    gymnax ids, are checked when the environment is made."""
    if not isinstance(env_id, str):
        raise TypeError(f"env_id must be a str, got {type(env_id).__name__}")
    if env_id in _REGISTRY:
        _check_kwargs(env_id, _REGISTRY[env_id].factory, kwargs)
    elif env_id not in gymnax.registered_envs:
        raise _unknown(env_id)


def make(env_id: str, **kwargs: Any) -> tuple[Any, Any]:
    """``env, params = make(env_id, **kwargs)``: jaxq's ids first, then gymnax's.

    Raises ``ValueError`` for an unknown id (with close matches suggested) or an unknown
    keyword argument.
    """
    check_env(env_id, kwargs)
    if env_id in _REGISTRY:
        return _REGISTRY[env_id].factory(**kwargs)
    return gymnax.make(env_id, **kwargs)
