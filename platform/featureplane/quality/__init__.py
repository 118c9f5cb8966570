"""Data quality: expectation suites declared beside a tenant's definitions, checked with GX 1.x.

Great Expectations is imported only when a suite is built (:mod:`.validator`): the gateway and
the command line start without paying for it.
"""

from featureplane.quality.suite import Entry, Suite, read_suites, suite_dir

__all__ = ["Entry", "Suite", "read_suites", "suite_dir"]
