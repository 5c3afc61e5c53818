"""The providers: one package each, and the kit they build on.

A provider's package holds every part of it, each in a module named for its job (the
import contracts in pyproject.toml keep them in this order, top first):

- ``sample.py``, ``stand_in.py``, ``probe.py``: what `send-test` sends, its development
  stand-in, its `check-config --probe` calls (the tools above everything use them);
- ``receiver.py`` (webhooks) | ``step.py`` (the job's call to its API) | ``poller.py``:
  never import each other;
- ``formats.py``: what its messages say, read alike by the receiver and the step (pure);
- ``settings.py``: its settings section.

``kit/`` is what they build on: the receiver's and the step's shapes and errors, the
provider API client, the sample and stand-in types.
"""
