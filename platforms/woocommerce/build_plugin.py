"""Build the installable zip of the WordPress plugin that captures TikTok click ids.

``python -m platforms.woocommerce.build_plugin [--output DIR]`` prints the zip's path.
WordPress's *Upload Plugin* screen wants a zip whose top folder is the plugin's folder, named
after its slug; the zip carries the version from the plugin header in its name. Entries are
sorted and dated 1980-01-01, so the same files always give the same bytes.
"""

from __future__ import annotations

import argparse
import re
import zipfile
from pathlib import Path

PLUGIN_SLUG = "tiktok-click-capture"
PLUGIN_DIR = Path(__file__).with_name("wordpress-plugin") / PLUGIN_SLUG
MAIN_FILE = PLUGIN_DIR / f"{PLUGIN_SLUG}.php"
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip entry can hold
VERSION_HEADER = re.compile(r"^\s*\*\s*Version:\s*(\S+)\s*$", re.MULTILINE)


def plugin_version() -> str:
    """The ``Version:`` of the main file's plugin header."""
    found = VERSION_HEADER.search(MAIN_FILE.read_text(encoding="utf-8"))
    if found is None:
        raise ValueError(f"{MAIN_FILE} has no 'Version:' header")
    return found.group(1)


def plugin_files() -> list[Path]:
    """Every file of the plugin, in a stable order; hidden files are left out."""
    return sorted(
        path
        for path in PLUGIN_DIR.rglob("*")
        if path.is_file() and not any(part.startswith(".") for part in path.parts)
    )


def build_plugin_zip(output_dir: Path) -> Path:
    """Write ``tiktok-click-capture-<version>.zip`` into ``output_dir`` and return its path."""
    output_dir.mkdir(parents=True, exist_ok=True)
    target = output_dir / f"{PLUGIN_SLUG}-{plugin_version()}.zip"
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in plugin_files():
            name = f"{PLUGIN_SLUG}/{path.relative_to(PLUGIN_DIR).as_posix()}"
            entry = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o644 << 16
            archive.writestr(entry, path.read_bytes())
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build the WordPress plugin's zip.")
    parser.add_argument("--output", type=Path, default=Path("dist"), help="folder for the zip")
    print(build_plugin_zip(parser.parse_args(argv).output))


if __name__ == "__main__":
    main()
