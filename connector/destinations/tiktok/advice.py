"""What TikTok's result codes mean for a shop owner, and what to do about each.

Diagnostics shows this beside failed events (:meth:`TikTokEventsApi.advice`); how each code is
handled when it comes is :func:`connector.destinations.tiktok.client.classify`.
"""

from __future__ import annotations

from connector.destinations import FailureAdvice

_TOKEN_ADVICE = FailureAdvice(
    "TikTok's access token expired, is missing or is no longer valid",
    "Connect TikTok again on the Settings page (or paste a new Events API access token from "
    "TikTok Events Manager), then replay these events from the Delivery log.",
)
_RATE_ADVICE = FailureAdvice(
    "TikTok asked us to send more slowly",
    "Nothing to change: the connector slows down and retries by itself. Replay these events "
    "from the Delivery log.",
)
_SERVER_ADVICE = FailureAdvice(
    "TikTok had an internal error and our retries ran out",
    "Replay these events from the Delivery log once TikTok works again.",
)
_UNKNOWN_ADVICE = FailureAdvice(
    "a code this page does not know yet",
    "Report the code and message to whoever runs this connector.",
)

FAILURE_ADVICE: dict[int | None, FailureAdvice] = {
    40001: FailureAdvice(
        "the access token may not send events to this pixel",
        "Generate the access token from this pixel's own settings in TikTok Events Manager, "
        "as an admin or operator of the ad account, save it on the Settings page, then "
        "replay these events from the Delivery log.",
    ),
    40002: FailureAdvice(
        "TikTok refused a field of the event (the message names it)",
        "Read the message: a product id or price points to that product in your store; "
        "anything else, report to whoever runs this connector. Replay after the fix.",
    ),
    40003: _TOKEN_ADVICE,
    40061: FailureAdvice(
        "a batch had a size TikTok does not accept",
        "This is a connector bug, not a problem with your shop: report it with the message.",
    ),
    40062: FailureAdvice(
        "TikTok received personal data that was not hashed",
        "This is a connector bug (email and phone are always hashed before sending): report "
        "it with the message and do not replay until it is fixed.",
    ),
    40100: _RATE_ADVICE,
    40102: _TOKEN_ADVICE,
    40103: _TOKEN_ADVICE,
    40104: _TOKEN_ADVICE,
    40105: _TOKEN_ADVICE,
    40107: _TOKEN_ADVICE,
    40130: _TOKEN_ADVICE,
    40132: _RATE_ADVICE,
    61000: _RATE_ADVICE,
    60001: _SERVER_ADVICE,
    50000: _SERVER_ADVICE,
    None: FailureAdvice(
        "no answer code: TikTok could not be reached (network error or timeout), or the "
        "event was not sent at all",
        "If the message says TikTok did not answer or could not be reached, replay these "
        "events from the Delivery log. An event more than 7 days old cannot be sent: TikTok "
        "refuses web events that old.",
    ),
}
"""TikTok codes, from TikTok's Business API SDK (``business_api_client/tiktok_business/
tiktok_code.py``, github.com/tiktok/tiktok-business-api-sdk) and the README's
"Troubleshooting by TikTok code"; how each is handled is
:func:`connector.destinations.tiktok.client.classify`. Token and permission codes pause the
destination rather than fail events, so they show here only for events failed earlier."""


def advice(code: int | None) -> FailureAdvice:
    """:data:`FAILURE_ADVICE` for a code; any 5xxxx is a TikTok-side error."""
    if code in FAILURE_ADVICE:
        return FAILURE_ADVICE[code]
    if code is not None and code >= 50000:
        return _SERVER_ADVICE
    return _UNKNOWN_ADVICE
