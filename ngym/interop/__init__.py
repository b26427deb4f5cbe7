"""Environments written for other frameworks, served by ngym.

* :mod:`ngym.interop.nemo` — NeMo Gym's environment-author API (behind the ``nemo_gym`` shim
  package): pydantic-model servers, aiohttp-style replies, the verify guard.
* :mod:`ngym.interop.text_games` — Gymnasium text environments and TextArena games as an ngym
  resources server (episode state per session, the game's reward).

docs/interop.md says what maps to what and what does not carry over.
"""
