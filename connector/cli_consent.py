"""``connector stores consent STORE_ID [--policy respect|limited|ignore] [--unknown send|hold]``:
show or set what the shopper's consent decides for a store (:mod:`connector.consent`)."""

from __future__ import annotations

import click

from connector.clitools import emit, services_from
from connector.consent import POLICIES, UNKNOWN_CHOICES, ConsentPolicy
from connector.stores import StoreError, consent_policy, set_consent_policy


@click.command("consent")
@click.argument("store_id")
@click.option(
    "--policy", type=click.Choice(POLICIES), help="respect (the default), limited, ignore."
)
@click.option(
    "--unknown",
    type=click.Choice(UNKNOWN_CHOICES),
    help="With respect: send (the default) or hold back a purchase whose consent is not known.",
)
@click.pass_context
def consent(ctx: click.Context, store_id: str, policy: str | None, unknown: str | None) -> None:
    """Show the store's consent policy, or change it for events recorded from now on."""
    services = services_from(ctx)
    try:
        current = consent_policy(services, store_id)
        if policy or unknown:
            current = ConsentPolicy(policy or current.policy, unknown or current.unknown)
            set_consent_policy(services, store_id, current)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    emit(
        {
            "store_id": store_id,
            "policy": current.policy,
            "unknown": current.unknown,
            "means": current.describe(),
        }
    )
