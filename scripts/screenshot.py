"""Render a kdbench page in headless Chromium and save a PNG screenshot (for the README).

    kdbench report RECORDS --format html --out site/index.html
    python scripts/screenshot.py site/index.html leaderboard.png [--width 1280] [--max-height 2400]

Needs selenium (the ``dev`` extra) and Debian's ``chromium`` and ``chromium-driver``; both are
named explicitly, so Selenium Manager never downloads a browser or a driver. The page is taken
whole up to ``--max-height`` pixels.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

CHROMIUM = os.environ.get("KDBENCH_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("KDBENCH_CHROMEDRIVER", "/usr/bin/chromedriver")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


def missing() -> str:
    """Why a browser cannot be started here ("" when it can)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install 'kdbench[dev]')"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            return f"{path} is missing (apt-get install chromium chromium-driver)"
    return ""


def browser(profile: Path | str):
    """Headless Chromium under Selenium, with a fresh profile folder ``profile``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


def screenshot(page: Path, out: Path, width: int = 1280, max_height: int = 2400) -> Path:
    profile = tempfile.mkdtemp(prefix="kdbench-chromium-")
    driver = browser(profile)
    try:
        driver.set_window_size(width, 800)
        driver.get(page.resolve().as_uri())
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(width, min(int(height), max_height))
        out.parent.mkdir(parents=True, exist_ok=True)
        if not driver.save_screenshot(str(out)):
            raise RuntimeError(f"Chromium took no screenshot of {page}")
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("page", type=Path, help="the HTML file (kdbench report --format html)")
    p.add_argument("out", type=Path, help="the PNG to write")
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--max-height", type=int, default=2400)
    args = p.parse_args(argv)
    why = missing()
    if why:
        print(f"screenshot: {why}", file=sys.stderr)
        return 2
    print(screenshot(args.page, args.out, args.width, args.max_height))
    return 0


if __name__ == "__main__":
    sys.exit(main())
