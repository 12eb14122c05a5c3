"""Connect a WooCommerce store with its REST API keys, and keep its webhooks working.

Why this exists: WooCommerce never retries a failed delivery, and after more than 5
consecutive failures it switches the webhook to ``disabled`` (``class-wc-webhook.php``,
``failed_delivery``); the REST docs add that it "must be edited via the REST API to re-enable"
(woocommerce-rest-api-docs, ``wp-api-v3/_webhooks.md``). From then on no order arrives and
nothing tells the merchant. So we create the webhooks ourselves, and check them periodically.

Which webhooks are ours: one that delivers to this store's URL on the connector, or to any
address ending in ``/webhooks/woocommerce/<store_id>`` (``APP_URL`` changed), or whose name
carries the store id (we name ours so, which keeps one that was pointed elsewhere
recognisable). For each of ``order.created`` and ``order.updated`` one of ours must exist, be
``active`` and deliver here. A webhook's secret cannot be read back (``secret`` is write-only in
the REST schema), so every repair sends our secret again: both ends then agree, whatever
happened before. Extra webhooks of ours (duplicates) are left alone: their deliveries are
deduplicated by the outbox.

Keys at rest: there is no column for them, so ``Store.access_token_encrypted`` holds the JSON
``{"consumer_key", "consumer_secret", "url"}`` encrypted with the store cipher. ``url`` is the
address the keys worked at; ``Store.domain`` keeps no scheme. Keys are saved only after they
worked, so a store with keys on file is a connected store.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult, urlsplit

from sqlalchemy import select

from connector.models import Store
from connector.plugins import PeriodicTask
from connector.services import Services
from connector.stores import StoreError, add_store, find_store
from platforms.woocommerce.rest import RestError, WooCommerceClient

logger = logging.getLogger(__name__)

PLATFORM = "woocommerce"
WEBHOOK_TOPICS = ("order.created", "order.updated")
CHECK_EVERY_SECONDS = 15 * 60
ADDRESS_HINT = "must be the store's address, like https://shop.example"


# -- addresses ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoreAddress:
    """A store's base URL (where ``/wp-json`` lives) and the domain it is registered under."""

    base_url: str
    domain: str

    @classmethod
    def parse(cls, url: str) -> StoreAddress:
        """Raises ValueError (with :data:`ADDRESS_HINT`) for anything but an http(s) address.

        The domain is the lowercased host, its port when one is given, and the path of a store
        installed in a folder (``shop.example/store``): two stores never share one.
        """
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError:
            raise ValueError(ADDRESS_HINT) from None
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.username:
            raise ValueError(ADDRESS_HINT)
        host = _bracketed(parts.hostname) + (f":{port}" if port else "")
        path = parts.path.rstrip("/")
        return cls(base_url=f"{parts.scheme}://{host}{path}", domain=host + path)

    @property
    def is_plain_http(self) -> bool:
        return self.base_url.startswith("http://")


def delivery_url(services: Services, store_id: str) -> str:
    """Where this store's webhooks must deliver (a public contract: DESIGN.md, routes)."""
    return f"{services.settings.app_url}/webhooks/woocommerce/{store_id}"


def new_webhook_secret() -> str:
    """A random secret; its URL-safe alphabet has no ``& < > " '``, which WooCommerce would
    HTML-decode before signing (``wp_specialchars_decode`` in ``generate_signature``)."""
    return secrets.token_urlsafe(32)


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _split(url: str) -> SplitResult | None:
    try:
        return urlsplit(url)
    except ValueError:
        return None


# -- keys --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoreKeys:
    """A store's REST API keys and the address they work at."""

    url: str
    consumer_key: str
    consumer_secret: str = field(repr=False)

    def client(self) -> WooCommerceClient:
        return WooCommerceClient(self.url, self.consumer_key, self.consumer_secret)


def save_keys(services: Services, store_id: str, keys: StoreKeys) -> None:
    plain = json.dumps(
        {
            "consumer_key": keys.consumer_key,
            "consumer_secret": keys.consumer_secret,
            "url": keys.url,
        }
    )
    with services.db.session() as session:
        store = session.get(Store, store_id)
        store.access_token_encrypted = services.cipher.encrypt(plain)
        session.commit()


def load_keys(services: Services, store: Store) -> StoreKeys:
    """The keys on file; StoreError when there are none (a store added by hand)."""
    if not store.access_token_encrypted:
        raise StoreError(
            f"store {store.id} has no REST API keys: connect it with `connector stores"
            " connect-woocommerce --url URL --consumer-key CK --consumer-secret CS`"
        )
    data = json.loads(_decrypt(services, store.access_token_encrypted))
    return StoreKeys(data["url"], data["consumer_key"], data["consumer_secret"])


def webhook_secret(services: Services, store: Store) -> str:
    return _decrypt(services, store.webhook_secret_encrypted or "")


def _decrypt(services: Services, ciphertext: str) -> str:
    """StoreError, a one-line error for the commands, when TOKEN_ENCRYPTION_KEY or SECRET_KEY
    changed since the value was encrypted."""
    try:
        return services.cipher.decrypt(ciphertext)
    except ValueError as exc:
        raise StoreError(str(exc)) from None


# -- what is wrong ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TopicState:
    """One topic we need: the webhook serving it (None: missing), what is wrong with it, and
    what a repair fixed."""

    topic: str
    webhook: dict[str, Any] | None
    problems: tuple[str, ...]
    fixed: tuple[str, ...] = ()
    action: str | None = None

    def to_json(self) -> dict[str, Any]:
        webhook = self.webhook or {}
        return {
            "topic": self.topic,
            "id": webhook.get("id"),
            "status": webhook.get("status"),
            "delivery_url": webhook.get("delivery_url"),
            "problems": list(self.problems),
            "fixed": list(self.fixed),
            "action": self.action,
        }


def assess_webhooks(webhooks: list[dict[str, Any]], *, store_id: str, url: str) -> list[TopicState]:
    """For each topic in :data:`WEBHOOK_TOPICS`, the best of our webhooks and its problems.

    Problems: ``missing``; ``disabled`` or ``paused``; ``points_elsewhere`` (another delivery
    URL); ``wrong_topic`` (one of ours with a topic we do not use, taken for a missing one).
    """
    ours = [w for w in webhooks if _is_ours(w, store_id, url)]
    taken: set[object] = set()
    states = []
    for topic in WEBHOOK_TOPICS:
        free = [w for w in ours if w.get("id") not in taken]
        chosen = _best([w for w in free if w.get("topic") == topic], url) or _best(
            [w for w in free if w.get("topic") not in WEBHOOK_TOPICS], url
        )
        if chosen is None:
            states.append(TopicState(topic, None, ("missing",)))
            continue
        taken.add(chosen.get("id"))
        states.append(TopicState(topic, chosen, problems_of(chosen, topic, url)))
    return states


def problems_of(webhook: dict[str, Any], topic: str, url: str) -> tuple[str, ...]:
    """What keeps this webhook from delivering ``topic`` to ``url``."""
    problems = []
    if webhook.get("topic") != topic:
        problems.append("wrong_topic")
    if webhook.get("status") != "active":
        problems.append(str(webhook.get("status")))
    if webhook.get("delivery_url") != url:
        problems.append("points_elsewhere")
    return tuple(problems)


def webhook_name(topic: str, store_id: str) -> str:
    """The name we give our webhooks; the store id in it is how we recognise them."""
    return f"TikTok conversions: {topic} ({store_id})"


def _is_ours(webhook: dict[str, Any], store_id: str, url: str) -> bool:
    target = webhook.get("delivery_url")
    target = target if isinstance(target, str) else ""
    parts = _split(target)
    path = parts.path.rstrip("/") if parts else ""
    name = webhook.get("name")
    return (
        target == url
        or path.endswith(f"/webhooks/woocommerce/{store_id}")
        or (isinstance(name, str) and store_id in name)
    )


def _best(candidates: list[dict[str, Any]], url: str) -> dict[str, Any] | None:
    """The one needing least repair: active first, then delivering here, then the oldest."""
    if not candidates:
        return None

    def key(w: dict[str, Any]) -> tuple[bool, bool, int]:
        webhook_id = w.get("id")
        oldest = webhook_id if isinstance(webhook_id, int) else 0
        return (w.get("status") != "active", w.get("delivery_url") != url, oldest)

    return min(candidates, key=key)


# -- putting it right --------------------------------------------------------------------------


def reconcile(
    client: WooCommerceClient,
    webhooks: list[dict[str, Any]],
    *,
    store_id: str,
    url: str,
    secret: str,
    repair: bool,
    refresh: bool = False,
) -> list[TopicState]:
    """Assess, and with ``repair`` fix every problem (``refresh``: rewrite healthy ones too,
    so a reconnect also gives existing webhooks our secret and name).

    Raises RestError when WooCommerce refuses a change.
    """
    states = assess_webhooks(webhooks, store_id=store_id, url=url)
    if not repair:
        return states
    return [
        _repair(client, state, store_id=store_id, url=url, secret=secret)
        if state.problems or refresh
        else state
        for state in states
    ]


def _repair(
    client: WooCommerceClient, state: TopicState, *, store_id: str, url: str, secret: str
) -> TopicState:
    fields = {
        "name": webhook_name(state.topic, store_id),
        "topic": state.topic,
        "delivery_url": url,
        "secret": secret,
        "status": "active",
    }
    if state.webhook is None:
        webhook, action = client.create_webhook(fields), "created"
    else:
        webhook, action = client.update_webhook(state.webhook["id"], fields), "updated"
    left = problems_of(webhook, state.topic, url)
    fixed = tuple(p for p in state.problems if p not in left)
    for problem in fixed:
        logger.info(
            "woocommerce.webhook.repaired store=%s webhook=%s topic=%s problem=%s",
            store_id,
            webhook.get("id"),
            state.topic,
            problem,
        )
    return TopicState(state.topic, webhook, left, fixed, action)


# -- the operations the commands and the worker run -------------------------------------------


def connect_store(
    services: Services, address: StoreAddress, consumer_key: str, consumer_secret: str
) -> dict[str, Any]:
    """Register (or reuse) the store, create or repair its webhooks, then keep its keys.

    The keys are tried first (listing the webhooks proves the address, WooCommerce and read
    access), so wrong keys register nothing. A store registered earlier, by hand or by an
    earlier connect, keeps its webhook secret: webhooks made with it keep working.

    Raises RestError (WooCommerce refused or is unreachable) or StoreError.
    """
    keys = StoreKeys(address.base_url, consumer_key.strip(), consumer_secret.strip())
    client = keys.client()
    webhooks = client.list_webhooks()
    store_id, secret = _register(services, address.domain)
    url = delivery_url(services, store_id)
    states = reconcile(
        client, webhooks, store_id=store_id, url=url, secret=secret, repair=True, refresh=True
    )
    save_keys(services, store_id, keys)
    return _report(store_id, keys.url, url, states)


def check_store(services: Services, store_id: str, *, repair: bool) -> dict[str, Any]:
    """Read the store's webhooks back and report (with ``repair``: fix) ours.

    Raises StoreError (no such WooCommerce store, or no keys on file) or RestError.
    """
    with services.db.session() as session:
        store = session.get(Store, store_id)
    if store is None or store.platform != PLATFORM:
        raise StoreError(f"no WooCommerce store {store_id}: see `connector stores list`")
    keys = load_keys(services, store)
    secret = webhook_secret(services, store)
    url = delivery_url(services, store_id)
    client = keys.client()
    states = reconcile(
        client, client.list_webhooks(), store_id=store_id, url=url, secret=secret, repair=repair
    )
    return _report(store_id, keys.url, url, states)


def check_connected_stores(services: Services) -> None:
    """Check and repair every connected store; logs, never raises (it runs unattended)."""
    try:
        store_ids = connected_store_ids(services)
    except Exception as exc:  # a database blip: the next period tries again
        logger.error("woocommerce.webhook.check-failed error=%s", type(exc).__name__)
        return
    for store_id in store_ids:
        _check_unattended(services, store_id)


def connected_store_ids(services: Services) -> list[str]:
    """Active WooCommerce stores with REST API keys on file."""
    query = select(Store.id).where(
        Store.platform == PLATFORM,
        Store.status == "active",
        Store.access_token_encrypted.is_not(None),
    )
    with services.db.session() as session:
        return list(session.scalars(query.order_by(Store.created_at)))


def _check_unattended(services: Services, store_id: str) -> None:
    try:
        report = check_store(services, store_id, repair=True)
    except RestError as exc:  # `connector stores check` shows the merchant the whole message
        logger.warning("woocommerce.webhook.check-failed store=%s reason=%s", store_id, exc.reason)
        return
    except StoreError:
        logger.warning("woocommerce.webhook.check-failed store=%s reason=secrets", store_id)
        return
    except Exception as exc:  # one broken store must not stop the others
        logger.error(
            "woocommerce.webhook.check-failed store=%s error=%s", store_id, type(exc).__name__
        )
        return
    for webhook in report["webhooks"]:
        if webhook["problems"]:
            logger.warning(
                "woocommerce.webhook.unhealthy store=%s webhook=%s topic=%s problems=%s",
                store_id,
                webhook["id"],
                webhook["topic"],
                ",".join(webhook["problems"]),
            )


def _register(services: Services, domain: str) -> tuple[str, str]:
    """The store's id and webhook secret, registering the store when it is new."""
    with services.db.session() as session:
        store = find_store(session, platform=PLATFORM, domain=domain)
        if store is not None:
            if not store.webhook_secret_encrypted:
                store.webhook_secret_encrypted = services.cipher.encrypt(new_webhook_secret())
                session.commit()
            return store.id, webhook_secret(services, store)
    secret = new_webhook_secret()
    store = add_store(services, platform=PLATFORM, domain=domain, webhook_secret=secret)
    return store.id, secret


def _report(store_id: str, store_url: str, url: str, states: list[TopicState]) -> dict[str, Any]:
    return {
        "store_id": store_id,
        "url": store_url,
        "webhook_url": url,
        "ok": not any(state.problems for state in states),
        "webhooks": [state.to_json() for state in states],
    }


# -- the worker's periodic check ---------------------------------------------------------------

_round_running = threading.Lock()


def start_periodic_check(services: Services) -> None:
    """Run :func:`check_connected_stores` in its own thread and return at once.

    The worker runs periodic tasks one after another in one thread, and a slow or unreachable
    WordPress host can take the full REST timeouts per call: inline, that would hold up the
    sweep that re-queues due events. A round still running when the next one is due is left
    to finish (the next is skipped).
    """
    if not _round_running.acquire(blocking=False):
        return

    def run() -> None:
        try:
            check_connected_stores(services)
        finally:
            _round_running.release()

    threading.Thread(target=run, name="woocommerce-webhook-check", daemon=True).start()


PERIODIC_CHECK = PeriodicTask("woocommerce-webhooks", CHECK_EVERY_SECONDS, start_periodic_check)
