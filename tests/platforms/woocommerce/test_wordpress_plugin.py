"""The WordPress plugin: its pure PHP functions (run by ``php``), the syntax of every PHP file,
and the installable zip.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from platforms.woocommerce.build_plugin import (
    MAIN_FILE,
    PLUGIN_DIR,
    build_plugin_zip,
    plugin_version,
)
from tests.support import ROOT

PLUGIN_ROOT = PLUGIN_DIR.parent
PHP = shutil.which("php")
needs_php = pytest.mark.skipif(
    PHP is None, reason="php is not installed (`apt-get install php-cli`; .ci/run installs it)"
)


@needs_php
def test_the_pure_php_functions():
    result = subprocess.run(
        [PHP, str(PLUGIN_ROOT / "tests" / "test_functions.php")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert re.fullmatch(r"\d+ passed, 0 failed\n", result.stdout), result.stdout


@needs_php
@pytest.mark.parametrize(
    "path",
    sorted(PLUGIN_ROOT.rglob("*.php")),
    ids=lambda path: path.relative_to(PLUGIN_ROOT).as_posix(),
)
def test_php_syntax(path: Path):
    result = subprocess.run([PHP, "-l", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_main_file_has_a_plugin_header_and_the_hooks():
    text = MAIN_FILE.read_text(encoding="utf-8")
    assert re.search(r"^ \* Plugin Name:\s+\S", text, re.MULTILINE)
    assert plugin_version() == "0.2.0"
    for hook in (
        "'init'",
        "'woocommerce_checkout_create_order'",
        "'woocommerce_store_api_checkout_update_order_from_request'",
        "'woocommerce_thankyou'",
    ):
        assert f"add_action( {hook}," in text, hook
    stable = re.search(r"^Stable tag: (\S+)$", (PLUGIN_DIR / "readme.txt").read_text(), re.M)
    assert stable and stable.group(1) == plugin_version()


def test_the_zip_installs_as_one_plugin_folder(tmp_path):
    built = build_plugin_zip(tmp_path)
    assert built == tmp_path / "tiktok-click-capture-0.2.0.zip"
    with zipfile.ZipFile(built) as archive:
        assert archive.testzip() is None
        names = archive.namelist()
        assert names == [
            "tiktok-click-capture/includes/functions.php",
            "tiktok-click-capture/readme.txt",
            "tiktok-click-capture/tiktok-click-capture.php",
        ]
        for name in names:
            source = PLUGIN_DIR / name.removeprefix("tiktok-click-capture/")
            assert archive.read(name) == source.read_bytes(), name
    again = build_plugin_zip(tmp_path / "again")
    assert again.read_bytes() == built.read_bytes()  # reproducible


def test_the_build_command_prints_the_zip(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "platforms.woocommerce.build_plugin", "--output", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()) == tmp_path / "tiktok-click-capture-0.2.0.zip"
    assert zipfile.is_zipfile(result.stdout.strip())
