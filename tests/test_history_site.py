"""`history site OUT` in a real browser: Debian's chromium, driven by playwright (its own
browser download cannot reach the network here). The history comes from real sweeps of a
small declared workload whose model name holds markup: it must show as text, run nothing."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_sweeper

EVIL = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2">'

COUNTER = '''#!/usr/bin/env python3
"""Counts requests per second at a concurrency; COUNTER_SCALE slows it (a regression)."""
import argparse, os
p = argparse.ArgumentParser()
p.add_argument("--concurrency", type=int, required=True)
a = p.parse_args()
scale = float(os.environ.get("COUNTER_SCALE", "1"))
for w in range(6):
    print("window %d: %.1f req/s" % (w, scale * (100.0 * a.concurrency + (w % 2))))
'''


def user_config(root: Path) -> Path:
    conf = root / "conf"
    (conf / "workload").mkdir(parents=True)
    (conf / "model").mkdir()
    program = root / "counter.py"
    program.write_text(COUNTER)
    program.chmod(0o755)
    (conf / "workload" / "counter.yaml").write_text(
        f"""\
name: counter
identity: [model]  # its runs are told apart by the (markup-laden) model name
command:
  program: {program}
  args:
    --concurrency: ${{batch_size}}
metrics:
  formats:
    counter:
      throughput: 'window \\d+: (?P<value>[\\d.]+) req/s'
  unit: req/s
"""
    )
    (conf / "model" / "evil.yaml").write_text(f"name: {json.dumps(EVIL)}\nfamily: resnet\n")
    return conf


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("site")
    conf = user_config(root)
    db = f"sqlite:///{root / 'history.db'}"
    for i, scale in enumerate(["1", "1", "1", "0.7"]):
        proc = run_sweeper(
            "--config-dir", str(conf), "workload=counter", "model=evil", "batch_size=2,4",
            f"hydra.sweep.dir={root / f'sweep-{i}'}", f"history.url={db}", "-m",
            cwd=root, env={"COUNTER_SCALE": scale, "SWEEPER_HISTORY_URL": None},
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
    out = root / "report"
    proc = subprocess.run(
        [sys.executable, "-m", "sweeper.collect", "history", "site", str(out), "--db", db],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    return out / "index.html"


def test_the_site_is_self_contained_and_escapes_what_it_shows(site) -> None:
    page = site.read_text()
    assert EVIL not in page and "<script>window.pwned" not in page
    # Only the page's own scripts, from its own folder: no network.
    scripts = [line for line in page.splitlines() if "<script" in line]
    assert all('src="assets/' in s or 'type="application/json"' in s for s in scripts)
    assert "http://" not in page and "https://" not in page
    for asset in ("plotly.min.js", "site.js", "site.css"):
        assert (site.parent / "assets" / asset).stat().st_size > 0


@pytest.mark.browser
def test_the_site_in_headless_chromium(site) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("needs Debian's chromium (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(site.as_uri())
        page.wait_for_selector("#series tbody tr")

        # The regression (the last sweep ran at 0.7 of the others) is in its table.
        findings = page.locator("#findings tbody tr")
        assert findings.count() == 1
        assert "regression" in findings.first.inner_text()
        assert "-30" in findings.first.inner_text()

        # The model's name is text: shown as written, nothing of it ran or was made.
        assert page.evaluate("window.pwned") is None
        assert page.locator("img").count() == 0
        assert EVIL in page.locator("#series tbody tr").first.inner_text()

        # Both plots of the configuration render, with a line per batch size.
        card = page.locator(".configuration").first
        card.scroll_into_view_if_needed()
        page.wait_for_selector(".configuration .plot .main-svg")
        page.wait_for_function("document.querySelectorAll('.configuration .main-svg').length >= 2")
        traces = page.locator(".configuration .plot").first.locator(".scatterlayer .trace")
        assert traces.count() >= 2
        legend = page.locator(".configuration .plot").first.locator(".legendtext")
        assert sorted(legend.all_text_contents()) == ["batch_size=2", "batch_size=4"]

        # The filter: one batch size's series stays, the other is hidden.
        page.fill("#filter", "batch_size=4")
        visible = page.locator("#series tbody tr:not(.hidden)")
        assert visible.count() == 1 and "4" in visible.first.inner_text()
        page.fill("#filter", "no-such-thing")
        assert page.locator(".configuration:not(.hidden)").count() == 0
        browser.close()
    assert errors == []


def test_a_series_of_failed_runs_only_is_drawn_too(tmp_path, standin_env) -> None:
    """A configuration that never ran ok (out of memory each time) has no figure and so no
    unit: the trend and the site still take it (pandas' string dtype keeps it missing)."""
    from tests.conftest import run_sweeper

    env = {**standin_env, "STANDIN_HEAL": "1", "STANDIN_OOM_ABOVE": "24"}
    proc = run_sweeper(
        "-m", "system=ipu_m2000", "mode=infer", "batch_size=4,32",
        f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path, env=env,
    )  # fmt: skip
    assert proc.returncode == 1 and "oom" in proc.stderr, proc.stderr[-2000:]
    for argv in (["trend", "--out", "trend.png"], ["site", "site"]):
        made = subprocess.run(
            [sys.executable, "-m", "sweeper.collect", "history", *argv],
            cwd=tmp_path, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert made.returncode == 0, made.stderr[-2000:]
    assert "oom" in (tmp_path / "site" / "index.html").read_text()
