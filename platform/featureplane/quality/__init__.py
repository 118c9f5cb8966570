"""Data quality: expectation suites declared beside a tenant's definitions, checked with GX 1.x.

- :mod:`.suite`: the suite files; :mod:`.validator`: GX (imported only when a suite is built, so
  the gateway and the command line start without paying for it).
- :mod:`.checker`: each landed batch checked before ingest; :mod:`.quarantine`: where a failed
  batch and its report go.
- :mod:`.drift`: PSI and KS of each accepted batch against a training reference.
"""

__all__: list[str] = []
