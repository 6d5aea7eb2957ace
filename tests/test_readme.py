"""README.md's configuration table is the one ``scripts/settings_table.py`` prints today."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_configuration_table_matches_settings() -> None:
    table = subprocess.run([sys.executable, str(ROOT / "scripts" / "settings_table.py")],
                           check=True, capture_output=True, text=True).stdout.strip()
    assert table in (ROOT / "README.md").read_text(), (
        "README.md's configuration table is stale: paste the output of scripts/settings_table.py"
    )
