"""The user's keymap: ``[keys]`` of ``keymap.toml`` (binding id = keys), read by the factory.

The file is ``$INSDESK_KEYMAP`` when set, otherwise ``keymap.toml`` in the user configuration
folder (``$XDG_CONFIG_HOME/insdesk`` on Linux)::

    [keys]
    app.insi = "f12"      # a bare dotted key is a nested table in TOML: read back as "app.insi"
    "form.save" = "ctrl+s,ctrl+e"

Nothing here raises: an unreadable file, a value that is not a key, an id no screen binds are
problems the application shows in a notice; the valid entries are still applied.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "INSDESK_KEYMAP"
FILE_NAME = "keymap.toml"


@dataclass(frozen=True)
class UserKeymap:
    """Binding id → keys (Textual's ``Keymap``), and what was wrong in the file."""

    keys: dict[str, str]
    source: Path | None = None
    problems: tuple[str, ...] = ()


def keymap_path(env: Mapping[str, str] | None = None) -> tuple[Path, bool]:
    """The keymap file and whether it was asked for explicitly (``$INSDESK_KEYMAP``)."""
    env = os.environ if env is None else env
    explicit = env.get(ENV_VAR, "").strip()
    if explicit:
        return Path(explicit).expanduser(), True
    import platformdirs

    return Path(platformdirs.user_config_dir("insdesk")) / FILE_NAME, False


def known_binding_ids() -> set[str]:
    """Every binding id of the application, its screens and widgets (Textual's own included)."""
    import importlib
    import pkgutil

    from textual.binding import Binding
    from textual.dom import DOMNode

    import tui.screens
    import tui.widgets
    from tui.bindings import APP_BINDINGS  # the App's own (tui.app imports this module, not the reverse)

    for package in (tui.screens, tui.widgets):
        for module in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
            importlib.import_module(module.name)
    ids: set[str] = {b.id for b in APP_BINDINGS if isinstance(b, Binding) and b.id}
    pending: list[type[DOMNode]] = [DOMNode]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        for binding in cls.__dict__.get("BINDINGS", ()):
            binding_id = getattr(binding, "id", None)
            if binding_id:
                ids.add(binding_id)
    return ids


def load_keymap(path: Path | None = None, env: Mapping[str, str] | None = None) -> UserKeymap:
    """Reads the keymap (``path``, else ``$INSDESK_KEYMAP``, else the user's config folder)."""
    explicit = path is not None
    if path is None:
        path, explicit = keymap_path(env)
    if not path.is_file():
        if explicit:
            return UserKeymap({}, path, (f"fichier de raccourcis {path} introuvable : touches par défaut.",))
        return UserKeymap({}, None)
    import tomllib  # read in the services' worker, after the first frame

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        return UserKeymap({}, path, (f"{path} illisible ({err}) : touches par défaut.",))
    table = data.get("keys", {})
    if not isinstance(table, dict):
        return UserKeymap({}, path, (f'{path} : [keys] doit être une table (id = "touche").',))
    keys: dict[str, str] = {}
    problems: list[str] = []
    for binding_id, value in _flatten(table):
        if not isinstance(value, str) or not value.strip():
            problems.append(f'{binding_id} : touche attendue entre guillemets (ex. "f12").')
            continue
        keys[binding_id] = ",".join(k.strip() for k in value.split(",") if k.strip())
    if keys:
        unknown = sorted(set(keys) - known_binding_ids())
        if unknown:
            problems.append(
                f"identifiant{'s' if len(unknown) > 1 else ''} inconnu{'s' if len(unknown) > 1 else ''}, "
                f"ignoré{'s' if len(unknown) > 1 else ''} : {', '.join(unknown)}."
            )
            for binding_id in unknown:
                del keys[binding_id]
    return UserKeymap(keys, path, tuple(problems))


def _flatten(table: dict[str, object], prefix: str = "") -> list[tuple[str, object]]:
    """``app.insi = "f12"`` unquoted is ``{"app": {"insi": "f12"}}`` in TOML: back to ``app.insi``."""
    out: list[tuple[str, object]] = []
    for name, value in table.items():
        if isinstance(value, dict):
            out.extend(_flatten(value, f"{prefix}{name}."))
        else:
            out.append((f"{prefix}{name}", value))
    return out
