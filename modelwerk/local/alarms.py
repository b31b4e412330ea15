"""The composite alarm rule grammar, where the deployer validates a template's AlarmRule before deploying it.

Alarm evaluation runs inside the embedded AWS (:mod:`modelwerk.local.services.cloudwatch`); this module only names
what the deployer imports from there.
"""

from modelwerk.local.services.cloudwatch.rules import RuleError, Unsupported, parse_rule

__all__ = ["RuleError", "Unsupported", "parse_rule"]
