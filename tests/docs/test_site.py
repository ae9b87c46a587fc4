"""The documentation site: built by Sphinx with warnings as errors, every tutorial executed by
the build, checked in the built HTML and in headless Chromium; and the package as a wheel.

The build executes every tutorial (about five minutes on two cores): it is the one test
that does, shared by the checks below through a module fixture.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
TUTORIALS = sorted(p.stem for p in (DOCS / "tutorials").glob("*.md"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytest.importorskip("sphinx", reason="the docs tools are not installed "
                                     "(bash scripts/setup.sh --test installs them)")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site built from scratch (nothing cached: every tutorial executed)."""
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         "-d", str(out / "doctrees"), str(DOCS), str(out / "html")],
        capture_output=True, text=True, cwd=ROOT, timeout=1500)
    assert done.returncode == 0, done.stderr[-6000:]
    return out / "html"


def _images(page: Path) -> list[str]:
    return re.findall(r'<img[^>]+src="([^"]+)"', page.read_text())


def _text(page: Path) -> str:
    """A page's text without its tags."""
    return re.sub(r"<[^>]+>", "", page.read_text())


def test_every_tutorial_is_listed_executed_and_shows_its_figures(site: Path) -> None:
    """Each tutorial is in the index's table of contents, its code ran (outputs, no error
    output), and the figures its cells drew are in the page as image files."""
    assert len(TUTORIALS) >= 6
    index = (site / "index.html").read_text()
    for name in TUTORIALS:
        page = site / "tutorials" / f"{name}.html"
        assert f'href="tutorials/{name}.html"' in index, name
        text = page.read_text()
        assert "cell_output" in text, name
        assert "Traceback" not in text and "output stderr" not in text, name
        drawn = [src for src in _images(page) if "/_images/" in src or src.startswith(
            "../_images/")]
        assert drawn, f"{name} shows no figure"
        for src in drawn:
            assert (page.parent / src).resolve().stat().st_size > 5_000, (name, src)


def test_api_and_command_line_pages_are_generated(site: Path) -> None:
    """The API reference documents the public modules from their docstrings (with their
    examples), and the command line reference lists every command from Click itself."""
    core = (site / "api" / "core.html").read_text()
    assert 'id="closedloop.core.plants.plant_from_config"' in core
    assert "Example" in core
    top = _text(site / "api" / "top-level.html")
    assert "closedloop.train(" in top and "closedloop.load_run(" in top
    from closedloop.cli import cli

    cli_page = _text(site / "cli.html")
    for command in cli.commands:
        assert f"closedloop {command}" in cli_page, command
    assert "--devices" in cli_page


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed "
                                             "(bash scripts/setup.sh --test installs it)")
def test_the_site_renders_in_headless_chromium(site: Path) -> None:
    """A tutorial's figures load in a browser and an API page has its entries."""
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto((site / "tutorials" / "closed-open-pair.html").as_uri())
        page.wait_for_load_state("load")
        images = page.evaluate("""Array.from(document.images).map(
            i => [i.complete, i.naturalWidth, i.naturalHeight])""")
        assert len(images) >= 2
        assert all(done and width > 200 and height > 100 for done, width, height in images)
        assert page.title().startswith("The closed/open pair")
        page.goto((site / "api" / "training.html").as_uri())
        page.wait_for_load_state("load")
        assert page.locator("dl.py.function").count() > 10
        assert page.locator("dt#closedloop\\.training\\.loop\\.train").count() == 1
        browser.close()
