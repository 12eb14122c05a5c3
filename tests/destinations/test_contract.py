"""Every destination package keeps the contract the core relies on
(connector.destinations.Destination), and the core names none of them.

These checks run over whatever packages are installed, so a new destination is held to the
same rules the day its folder appears.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from connector.config import Settings
from connector.delivery import requests_per_second
from connector.destinations import Destination, FailureAdvice, load_destinations
from connector.events import CLICK_ID_FIELDS, ClickIds, Content, ConversionEvent, Shopper
from connector.signals import SIGNALS, carries, keys_for

ROOT = Path(__file__).resolve().parents[2]
DESTINATIONS = load_destinations()
KINDS = sorted(DESTINATIONS)
STORED_AS = {"account_id", "access_token", "refresh_token", "test_event_code", "setting"}
RAW_EMAIL = "Jane.Doe+ads@Example.com"
RAW_PHONE = "+1 (650) 555-1212"
EVERY_CLICK = ClickIds(
    ttclid="E.C.P.tt",
    ttp="ttp-cookie",
    fbclid="IwAR-fb",
    fbc="fb.1.1700000000000.IwAR-fb",
    fbp="fb.1.1700000000000.123456",
    gclid="Cj0-gclid",
    gbraid="gbraid-1",
    wbraid="wbraid-1",
    source="landing_site",
)
SHOPPER = Shopper(
    email=RAW_EMAIL,
    phone=RAW_PHONE,
    customer_id="7012345",
    first_name="Jane",
    last_name="Doe",
    zip_code="94035-1234",
    city="Mountain View",
    state="CA",
    country_code="US",
    ip="203.0.113.9",
    user_agent="Mozilla/5.0 (iPhone)",
    locale="en-US",
)


def test_the_three_ad_platforms_are_installed() -> None:
    assert {"tiktok", "meta", "google"} <= set(KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_identity_environment_and_fields(kind: str) -> None:
    api = DESTINATIONS[kind]
    assert api.kind == kind and api.label and api.setup and api.test_hint
    base = api.env[0]
    assert base.name.endswith("_API_BASE") and (base.default or "").startswith("https://")
    names = [field.name for field in api.fields]
    assert len(names) == len(set(names))
    assert [f.stored_as for f in api.fields].count("account_id") == 1
    for field in api.fields:
        assert field.stored_as in STORED_AS and field.label and field.help
        assert field.flag == "--" + field.name.replace("_", "-")
        if field.pattern:
            re.compile(field.pattern)
    assert api.test_mode in ("code", "validate")
    if api.test_mode == "code":
        assert any(f.stored_as == "test_event_code" for f in api.fields)
    assert 0 < api.max_batch <= 10_000
    assert api.max_requests_per_second >= 0


@pytest.mark.parametrize("kind", KINDS)
def test_events_signals_and_advice(kind: str) -> None:
    api = DESTINATIONS[kind]
    assert api.event_names.get("purchase"), "every destination takes purchases"
    assert set(api.event_names) <= {"purchase", "checkout"}
    assert set(api.signal_keys) <= set(SIGNALS) and "email" in api.signal_keys
    assert set(api.click_ids) <= set(CLICK_ID_FIELDS)
    assert isinstance(api.advice(None), FailureAdvice)
    assert isinstance(api.advice(123456789), FailureAdvice)


@pytest.mark.parametrize("kind", KINDS)
def test_user_data_never_holds_raw_email_or_phone(kind: str) -> None:
    user = DESTINATIONS[kind].user_data(SHOPPER, EVERY_CLICK, 1_700_000_000)
    text = repr(user).lower()
    assert RAW_EMAIL.lower() not in text and "jane.doe" not in text
    assert "6505551212" not in text.replace(" ", "").replace("-", "")
    for signal in ("email", "phone"):
        [key] = keys_for(DESTINATIONS[kind].signal_keys, signal)
        assert re.fullmatch(r"[0-9a-f]{64}", str(user[key]).strip("[]'\"")), (signal, user[key])


@pytest.mark.parametrize("kind", KINDS)
def test_user_data_carries_only_the_destinations_own_click_ids(kind: str) -> None:
    api = DESTINATIONS[kind]
    user = api.user_data(SHOPPER, EVERY_CLICK, 1_700_000_000)
    values = set(map(str, _leaves(user)))
    foreign = {getattr(EVERY_CLICK, name) for name in CLICK_ID_FIELDS} - {
        getattr(EVERY_CLICK, name) for name in api.click_ids
    }
    assert not values & foreign, values & foreign
    assert carries(user, api.signal_keys, "click_id"), f"{kind} drops its own click id"


def test_the_core_imports_no_destination_package() -> None:
    """The platform-neutral core reaches destinations only through the registry."""
    core = ROOT / "connector"
    allowed = {core / "destinations", core / "standins", core / "demo"}
    offenders = []
    for path in core.rglob("*.py"):
        if any(folder in path.parents for folder in allowed):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                parts = node.module.split(".")
                if parts[:2] == ["connector", "destinations"] and len(parts) > 2:
                    offenders.append(f"{path.relative_to(ROOT)}: {node.module}")
    assert offenders == []


def _leaves(value: object) -> list[object]:
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in _leaves(item)]
    if isinstance(value, list | tuple):
        return [leaf for item in value for leaf in _leaves(item)]
    return [value]


def test_an_event_time_in_the_past_is_accepted_and_an_ancient_one_is_not() -> None:
    now = int(datetime.now(UTC).timestamp())
    for kind in KINDS:
        api = DESTINATIONS[kind]
        fresh = _event(api, now - 3600)
        ancient = _event(api, now - 400 * 86400)
        assert api.problem(fresh, now) is None, kind
        assert api.problem(ancient, now), kind
        # What delivery checks of an event stored as sent, from its time alone, is the same.
        assert api.timing_problem(fresh.event_time, now) is None, kind
        assert api.timing_problem(ancient.event_time, now) == api.problem(ancient, now), kind


@pytest.mark.parametrize("kind", KINDS)
def test_an_event_stored_as_sent_is_one_json_object_holding_no_raw_email_or_phone(kind) -> None:
    """What the outbox keeps in ``wire`` (``event_element``, encoded when recorded)."""
    api = DESTINATIONS[kind]
    element = api.event_element(_event(api, int(datetime.now(UTC).timestamp())))
    text = orjson.dumps(element).decode()
    assert isinstance(orjson.loads(text), dict), kind
    assert RAW_EMAIL.lower() not in text.lower() and "5551212" not in text, kind


def _event(api: Destination, event_time: int) -> ConversionEvent:
    return ConversionEvent(
        event_name=api.event_names["purchase"][0],
        event_id="1001",
        event_time=event_time,
        user=api.user_data(SHOPPER, EVERY_CLICK, event_time),
        value=10.0,
        currency="USD",
        contents=(Content(content_id="1", name="x", price=10.0, quantity=1),),
        order_id="1001",
    )


def test_delivery_keeps_to_the_slower_of_the_operators_and_the_platforms_rate() -> None:
    settings = Settings(
        instance_path=ROOT, database_url="sqlite://", redis_url=None, secret_key="k",
        token_encryption_key=None, app_url="http://x", max_requests_per_second=20.0,
    )  # fmt: skip
    assert requests_per_second(settings, DESTINATIONS["google"]) == 5.0  # Google: 300 a minute
    assert requests_per_second(settings, DESTINATIONS["tiktok"]) == 20.0
    unlimited = settings.with_overrides(max_requests_per_second=0.0)
    assert requests_per_second(unlimited, DESTINATIONS["tiktok"]) == 0.0


# -- the core names no ad platform -------------------------------------------------------------

PLATFORM_WORDS = frozenset({"tiktok", "meta", "google", "ttclid", "fbclid", "gclid"})
"""The ad platforms and their click ids: words only a destination's own folder should need."""
SCANNED = ("connector", "platforms")
NOT_THE_CORE = ("connector/destinations/", "connector/standins/")
WORD = re.compile(r"TikTok|[A-Z]+(?![a-z])|[A-Z]?[a-z]+")
"""Words of an identifier or a sentence: ``TikTokStandIn`` -> TikTok, Stand, In;
``fbc_from_fbclid`` -> fbc, from, fbclid; ``_METACHARACTERS`` is one word, not "meta"."""

ALLOWED: tuple[tuple[str, frozenset[str], str], ...] = (
    # (a file, or a folder ending in "/"; the words it may name; why that is acceptable)
    (
        "connector/events.py",
        frozenset({"ttclid", "fbclid", "gclid"}),
        "the neutral event carries every captured click id (issue 11: captured once, in one "
        "record); each destination picks its own (Destination.click_ids)",
    ),
    (
        "connector/models.py",
        frozenset({"ttclid", "gclid"}),
        "the click record's columns: the same one-record capture",
    ),
    (
        "connector/migrations/",
        frozenset({"ttclid", "gclid"}),
        "migrations are history: they create the click-record columns as they were",
    ),
    (
        "connector/clicks.py",
        frozenset({"ttclid", "fbclid", "gclid", "tiktok", "meta"}),
        "the one capture of every platform's URL parameters and cookies by their public names "
        "(ttclid, fbclid, gclid, _fbp...), and Meta's documented fbc = fb.1.<ms>.<fbclid> "
        "made from an fbclid when the storefront saw one",
    ),
    (
        "connector/web/collect.py",
        frozenset({"ttclid", "fbclid", "gclid", "meta"}),
        "POST /collect takes the storefront's click report by those same names and checks "
        "Meta's cookie shape through connector.clicks",
    ),
    (
        "connector/diagnostics.py",
        frozenset({"ttclid", "fbclid", "gclid"}),
        "merchant-facing advice naming the click ids a storefront should keep",
    ),
    (
        "connector/config.py",
        frozenset({"tiktok"}),
        "the deployment default DEFAULT_DESTINATIONS=tiktok, and TIKTOK_BATCH_SIZE read as "
        "the older name of BATCH_SIZE",
    ),
    (
        "connector/receipts.py",
        frozenset({"tiktok"}),
        "a browser receipt that names no pixel is from the storefront code, which fires "
        "TikTok's browser pixel",
    ),
    (
        "connector/recovered.py",
        frozenset({"tiktok"}),
        "the same: TikTok's is the one browser pixel the storefront code reports on",
    ),
    (
        "connector/useragent.py",
        frozenset({"tiktok"}),
        "a browser family for the ledger: TikTok's in-app browser, not the destination",
    ),
    (
        "connector/cli.py",
        frozenset({"tiktok", "meta"}),
        "the `connector tiktok` alias group (issue 11 keeps it working), and kinds given as "
        "examples in --destination's help",
    ),
    (
        "connector/cli_destinations.py",
        frozenset({"tiktok"}),
        "the `connector tiktok set|test-event` alias (issue 11 keeps it working)",
    ),
    (
        "connector/demo/",
        frozenset({"tiktok", "google", "ttclid"}),
        "`connector demo` is a scripted run against the TikTok stand-in with sample orders "
        "from a TikTok ad (and a Googlebot user agent for its bot example), not a path orders "
        "take",
    ),
    (
        "platforms/shopify/storefront/",
        frozenset({"tiktok", "meta", "google", "ttclid", "fbclid", "gclid"}),
        "the Shopify custom pixel is TikTok's browser pixel, and it reads every platform's "
        "click ids from the landing URL by their public names",
    ),
    (
        "platforms/shopify/custom_pixel.py",
        frozenset({"tiktok"}),
        "builds that custom pixel for the store's TikTok pixel code",
    ),
    (
        "platforms/woocommerce/wordpress-plugin/",
        frozenset({"tiktok", "meta", "google", "ttclid", "fbclid", "gclid"}),
        "the WordPress plugin reads every platform's click ids and cookies by their public "
        "names, fires TikTok's browser pixel, and is installed as tiktok-click-capture",
    ),
    (
        "platforms/woocommerce/build_plugin.py",
        frozenset({"tiktok"}),
        "the plugin's slug, tiktok-click-capture, which installed sites know it by",
    ),
    (
        "platforms/woocommerce/connect.py",
        frozenset({"tiktok"}),
        "the name of the WooCommerce webhooks it made ('TikTok conversions: ...'), which "
        "stores already have",
    ),
    (
        "platforms/woocommerce/parse.py",
        frozenset({"meta"}),
        "WooCommerce's order meta (meta_data), not Meta the ad platform",
    ),
    (
        "platforms/woocommerce/platform.py",
        frozenset({"meta"}),
        "order_meta, WooCommerce's order meta as a click source",
    ),
    (
        "platforms/woocommerce/advice.py",
        frozenset({"tiktok", "meta", "google"}),
        "merchant-facing advice: the platforms whose click ids the plugin captures and whose "
        "pixels set the cookies, and order_meta as a click source",
    ),
    (
        "platforms/shopify/advice.py",
        frozenset({"tiktok", "meta", "google"}),
        "merchant-facing advice: the platforms whose click ids are captured and whose pixels "
        "set the cookies, and the TikTok custom pixel",
    ),
    (
        "platforms/shopify/install.py",
        frozenset({"meta"}),
        "an HTML <meta> tag (shopify-api-key), not Meta the ad platform",
    ),
)


def _platform_words(text: str) -> list[str]:
    """The ad-platform words in a text, lowercased (a plural counts: gclids)."""
    found = []
    for word in WORD.findall(text):
        lower = word.lower()
        if lower in PLATFORM_WORDS or (lower := lower.removesuffix("s")) in PLATFORM_WORDS:
            found.append(lower)
    return found


def _code_pieces(text: str, suffix: str) -> list[tuple[int, str]]:
    """(line, text) of what a file says to the machine that runs it: for Python, its tokens
    without comments and docstrings (any string that is a statement of its own); for other
    files (scripts, the plugin, data), all their text."""
    if suffix != ".py":
        return list(enumerate(text.splitlines(), start=1))
    docstrings = {
        line
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
        for line in range(node.lineno, (node.end_lineno or node.lineno) + 1)
    }
    return [
        (token.start[0], token.string)
        for token in tokenize.generate_tokens(io.StringIO(text).readline)
        if token.type != tokenize.COMMENT
        and not (token.type == tokenize.STRING and token.start[0] in docstrings)
    ]


def _core_texts() -> list[tuple[str, Path, str]]:
    """(path from the root, path, text) of every text file of the core; binary files (a
    built plugin zip, say) hold no code to read."""
    texts = []
    for path in sorted(p for folder in SCANNED for p in (ROOT / folder).rglob("*")):
        relative = path.relative_to(ROOT).as_posix()
        if not path.is_file() or relative.startswith(NOT_THE_CORE) or "__pycache__" in path.parts:
            continue
        try:
            texts.append((relative, path, path.read_bytes().decode("utf-8")))
        except UnicodeDecodeError:
            continue
    return texts


def _allowance(relative: str, word: str) -> int | None:
    """The index of the allow-list entry that lets this file name this word, if any."""
    for index, (where, words, _why) in enumerate(ALLOWED):
        covers = relative.startswith(where) if where.endswith("/") else relative == where
        if covers and word in words:
            return index
    return None


def test_the_core_names_no_ad_platform() -> None:
    """Outside connector/destinations/ (and the stand-ins), the code of connector/ and
    platforms/ names no ad platform and no platform's click id, except where ALLOWED says
    why. A new occurrence belongs in the destination's folder; an allowance nothing uses any
    more is removed, so the list stays as short as the truth."""
    offenders: list[str] = []
    used: set[tuple[int, str]] = set()
    for relative, path, text in _core_texts():
        for line, piece in [(0, relative), *_code_pieces(text, path.suffix)]:
            for word in _platform_words(piece):
                index = _allowance(relative, word)
                if index is None:
                    offenders.append(f"{relative}:{line}: {word}: {piece.strip()[:100]}")
                else:
                    used.add((index, word))
    assert offenders == [], "the core names an ad platform:\n" + "\n".join(offenders)
    unused = [
        f"{where}: {word}"
        for index, (where, words, _why) in enumerate(ALLOWED)
        for word in sorted(words)
        if (index, word) not in used
    ]
    assert unused == [], "allowed but no longer named there (remove them):\n" + "\n".join(unused)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("TikTokStandIn(TIKTOK_API_BASE)", ["tiktok", "tiktok"]),
        ('if kind == "meta": send_to_google(gclids)', ["meta", "google", "gclid"]),
        ("fbc_from_fbclid(ttclid)", ["fbclid", "ttclid"]),
        ("Base.metadata, MetaData, _METACHARACTERS, Googlebot, ttp, fbc", ["meta"]),
    ],
)
def test_platform_words_are_whole_words_of_identifiers(text: str, words: list[str]) -> None:
    """camelCase, snake_case and SHOUTING names split into words; metadata is not Meta (but
    SQLAlchemy's MetaData would be, were it in the core)."""
    assert _platform_words(text) == words


def test_comments_and_docstrings_are_not_code_but_strings_are() -> None:
    source = '''"""Sends to TikTok."""
# Meta too
def send(kind):
    """Google as well."""
    return kind == "tiktok"
'''
    pieces = _code_pieces(source, ".py")
    assert [(line, word) for line, piece in pieces for word in _platform_words(piece)] == [
        (5, "tiktok")
    ]
    assert _platform_words(" ".join(p for _, p in _code_pieces("# tiktok", ".js"))) == ["tiktok"]
