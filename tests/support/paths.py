"""Where the tests run: the repository holding this tests/ directory."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
