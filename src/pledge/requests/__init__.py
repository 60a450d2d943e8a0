"""Privacy requests: access, correction, deletion and opt-outs, with their legal deadlines."""

from pledge.requests.rules import Deadlines, Regime, add_business_days, deadlines, regime_for

__all__ = ["Deadlines", "Regime", "add_business_days", "deadlines", "regime_for"]
