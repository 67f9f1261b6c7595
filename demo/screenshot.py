#!/usr/bin/env python
"""Screenshot of the running demo in a real headless browser (Debian's ``chromium``; not needed in CI).

    python demo/screenshot.py --offline-demo outputs/distill-offline --query "ein kleines blaues Herz" \\
        --output demo/screenshot.png

Starts ``demo/app.py`` with the given arguments on a free port, waits until it answers, lets chromium load the
page (the app runs the ``--query`` caption when the page opens), saves the PNG (reduced to a 256-colour palette
to keep the repository small) and stops the app.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--disable-sync", "--hide-scrollbars"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, server: subprocess.Popen, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the app exited with {server.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(2)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output", default=os.path.join(HERE, "screenshot.png"))
    p.add_argument("--window", default="1280,1100", help="browser window WIDTH,HEIGHT")
    p.add_argument("--wait-ms", type=int, default=20000, help="virtual time chromium gives the page")
    p.add_argument("--browser", default=shutil.which("chromium") or shutil.which("chromium-browser") or "chromium")
    args, app_args = p.parse_known_args(argv)
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    server = subprocess.Popen([sys.executable, os.path.join(HERE, "app.py"), *app_args, "--port", str(port)])
    try:
        _wait(url, server, timeout=600)
        with tempfile.TemporaryDirectory(prefix="mvld_chromium_") as profile:
            raw = os.path.join(profile, "shot.png")
            subprocess.run([args.browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                            f"--window-size={args.window}", f"--virtual-time-budget={args.wait_ms}",
                            f"--screenshot={raw}", url], check=True, timeout=300,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            from PIL import Image

            with Image.open(raw) as image:
                image.convert("RGB").quantize(colors=256).save(args.output, optimize=True)
        print(f"wrote {args.output} ({os.path.getsize(args.output) // 1024} KiB)")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
