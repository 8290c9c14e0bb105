"""services/ never imports Textual (nor Rich, nor the TUI): the core stays usable headless."""

import subprocess
import sys
import textwrap
from pathlib import Path


def test_importing_every_service_module_loads_no_textual_rich_or_tui() -> None:
    code = textwrap.dedent(
        """
        import importlib, pkgutil, sys
        import httpx  # httpx's optional CLI pulls in rich when it is installed: not ours to avoid
        before = {m for m in sys.modules if m.split(".")[0] == "rich"}
        import services
        names = [m.name for m in pkgutil.walk_packages(services.__path__, "services.")
                 if ".migrations" not in m.name]
        for name in names:
            importlib.import_module(name)
        bad = sorted(
            m for m in sys.modules
            if m.split(".")[0] in {"textual", "tui"} or (m.split(".")[0] == "rich" and m not in before)
        )
        print(len(names))
        print(",".join(bad))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert int(out[0]) >= 5, "the walk found too few modules: the test would prove nothing"
    assert out[1] == "", f"services imported {out[1]}"


def test_import_linter_contract_holds() -> None:
    import shutil
    from pathlib import Path

    exe = Path(sys.executable).parent / "lint-imports"
    assert exe.exists() or shutil.which("lint-imports"), "import-linter is a dev dependency"
    import tomllib

    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = len(pyproject["tool"]["importlinter"]["contracts"])
    run = subprocess.run([str(exe)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"{contracts} kept, 0 broken" in run.stdout


def test_the_command_line_starts_without_textual() -> None:
    """``tui.cli`` never imports Textual (import-linter says so statically; this says it at run
    time): every command module is imported and the whole parser built, and no ``textual`` module
    is loaded. Only ``insdesk`` / ``insdesk demo`` import the App, when they run."""
    code = textwrap.dedent(
        """
        import importlib, pkgutil, sys
        import tui.cli
        import tui.cli.commands
        names = [m.name for m in pkgutil.walk_packages(tui.cli.commands.__path__, "tui.cli.commands.")]
        for name in names:
            importlib.import_module(name)
        tui.cli.build_parser().parse_args(["identity", "show", "1"])
        print(len(names))
        print(",".join(sorted(m for m in sys.modules if m.split(".")[0] == "textual" or m == "tui.app")))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert int(out[0]) >= 10, "the walk found too few command modules: the test would prove nothing"
    assert out[1] == "", f"the command line imported {out[1]}"


def test_the_virtual_card_and_the_simulators_share_no_code_with_what_they_test() -> None:
    """The virtual carte Vitale (tests/vcard) is written from the card's public structure, not
    from the reader it tests; the simulators from the protocols (the import-linter contract
    covers services.insi_sim and services.dmp_sim, this covers the card, outside `services`)."""
    import ast

    vcard = Path(__file__).parent / "vcard"
    sources = sorted(vcard.rglob("*.py"))
    assert sources, "tests/vcard has no module"
    for source in sources:
        tree = ast.parse(source.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith(("services", "tui")), f"{source.name} imports {name}"
