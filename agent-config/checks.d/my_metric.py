"""my_metric: the seed exercise's custom Agent check.

Submits the gauge ``my_metric`` with a random integer from 0 to 1000 (both included) each run. How
often it runs is ``min_collection_interval`` in ``conf.d/my_metric.yaml`` (45 s), not this file.
The Agent adds its host tags; the instance's ``tags`` are added to them.
"""

import random

try:
    # Agent 6 and 7.
    from datadog_checks.base import AgentCheck
except ImportError:  # pragma: no cover - Agent 5 only
    from checks import AgentCheck

__version__ = "1.0.0"

LOW, HIGH = 0, 1000


class MyMetricCheck(AgentCheck):
    def check(self, instance):
        tags = list(instance.get("tags") or [])
        self.gauge("my_metric", random.randint(LOW, HIGH), tags=tags)
