"""What Google's answer codes mean for a shop owner, and what to do about each.

The codes are ``google.rpc.Code`` numbers (https://github.com/googleapis/googleapis/blob/master/
google/rpc/code.proto), which the Data Manager API answers by name in ``error.status``
(https://developers.google.com/data-manager/api/devguides/concepts/understand-errors);
:func:`connector.destinations.google.client.classify` keeps the number as the result's code.
Token, permission and account codes pause the destination rather than fail events, so they
show here only for events failed before the pause.
"""

from __future__ import annotations

from connector.destinations import FailureAdvice

_RETRY = FailureAdvice(
    "Google was busy or had an internal error, and our retries ran out",
    "Replay these events from the Delivery log once Google works again.",
)
_UNKNOWN = FailureAdvice(
    "a code this page does not know yet",
    "Report the code and message to whoever runs this connector.",
)

FAILURE_ADVICE: dict[int | None, FailureAdvice] = {
    None: FailureAdvice(
        "no answer code: Google could not be reached (network error or timeout), or the event "
        "was not sent at all",
        "If the message says Google did not answer, replay these events from the Delivery "
        "log. An order older than 90 days, or one with no click id, email, phone or full "
        "address, cannot be sent to Google Ads.",
    ),
    3: FailureAdvice(  # INVALID_ARGUMENT
        "Google refused a field of the event (the message names it)",
        "Read the message: a currency or value points to that order in your store; anything "
        "else, report to whoever runs this connector. Replay after the fix.",
    ),
    4: _RETRY,  # DEADLINE_EXCEEDED
    5: FailureAdvice(  # NOT_FOUND
        "Google's Data Manager API was not found at the configured address",
        "Check GOOGLE_DATAMANAGER_API_BASE, then replay these events from the Delivery log.",
    ),
    7: FailureAdvice(  # PERMISSION_DENIED
        "the Google account of the refresh token may not send to this Google Ads account or "
        "conversion action",
        "Give that Google account access to the Google Ads account (or set the manager "
        "account as login customer ID), check the customer and conversion action IDs on the "
        "Settings page, then replay these events.",
    ),
    8: FailureAdvice(  # RESOURCE_EXHAUSTED
        "Google asked us to send more slowly (the project's request quota)",
        "Nothing to change: the connector slows down and retries by itself. Replay these "
        "events from the Delivery log.",
    ),
    9: FailureAdvice(  # FAILED_PRECONDITION
        "the Google Ads account is not ready to take these conversions (terms not accepted, "
        "or the conversion action cannot take imported events)",
        "Read the message, fix it in Google Ads, then replay these events.",
    ),
    13: _RETRY,  # INTERNAL
    14: _RETRY,  # UNAVAILABLE
    16: FailureAdvice(  # UNAUTHENTICATED
        "Google did not accept our access token and could not make a new one",
        "Save a new refresh token with `connector destinations set STORE_ID google "
        "--refresh-token TOKEN` (or check GOOGLE_OAUTH_CLIENT_ID and "
        "GOOGLE_OAUTH_CLIENT_SECRET), then replay these events.",
    ),
}


def advice(code: int | None) -> FailureAdvice:
    """:data:`FAILURE_ADVICE` for a code, or advice to report a code it does not know."""
    return FAILURE_ADVICE.get(code, _UNKNOWN)
