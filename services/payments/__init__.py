"""Payments: Stripe Checkout links for orders awaiting payment, recorded as attempts and announced as events."""
