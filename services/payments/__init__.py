"""Payments: Stripe Checkout links for orders awaiting payment, and reconciliation of what Stripe says happened."""
