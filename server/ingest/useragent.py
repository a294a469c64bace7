"""A User-Agent header → browser, OS, device type and what kind of sender it is.

Browser, OS and device come from uap-core's rules (the `ua-parser` package, on its Rust engine).
Senders that are not people come in two kinds, told apart because they count differently
(server/ingest/enrich.py):

- crawlers: uap-core's "Spider" devices (Googlebot, bingbot, …) and headless or scripted
  browsers (HeadlessChrome, PhantomJS, Lighthouse, …): always a bot;
- HTTP tools: what the crawler list (`crawlerdetect`) knows that is not a crawler (curl,
  python-requests, okhttp, Go-http-client, …). Apps and back ends send events with these on
  behalf of a user they name, so such an event is a bot only when it names no user.

A parse costs ~12 us for a new User-Agent string, plus ~100 us for the crawler list; results are
cached per string (`describe`), so a warm lookup is a dict hit. The first parse of a process builds
the rules (~0.11 s of CPU): `warm` does that at start, not in the first request's time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import ua_parser
from crawlerdetect import CrawlerDetect

MAX_LENGTH = 512  # longer headers are cut before parsing (the rules' cost grows with length)
CACHE_SIZE = 10_000
HEADLESS = re.compile(
    r"HeadlessChrome|PhantomJS|Lighthouse|Puppeteer|Playwright|Selenium|SlimerJS|Headless|Prerender", re.IGNORECASE
)
MOBILE_OS = frozenset({"iOS", "Android", "Windows Phone", "BlackBerry OS", "KaiOS", "Symbian OS", "Firefox OS"})
DESKTOP_OS = frozenset({"Windows", "Mac OS X", "macOS", "Linux", "Ubuntu", "Fedora", "Chrome OS", "FreeBSD",
                        "OpenBSD", "Debian", "Mint", "Red Hat", "SUSE", "Solaris", "NetBSD"})
TABLET_DEVICES = re.compile(r"iPad|Tablet|Kindle|Silk|PlayBook|Nexus (7|9|10)\b", re.IGNORECASE)

_crawler_list = CrawlerDetect()


@dataclass(frozen=True)
class Agent:
    browser: str = ""
    browser_version: str = ""
    os: str = ""
    device_type: str = ""  # desktop, mobile, tablet, bot or other ('' when there is no User-Agent)
    crawler: bool = False  # always a bot
    tool: bool = False  # an HTTP library or command-line tool: a bot unless the event names its user


NO_AGENT = Agent()


@lru_cache(maxsize=CACHE_SIZE)
def describe(user_agent: str) -> Agent:
    text = user_agent[:MAX_LENGTH].strip()
    if not text:
        return NO_AGENT
    parsed = ua_parser.parse(text)
    browser = version = os_name = device = brand = ""
    if parsed.user_agent is not None:
        browser = parsed.user_agent.family
        version = ".".join(part for part in (parsed.user_agent.major, parsed.user_agent.minor) if part)
    if parsed.os is not None:
        os_name = parsed.os.family
    if parsed.device is not None:
        device = parsed.device.family
        brand = parsed.device.brand or ""
    crawler = device == "Spider" or bool(HEADLESS.search(text))
    tool = not crawler and bool(_crawler_list.isCrawler(text))
    if crawler:
        kind = "bot"
    elif tool:
        kind = "other"
    elif TABLET_DEVICES.search(device) or "Tablet" in brand or (
            os_name == "Android" and "Mobile" not in text and not text.startswith("Dalvik")):
        kind = "tablet"
    elif os_name in MOBILE_OS or "Mobile" in text:
        kind = "mobile"
    elif os_name in DESKTOP_OS:
        kind = "desktop"
    else:
        kind = "other"
    return Agent(browser if browser != "Other" else "", version, os_name if os_name != "Other" else "", kind,
                 crawler, tool)


def warm() -> None:
    """Builds the rules of both lists (uap-core's and the crawler list's) by describing a browser."""
    describe("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36")
