"""MkDocs hook: serve the committed tables' plots and CSVs (``results/reproduce/*.{png,csv}``) under the
site path ``reproduce/``, so the gallery and the home page show them without a copy in ``docs/``."""
from __future__ import annotations

import os

from mkdocs.structure.files import File

SITE_DIR = "reproduce"  # lossmooth.reproduce.gallery.SITE_DIR: the pages link there


def on_files(files, config):
    results = os.path.join(os.path.dirname(config["config_file_path"]), "results", "reproduce")
    for name in sorted(os.listdir(results)):
        if name.endswith((".png", ".csv")):
            files.append(File.generated(config, f"{SITE_DIR}/{name}", abs_src_path=os.path.join(results, name)))
    return files
