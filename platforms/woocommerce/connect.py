"""Connect a WooCommerce store with its REST API keys, and keep its webhooks working.

Why this exists: WooCommerce never retries a failed delivery, and after more than 5
consecutive failures it switches the webhook to ``disabled`` (``class-wc-webhook.php``,
``failed_delivery``); the REST docs add that it "must be edited via the REST API to re-enable"
(woocommerce-rest-api-docs, ``wp-api-v3/_webhooks.md``). From then on no order arrives and
nothing tells the merchant. So we create the webhooks ourselves, and check them periodically.

Where they deliver: the address recorded when the store was connected (``Store.webhook_url``),
never one made up from the checking process's ``APP_URL``. A worker started without
``APP_URL`` once "repaired" a store's webhooks to its default ``http://localhost:8000`` and
every later order was lost. A check that finds ``APP_URL`` disagreeing reports it and moves
nothing; ``connect-woocommerce`` is the deliberate way to move a store.

Which webhooks are ours: one that delivers to the recorded address, or to any address ending
in ``/webhooks/woocommerce/<store_id>`` (the connector moved), or whose name carries the store
id (we name ours so, which keeps one that was pointed elsewhere recognisable). For each of
``order.created`` and ``order.updated`` one of ours must exist, be ``active`` and deliver
there. A webhook's secret cannot be read back (``secret`` is write-only in the REST schema), so
every repair sends our secret again: both ends then agree, whatever happened before. Extra
webhooks of ours (duplicates) are left alone: their deliveries are deduplicated by the outbox.

Keys at rest: there is no column for them, so ``Store.access_token_encrypted`` holds the JSON
``{"consumer_key", "consumer_secret", "url", "allow_http"}`` encrypted with the store cipher.
``url`` is the address the keys worked at; ``Store.domain`` keeps no scheme. ``allow_http``
records ``connect-woocommerce --allow-http`` (a local test store: plain http and loopback
allowed, see :mod:`connector.outbound`); keys saved before it was recorded have it exactly when
their ``url`` is http, which only that flag let through. Keys are saved only after they worked,
so a store with keys on file is a connected store.
"""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import SplitResult, urlsplit

from redis.exceptions import RedisError
from sqlalchemy import select, update

from connector.models import Store, utcnow
from connector.plugins import PeriodicTask, in_own_thread
from connector.services import Services
from connector.stores import StoreError, add_store, find_store
from platforms.woocommerce.rest import RestError, WooCommerceClient

logger = logging.getLogger(__name__)

PLATFORM = "woocommerce"
WEBHOOK_TOPICS = ("order.created", "order.updated")
MADE = ("created", "recreated")  # the repairs that leave a new webhook
CHECK_EVERY_SECONDS = 15 * 60
MISMATCH_KEY = "woocommerce:app-url-mismatch:{}"
"""Redis hash per store: webhook address a process's APP_URL gives -> when it last checked."""
MISMATCH_MEMORY_SECONDS = 2 * CHECK_EVERY_SECONDS
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
    """The address this process's ``APP_URL`` gives the store's webhooks (a public contract:
    docs/ARCHITECTURE.md, routes). Only connecting a store makes its webhooks deliver there."""
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
    """A store's REST API keys and the address they work at; ``allow_http``: a local test
    store (an http ``url`` is one whatever the flag says)."""

    url: str
    consumer_key: str
    consumer_secret: str = field(repr=False)
    allow_http: bool = False

    @property
    def local_test_store(self) -> bool:
        return self.allow_http or self.url.startswith("http://")

    def client(self) -> WooCommerceClient:
        return WooCommerceClient(
            self.url,
            self.consumer_key,
            self.consumer_secret,
            allow_http=self.local_test_store,
        )


def save_keys(services: Services, store_id: str, keys: StoreKeys) -> None:
    plain = json.dumps(
        {
            "consumer_key": keys.consumer_key,
            "consumer_secret": keys.consumer_secret,
            "url": keys.url,
            "allow_http": keys.local_test_store,
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
    return StoreKeys(
        data["url"],
        data["consumer_key"],
        data["consumer_secret"],
        allow_http=bool(data.get("allow_http", False)),
    )


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
    """One topic we need: the webhook serving it (None: missing), what is wrong with it, what
    a repair fixed and how (``created``, ``recreated`` in place of the webhook ``replaced``,
    or ``updated``)."""

    topic: str
    webhook: dict[str, Any] | None
    problems: tuple[str, ...]
    fixed: tuple[str, ...] = ()
    action: str | None = None
    replaced: int | None = None

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
            "replaced": self.replaced,
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


def _is_ours(webhook: dict[str, Any], store_id: str, url: str | None) -> bool:
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

    A webhook with a problem is deleted and made again, never just edited. WooCommerce counts
    a webhook's consecutive failed deliveries in ``failure_count`` and, at a failure with the
    count above 5, disables it (``WC_Webhook::failed_delivery``); only a successful delivery
    sets the count back to 0 (``WC_Webhook::log_delivery``, both in class-wc-webhook.php).
    The REST API can neither read nor reset it, so a disabled webhook re-activated over REST
    keeps its count and its very next failure disables it again; a new one starts at 0.

    Raises RestError when WooCommerce refuses a change.
    """
    states = assess_webhooks(webhooks, store_id=store_id, url=url)
    if not repair:
        return states
    fields = {"delivery_url": url, "secret": secret, "status": "active"}
    done = []
    for state in states:
        wanted = {**fields, "name": webhook_name(state.topic, store_id), "topic": state.topic}
        if state.problems:
            done.append(_remake(client, state, wanted, store_id=store_id))
        elif refresh:
            done.append(_rewrite(client, state, wanted))
        else:
            done.append(state)
    if any(state.action in MADE for state in done):
        return _keep_one_each(client, done, store_id=store_id, url=url)
    return done


def _remake(
    client: WooCommerceClient, state: TopicState, fields: dict[str, Any], *, store_id: str
) -> TopicState:
    """Delete the webhook (if any) and create it anew: same topic, address and secret.

    Deleting first loses nothing: a broken webhook delivers nothing here, and if the creation
    then fails the topic is ``missing``, which the next check creates.
    """
    replaced = state.webhook["id"] if state.webhook is not None else None
    if replaced is not None:
        client.delete_webhook(replaced)
    webhook = client.create_webhook(fields)
    left = problems_of(webhook, state.topic, fields["delivery_url"])
    fixed = tuple(p for p in state.problems if p not in left)
    if replaced is None:  # nothing was there to repair: the first connection, or one deleted
        logger.info(
            "woocommerce.webhook.created store=%s topic=%s webhook=%s",
            store_id,
            state.topic,
            webhook.get("id"),
        )
    else:
        logger.info(
            "woocommerce.webhook.repaired store=%s topic=%s webhook=%s replaced=%s problems=%s",
            store_id,
            state.topic,
            webhook.get("id"),
            replaced,
            ",".join(fixed) or "-",
        )
    action = "recreated" if replaced is not None else "created"
    return TopicState(state.topic, webhook, left, fixed, action, replaced)


def _rewrite(client: WooCommerceClient, state: TopicState, fields: dict[str, Any]) -> TopicState:
    """Send a healthy webhook our name and secret again, keeping it (and its id)."""
    assert state.webhook is not None  # a healthy state has its webhook
    webhook = client.update_webhook(state.webhook["id"], fields)
    left = problems_of(webhook, state.topic, fields["delivery_url"])
    return TopicState(state.topic, webhook, left, (), "updated")


def _keep_one_each(
    client: WooCommerceClient, states: list[TopicState], *, store_id: str, url: str
) -> list[TopicState]:
    """One webhook per topic, even when repairs ran at the same time (two quick clicks on
    Repair, the periodic check meanwhile) and each created its own.

    No lock is needed: WooCommerce's webhook ids only grow, and a topic this repair created a
    webhook for had no healthy one when it listed, so an older healthy one now is another
    repair's. Each repair keeps the oldest and deletes its own when an older one exists;
    whatever their timing, they keep the same one.
    """
    webhooks = client.list_webhooks()
    return [
        _oldest_made(client, state, webhooks, store_id=store_id, url=url)
        if state.action in MADE
        else state
        for state in states
    ]


def _oldest_made(
    client: WooCommerceClient,
    state: TopicState,
    webhooks: list[dict[str, Any]],
    *,
    store_id: str,
    url: str,
) -> TopicState:
    assert state.webhook is not None  # this repair made it
    mine = state.webhook["id"]
    older = [
        w
        for w in webhooks
        if isinstance(w.get("id"), int)
        and w["id"] < mine
        and _is_ours(w, store_id, url)
        and not problems_of(w, state.topic, url)
    ]
    if not older:
        return state
    kept = min(older, key=lambda w: w["id"])
    client.delete_webhook(mine)
    logger.info(
        "woocommerce.webhook.duplicate-deleted store=%s topic=%s webhook=%s kept=%s",
        store_id,
        state.topic,
        mine,
        kept["id"],
    )
    return replace(state, webhook=kept)


# -- the operations the commands and the worker run -------------------------------------------


def connect_store(
    services: Services,
    address: StoreAddress,
    consumer_key: str,
    consumer_secret: str,
    *,
    allow_http: bool = False,
) -> dict[str, Any]:
    """Register (or reuse) the store, create or repair its webhooks toward this process's
    ``APP_URL``, then keep its keys and record that address as the store's.

    This is the one operation that may point webhooks at a new address (an operator moving
    the connector): checks and repairs only ever point them at the recorded one. The keys are
    tried first (listing the webhooks proves the address, WooCommerce and read access), so
    wrong keys register nothing. A store registered earlier, by hand or by an earlier connect,
    keeps its webhook secret: webhooks made with it keep working.

    ``allow_http`` (``--allow-http``, a local test store) is kept with the keys, so every later
    call to the store is allowed what this one was.

    Raises RestError (WooCommerce refused or is unreachable) or StoreError.
    """
    keys = StoreKeys(
        address.base_url, consumer_key.strip(), consumer_secret.strip(), allow_http=allow_http
    )
    client = keys.client()
    webhooks = client.list_webhooks()
    store_id, secret = _register(services, address.domain)
    url = delivery_url(services, store_id)
    states = reconcile(
        client, webhooks, store_id=store_id, url=url, secret=secret, repair=True, refresh=True
    )
    save_keys(services, store_id, keys)
    _record_webhook_url(services, store_id, url)
    return _report(store_id, keys.url, url, states, [])


def check_store(services: Services, store_id: str, *, repair: bool) -> dict[str, Any]:
    """Read the store's webhooks back and report (with ``repair``: fix) ours, toward the
    store's recorded address only.

    A store connected before addresses were recorded gets the one its webhooks agree on
    (:func:`adopt_webhook_url`); without one, nothing is repaired and the report says why.
    Either way the report (and the log, once per check) says when this process's ``APP_URL``
    disagrees with the recorded address.

    Raises StoreError (no such WooCommerce store, or no keys on file) or RestError.
    """
    with services.db.session() as session:
        store = session.get(Store, store_id)
    if store is None or store.platform != PLATFORM:
        raise StoreError(f"no WooCommerce store {store_id}: see `connector stores list`")
    keys = load_keys(services, store)
    secret = webhook_secret(services, store)
    client = keys.client()
    webhooks = client.list_webhooks()
    url = store.webhook_url or adopt_webhook_url(services, store_id, webhooks)
    problems = address_problems(services, store_id, url, webhooks)
    if url is None:
        states = assess_webhooks(webhooks, store_id=store_id, url=delivery_url(services, store_id))
    else:
        states = reconcile(
            client, webhooks, store_id=store_id, url=url, secret=secret, repair=repair
        )
    return _report(store_id, keys.url, url, states, problems)


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


def _report(
    store_id: str,
    store_url: str,
    url: str | None,
    states: list[TopicState],
    problems: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "store_id": store_id,
        "url": store_url,
        "webhook_url": url,
        "ok": not problems and not any(state.problems for state in states),
        "problems": problems,
        "webhooks": [state.to_json() for state in states],
    }


# -- the recorded delivery address -----------------------------------------------------------


def adopt_webhook_url(
    services: Services, store_id: str, webhooks: list[dict[str, Any]]
) -> str | None:
    """For a store connected before addresses were recorded: the address all its order
    webhooks deliver to, now recorded, when it is https and ends with the store's webhook
    path; else None (the webhooks disagree, or point at a plain http default).
    """
    targets = delivery_targets(webhooks, store_id)
    if len(targets) != 1:
        return None
    [target] = targets
    parts = _split(target)
    path = parts.path.rstrip("/") if parts else ""
    if not target.startswith("https://") or not path.endswith(f"/webhooks/woocommerce/{store_id}"):
        return None
    recorded = _record_webhook_url(services, store_id, target, unless_recorded=True)
    logger.info("woocommerce.webhook.url-adopted store=%s webhook_url=%s", store_id, recorded)
    return recorded


def delivery_targets(webhooks: list[dict[str, Any]], store_id: str) -> list[str]:
    """The distinct addresses our order webhooks deliver to, sorted."""
    return sorted(
        {
            w["delivery_url"]
            for w in webhooks
            if w.get("topic") in WEBHOOK_TOPICS
            and isinstance(w.get("delivery_url"), str)
            and _is_ours(w, store_id, None)
        }
    )


def address_problems(
    services: Services, store_id: str, url: str | None, webhooks: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """What is wrong with where the store's webhooks are meant to deliver, logged once:
    ``webhook_url_unknown`` (nothing recorded or adoptable) or ``app_url_mismatch`` (this
    process's ``APP_URL`` gives another address than the recorded one)."""
    expected = delivery_url(services, store_id)
    if url is None:
        logger.warning("woocommerce.webhook.url-unknown store=%s", store_id)
        return [
            {
                "problem": "webhook_url_unknown",
                "app_url_webhook_url": expected,
                "delivery_urls": delivery_targets(webhooks, store_id),
                "message": (
                    "no delivery address is recorded for this store and its webhooks do not"
                    " agree on an https one, so nothing was repaired: run `connector stores"
                    " connect-woocommerce` with APP_URL set to the connector's public https"
                    " address"
                ),
            }
        ]
    if url == expected:
        return []
    logger.warning(
        "woocommerce.webhook.url-mismatch store=%s webhook_url=%s app_url_webhook_url=%s",
        store_id,
        url,
        expected,
    )
    _remember_mismatch(services, store_id, expected)
    return [
        {
            "problem": "app_url_mismatch",
            "webhook_url": url,
            "app_url_webhook_url": expected,
            "message": (
                f"APP_URL gives {expected}, but the store's webhooks were set up for {url}:"
                " repairs keep them delivering there. If the connector has moved, run"
                " `connector stores connect-woocommerce` with the new APP_URL; otherwise set"
                " APP_URL to match in every process"
            ),
        }
    ]


def app_url_disagreements(services: Services, store: Store) -> list[str]:
    """The webhook addresses other than the recorded one that this process's ``APP_URL``, or
    that of any process which checked the store lately (a worker's, say), gives it."""
    found = {delivery_url(services, store.id)}
    try:
        found.update(key.decode() for key in services.redis.hkeys(MISMATCH_KEY.format(store.id)))
    except RedisError:
        pass  # without Redis, this process's own view is all there is
    found.discard(store.webhook_url)
    return sorted(found)


def _remember_mismatch(services: Services, store_id: str, expected: str) -> None:
    """Leave word for the Status page, which the web process serves with its own APP_URL
    (often the right one) while the process that disagrees is a worker or a command."""
    key = MISMATCH_KEY.format(store_id)
    try:
        with services.redis.pipeline() as pipe:
            pipe.hset(key, expected, utcnow().isoformat())
            pipe.expire(key, MISMATCH_MEMORY_SECONDS)
            pipe.execute()
    except RedisError:
        pass  # the report and the log line still say it


def _record_webhook_url(
    services: Services, store_id: str, url: str, *, unless_recorded: bool = False
) -> str:
    """Record ``url`` as the store's delivery address; the address now on file."""
    change = update(Store).where(Store.id == store_id).values(webhook_url=url)
    if unless_recorded:
        change = change.where(Store.webhook_url.is_(None))
    with services.db.session() as session:
        session.execute(change)
        session.commit()
        recorded = session.scalar(select(Store.webhook_url).where(Store.id == store_id))
    return recorded or url


# -- the worker's periodic check ---------------------------------------------------------------

PERIODIC_CHECK = PeriodicTask(
    "woocommerce-webhooks",
    CHECK_EVERY_SECONDS,
    # A slow or unreachable WordPress host can take the full REST timeouts per call: in the
    # worker's periodic thread that would hold up the sweep that re-queues due events.
    in_own_thread("woocommerce-webhook-check", check_connected_stores),
)
