"""Pixel receipts: what the storefront's browser pixel did for a purchase.

The storefront code that fires an ad platform's browser pixel on the thank-you page (the
Shopify custom pixel, the WordPress plugin) also reports through ``POST /collect`` whether the
pixel's script loaded and its purchase call was made (``reported``) or the script never loaded
(``blocked``). Joined to the delivered server events by ``event_id``, that is the proof of what
the server recovered (:mod:`connector.recovered`). A receipt holds no personal data: a store,
a pixel, an order id, an outcome and a time.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from connector.models import PixelReceipt, utcnow

DEFAULT_RECEIPT_PIXEL = "tiktok"
"""The pixel a receipt speaks of when it does not say: the storefront code fires TikTok's."""

REPORTED, BLOCKED = "reported", "blocked"


def save_pixel_receipt(
    session: Session, store_id: str, *, pixel: str, event_id: str, outcome: str
) -> None:
    """Record a receipt; a ``reported`` one replaces a ``blocked`` one, never the reverse.

    A shopper who reloads the thank-you page sends a second receipt: if the pixel loaded
    either time, the browser did reach the platform (it deduplicates the repeat by event id).
    """
    query = select(PixelReceipt).where(
        PixelReceipt.store_id == store_id,
        PixelReceipt.pixel == pixel,
        PixelReceipt.event_id == event_id,
    )
    receipt = session.scalar(query)
    if receipt is None:
        session.add(
            PixelReceipt(
                store_id=store_id,
                pixel=pixel,
                event_id=event_id,
                outcome=outcome,
                received_at=utcnow(),
            )
        )
        try:
            session.flush()
        except IntegrityError:  # the same receipt twice at once: apply this one to the other
            session.rollback()
            save_pixel_receipt(session, store_id, pixel=pixel, event_id=event_id, outcome=outcome)
    elif outcome == REPORTED and receipt.outcome != REPORTED:
        receipt.outcome = REPORTED
        receipt.received_at = utcnow()
