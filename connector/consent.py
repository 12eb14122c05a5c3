"""What a store's consent policy makes of a shopper's consent: send, send limited, or hold back.

Store platforms gate browser pixels by the shopper's consent (Shopify's Customer Privacy API,
WordPress consent plugins through the WP Consent API) but not webhooks, so without this a
purchase is sent from the server for a shopper who declined marketing cookies. The storefront
code captures the choice with the click (:mod:`connector.clicks`) and the policy, chosen per
store, decides:

* ``respect`` (the default): marketing denied, the event is recorded but not sent, with the
  reason :data:`NO_MARKETING_CONSENT` (held back, visible in the delivery log and diagnostics);
  sale of data opted out, it is sent with limited data use (TikTok ``limited_data_use``, Meta
  ``data_processing_options: ["LDU"]``, Google ``adPersonalization: CONSENT_DENIED``: each
  destination's own equivalent of the event's ``limited_data_use``); consent unknown (no
  storefront code, an old order, a consent banner never answered), sent, or held back when
  the store chose ``unknown="hold"``;
* ``limited``: every event sent with limited data use;
* ``ignore``: every event sent as if consent were granted (what the connector did before it
  knew consent; a merchant's explicit choice, never a default).

The ``analytics`` choice is recorded but decides nothing: conversions are marketing.
"""

from __future__ import annotations

from dataclasses import dataclass

from connector.events import Consent

POLICIES = ("respect", "limited", "ignore")
UNKNOWN_CHOICES = ("send", "hold")

NO_MARKETING_CONSENT = "no marketing consent"
UNKNOWN_HELD = "consent unknown: held back by the store's consent policy"
HELD_BACK_PREFIXES = (NO_MARKETING_CONSENT, "consent unknown")
"""How a held-back event's skip reason begins, for the delivery log and diagnostics."""

POLICY_TEXT = {
    "respect": (
        "A shopper who declined marketing cookies is not sent (the purchase is listed as held "
        "back); one who opted out of the sale of data is sent with limited data use."
    ),
    "limited": "Send every purchase with limited data use, whatever the shopper chose.",
    "ignore": (
        "Send every purchase in full, whatever the shopper chose. Only where you have another "
        "legal basis: in the EU and UK, marketing tracking needs consent."
    ),
}
UNKNOWN_TEXT = {
    "send": "When the choice is not known (no consent banner answered, no storefront code), "
    "the purchase is sent.",
    "hold": "When the choice is not known, the purchase is held back.",
}


@dataclass(frozen=True)
class ConsentPolicy:
    """A store's policy (:data:`POLICIES`) and, for ``respect``, what unknown consent does."""

    policy: str = "respect"
    unknown: str = "send"

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"consent policy must be one of {', '.join(POLICIES)}")
        if self.unknown not in UNKNOWN_CHOICES:
            raise ValueError(f"unknown consent must be one of {', '.join(UNKNOWN_CHOICES)}")

    def describe(self) -> str:
        """What the policy does, in a merchant's words."""
        if self.policy != "respect":
            return POLICY_TEXT[self.policy]
        return f"{POLICY_TEXT['respect']} {UNKNOWN_TEXT[self.unknown]}"


@dataclass(frozen=True)
class ConsentDecision:
    """What the policy made of one event: its consent state as recorded, whether it is sent
    with limited data use, and why it is held back (None: it is sent)."""

    state: str
    limited_data_use: bool = False
    held_back: str | None = None


def decide(policy: ConsentPolicy, consent: Consent) -> ConsentDecision:
    """Apply the store's policy to the shopper's consent."""
    state = consent_state(consent)
    if policy.policy == "ignore":
        return ConsentDecision(state)
    if policy.policy == "limited":
        return ConsentDecision(state, limited_data_use=True)
    if consent.marketing is False:
        return ConsentDecision(state, held_back=NO_MARKETING_CONSENT)
    if consent.marketing is None and policy.unknown == "hold":
        return ConsentDecision(state, held_back=UNKNOWN_HELD)
    return ConsentDecision(state, limited_data_use=consent.sale_of_data is False)


def consent_state(consent: Consent) -> str:
    """One word for the event row: "denied" (marketing), "limited" (sale of data opted out),
    "granted", or "unknown" (marketing choice not known)."""
    if consent.marketing is False:
        return "denied"
    if consent.sale_of_data is False:
        return "limited"
    return "granted" if consent.marketing else "unknown"


def is_held_back(reason: str | None) -> bool:
    """Whether a skip reason is the consent policy's."""
    return bool(reason) and reason.startswith(HELD_BACK_PREFIXES)  # type: ignore[union-attr]
