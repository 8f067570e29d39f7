"""The README's tour: three screenshots of the demo's real data (not a test).

    newsletter demo --dir /tmp/tour/d && newsletter --config /tmp/tour/d/demo.toml \
        admin create-user tour --password tour-password-123
    cd /tmp/tour && python /path/to/tests/tour/take.py "$(command -v newsletter)"

It reads Ada's issue from the demo's Maildir, serves the demo's pages, and writes
tour-issue.png (the mail at 600 px), tour-preferences.png and tour-admin-subscriber.png
(1280 px) in the current directory; copy them here.
"""

import email
import re
import socket
import subprocess
import sys
import time
from email import policy
from pathlib import Path

from playwright.sync_api import sync_playwright

mail = next(p for p in Path("d/maildir/new").iterdir() if b"ada@example.org" in p.read_bytes())
msg = email.message_from_bytes(mail.read_bytes(), policy=policy.default)
html = msg.get_body(preferencelist=("html",)).get_content()
Path("issue.html").write_text(html)
links = dict.fromkeys(re.findall(r'href="(http://127\.0\.0\.1:8000/[^"]+)"', html))
view = next(link for link in links if "/view/" in link and "rate=" not in link)
manage = next(link for link in links if "/manage/" in link)
server = subprocess.Popen(
    [sys.argv[1], "--config", "d/demo.toml", "serve"],
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
)
for _ in range(200):
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", 8000)) == 0:
            break
    time.sleep(0.1)
try:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium")
        page = b.new_page(viewport={"width": 600, "height": 1400})
        page.goto(Path("issue.html").resolve().as_uri())
        page.screenshot(path="tour-issue.png")
        page = b.new_page(viewport={"width": 1280, "height": 1100})
        page.goto(manage)
        page.screenshot(path="tour-preferences.png")
        page = b.new_page(viewport={"width": 1280, "height": 1000})
        page.goto("http://127.0.0.1:8000/admin/login")
        page.fill("input[name=username]", "tour")
        page.fill("input[name=password]", "tour-password-123")
        page.click("button[type=submit]")
        page.goto("http://127.0.0.1:8000/admin/subscribers")
        page.click("text=ada@example.org")
        page.screenshot(path="tour-admin-subscriber.png")
        b.close()
finally:
    server.terminate()
    server.wait()
print(view, manage)
