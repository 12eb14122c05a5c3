"""The Settings page's consent section: what the shopper's consent decides for this store
(:mod:`connector.consent`), in words, and the form that changes it."""

from __future__ import annotations

from typing import Any

from flask import Response, redirect, request, url_for

from connector.consent import (
    POLICIES,
    POLICY_TEXT,
    UNKNOWN_CHOICES,
    ConsentPolicy,
    is_held_back,
)
from connector.stores import set_consent_policy
from connector.web import services
from connector.web.merchant import blueprint


@blueprint.context_processor
def consent_choices() -> dict[str, Any]:
    """The policies with their explanations and the unknown-consent choices, for the form, and
    the test the delivery log uses to show a held-back event as such."""
    return {
        "is_held_back": is_held_back,
        "consent_policies": [(name, POLICY_TEXT[name]) for name in POLICIES],
        "consent_unknown_choices": UNKNOWN_CHOICES,
    }


@blueprint.post("/settings/consent")
def save_consent_policy(store_id: str) -> Response | tuple[str, int]:
    """Save the policy; it applies to events recorded from now on."""
    try:
        policy = ConsentPolicy(request.form.get("policy", ""), request.form.get("unknown", "send"))
    except ValueError as exc:
        return f"{exc}", 400
    set_consent_policy(services(), store_id, policy)
    target = url_for("merchant.settings", store_id=store_id, consent="saved")
    return redirect(f"{target}#consent", code=303)
