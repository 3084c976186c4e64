"""`make image-pins`: resolve requirements.txt and the image's extras (the GPIO pin
library) for linux/aarch64, CPython 3.11, and write the exact versions to
provisioning/pins.txt."""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

from .rootfs import IMAGE_EXTRAS, PINS, PLATFORM_ARGS

REPO = Path(__file__).resolve().parent.parent
HEADER = PINS.read_text().split("\n\n")[0] if PINS.exists() else ""


def resolve() -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "-d", tmp, "--only-binary=:all:",
             "--python-version", "3.11", "--implementation", "cp", *PLATFORM_ARGS,
             "-r", str(REPO / "requirements.txt"), *IMAGE_EXTRAS], check=True)
        pins = []
        for wheel in sorted(Path(tmp).glob("*.whl")):
            name, version = wheel.name.split("-")[:2]
            pins.append(f"{re.sub(r'[-_.]+', '-', name).lower()}=={version}")
    return pins


def main() -> int:
    lines = [ln for ln in HEADER.splitlines() if ln.startswith("#")]
    PINS.write_text("\n".join(lines + resolve()) + "\n")
    print(f"wrote {PINS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
