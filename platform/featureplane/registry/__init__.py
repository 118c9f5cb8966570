"""The shared Feast SQL registry and its governance.

- :mod:`.governed`: the governed-apply rule (every named tenant passes its gate, or nothing is
  applied; never against a dead registry), called by `featureplane apply`.
- :mod:`.gate` (the plan gate and its acceptance), :mod:`.plan` and :mod:`.feast_plan` (Feast's
  plan, classified safe / breaking), :mod:`.lint`, :mod:`.audit`, :mod:`.report` (rendering).
- :mod:`.apply`: one tenant's apply, swapped into the registry in one transaction.
- :mod:`.sandbox`: the child tenant code runs in at plan and apply (no platform secret, a time
  and a memory limit); :mod:`.staging`: the project's rows copied out for it and swapped back.
- Ownership where teams run plain `feast apply`: :mod:`.server` (Feast's registry server),
  :mod:`.permissions`, :mod:`.token_parser`, :mod:`.client_config`.
"""

__all__: list[str] = []
