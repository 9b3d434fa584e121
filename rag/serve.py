"""Start the Streamlit app (the `rag serve` command and scripts/start.sh use this)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping

from rag.config import PROJECT_ROOT, Settings


def serve(settings: Settings, host: str, port: int | None = None, extra_env: Mapping[str, str] | None = None) -> int:
    """Run ``streamlit run app.py`` from the project root, so .streamlit/config.toml applies."""
    env = {**os.environ, **(extra_env or {})}
    cmd = [
        sys.executable, "-m", "streamlit", "run", str(PROJECT_ROOT / "app.py"),
        "--server.port", str(port or settings.app.port), "--server.address", host,
        "--server.headless", "true", "--browser.gatherUsageStats", "false",
        "--server.maxUploadSize", str(settings.app.max_upload_mb),
    ]
    return subprocess.call(cmd, env=env, cwd=PROJECT_ROOT)
